"""Issue 3: ownership, bounds and release of the pack's tensors, in the real host."""
import copy

import pytest
import torch

from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.dispatcher import Modifier
from joint_attention_pack.attention.memory import BoundedCache, MemoryRegistry
from joint_attention_pack.integration.install import find_dispatcher, install
from joint_attention_pack.integration.runtime import MEMORY
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


def test_registry_forgets_dead_tensors_and_reports_by_owner():
    reg = MemoryRegistry()
    a = reg.track(torch.zeros(10), "a", "patch")
    b = reg.track(torch.zeros(5, dtype=torch.float64), "b", "run")
    rep = reg.report()
    assert rep["tensors"] == 2 and rep["bytes"] == 80
    assert rep["by_owner"]["a"] == {"tensors": 1, "bytes": 40}
    assert rep["by_lifetime"]["run"] == 40
    del a
    assert reg.count() == 1 and reg.total_bytes() == 40
    del b
    assert reg.report()["tensors"] == 0
    with pytest.raises(ValueError, match="lifetime"):
        reg.track(torch.zeros(1), "x", "forever")


def test_cache_is_lru_bounded_and_keyed_by_content():
    reg = MemoryRegistry()
    cache = BoundedCache(reg, budget_bytes=400)
    made = []

    def factory(n):
        def make():
            made.append(n)
            return torch.zeros(n)  # 4n bytes
        return make

    cache.get("a", factory(50))
    cache.get("b", factory(40))
    assert cache.bytes == 360
    cache.get("a", factory(50))  # hit, a becomes most recent
    cache.get("c", factory(20))  # 440 > 400: evicts b (least recent)
    assert made == [50, 40, 20] and cache.bytes == 280
    cache.get("b", factory(40))
    assert made[-1] == 40  # b was evicted, so it is rebuilt, never served stale
    big = cache.get("huge", factory(1000))
    assert big.numel() == 1000 and "huge" not in cache._items  # larger than the budget: not kept
    assert cache.bytes <= 400
    assert reg.total_bytes("cache") == cache.bytes
    reg.release(lifetime="cache")
    assert cache.bytes == 0 and reg.count("cache") == 0
    cache.set_budget(0)
    assert cache.get("z", factory(1)).numel() == 1 and len(cache) == 0


def test_changed_region_is_never_served_stale():
    tiny = build("flux")
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.0, width=96, height=64)
    outs = []
    for shift in (0, 1, 0):
        moved = torch.roll(pixels, shifts=16 * shift, dims=-1)
        regions, _ = regions_for(tiny, moved, [1.0, 1.0])
        model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted", "background")[0]
        outs.append(sample(model, pos, neg, **kw))
    assert not torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], outs[2])


def test_cloning_a_patched_model_does_not_duplicate_tensors():
    tiny = build("flux")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.2, 0.0, 0.4, "all", "all", "restricted", "background")[0]
    before = MEMORY.registry.total_bytes("patch")
    dispatcher = find_dispatcher(model.model_options["transformer_options"])
    clones = [model]
    for _ in range(100):
        clones.append(clones[-1].clone())
    assert MEMORY.registry.total_bytes("patch") == before
    for c in clones[1:]:
        assert find_dispatcher(c.model_options["transformer_options"]) is dispatcher
    assert copy.deepcopy(model.model_options)["transformer_options"]["patches"]["joint_attention"][0] is dispatcher


class RunKeeper(Modifier):
    """Keeps a per-run tensor every forward and fails on the given forward."""

    key = "run_keeper"

    def __init__(self, fail_at=None):
        self.fail_at = fail_at
        self.forwards = 0

    def begin_forward(self, state):
        self.forwards += 1
        state.run.keep(("step", self.forwards), torch.zeros(64), "test:run")
        if self.fail_at is not None and self.forwards >= self.fail_at:
            raise RuntimeError("boom inside sampling")
        return None


def test_per_run_state_is_released_after_success_and_after_an_error():
    tiny = build("flux")
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    ok = RunKeeper()
    sample(install(patcher(tiny), ok), pos, neg, seed=0, steps=3, cfg=2.0)
    assert ok.forwards == 3 and MEMORY.registry.count("run") == 0
    failing = RunKeeper(fail_at=2)
    with pytest.raises(RuntimeError, match="boom"):
        sample(install(patcher(tiny), failing), pos, neg, seed=0, steps=3, cfg=2.0)
    assert failing.forwards == 2
    assert MEMORY.registry.count("run") == 0


def test_unloading_models_drops_cached_device_tensors():
    import comfy.model_management

    tiny = build("flux")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    comfy.model_management.load_models_gpu([model])
    sample(model, pos, neg, seed=0, steps=2, cfg=2.0, width=96, height=64)
    assert MEMORY.registry.count("cache") > 0
    comfy.model_management.unload_all_models()
    assert MEMORY.registry.count("cache") == 0


def test_device_matching_treats_an_unindexed_device_as_any_index():
    from joint_attention_pack.attention.memory import same_device

    assert same_device("cuda:0", "cuda") and same_device("cuda:1", "cuda")
    assert same_device("cuda:0", "cuda:0") and not same_device("cuda:1", "cuda:0")
    assert not same_device("cpu", "cuda") and same_device("cpu", "cpu")


def test_object_count_survives_dead_weak_proxies():
    """gc's object list can hold weakref proxies whose object is gone (torch.compile leaves some behind); counting
    tensors must not dereference them (isinstance raises ReferenceError on a dead proxy)."""
    import weakref

    from joint_attention_pack.integration.runtime import MEMORY

    class Gone:
        pass

    obj = Gone()
    proxies = [weakref.proxy(obj)]
    del obj
    assert MEMORY.process_tensors() >= 1
    assert proxies


def test_memory_node_reports_the_attention_path_choices_and_counts_their_masks(monkeypatch):
    """Issue 33: the selector's choices and timings are in the memory report, and the masks it keeps for calls
    without a regional plan are tensors of the pack's registry (freed with the caches)."""
    import json
    import math

    from ja_specs import call_spec
    from joint_attention_pack.attention.kernels import KernelSelector
    from joint_attention_pack.attention.layout import TokenLayout
    from joint_attention_pack.attention.paths import DENSE, PathSelector
    from joint_attention_pack.nodes.memory import JointAttentionMemory

    selector = PathSelector(MEMORY.registry, force="auto", candidates=None)
    selector.candidates.pop("flex")  # no compile in this test (tests/attention covers FlexAttention)
    monkeypatch.setattr(MEMORY, "paths", selector)
    layout = TokenLayout(n_txt=5, n_img=24, n_ref=0, region_lens=(4, 3), grid=(4, 6))
    q, k, v = (torch.randn(1, 2, layout.total, 16) for _ in range(3))
    MEMORY.paths.attend(q, k, v, layout, call_spec(texts_unread=True, gamma=1.2), KernelSelector(), 0.25)
    report = json.loads(run_node(JointAttentionMemory, False)[1])
    (entry,) = report["attention_paths"]["choices"]
    assert entry["device"] == "cpu" and entry["shape"] == [1, 2, layout.total, 16]
    assert entry["path"] in entry["seconds"] and set(entry["seconds"]) == {"grouped", DENSE}
    assert report["attention_paths"]["setting"] == "auto"
    kept = report["by_owner"]["attention_paths"]["bytes"]
    assert kept == report["attention_paths"]["prepared_bytes"] >= layout.total ** 2 * 4 > 0
    report = json.loads(run_node(JointAttentionMemory, True)[1])
    assert report["attention_paths"]["prepared_bytes"] == 0 and "attention_paths" not in report["by_owner"]
    assert report["attention_paths"]["keys"] == 1  # measurements stay: only derived tensors are freed
    assert math.isfinite(entry["seconds"]["grouped"])
