"""Issue 19, engine side: one regional plan and one capture sink used by several threads at once (two runs
sampling at once, or MultiGPU work units: one worker thread per device) give what one thread gives."""
import math
import threading
import time

import torch

from ja_specs import call_spec
from ja_threads import at_once
from joint_attention_pack.attention.capture import CaptureSink
from joint_attention_pack.attention.joint import joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.memory import BoundedCache, MemoryRegistry
from joint_attention_pack.attention.regional import RegionalPlan, token_masks

D = 8
SCALE = 1.0 / math.sqrt(D)
THREADS = 4
ROUNDS = 5  # a fixed count, no clock


def _layout():
    return TokenLayout(n_txt=5, n_img=24, n_ref=3, region_lens=(4, 3), grid=(4, 6))


def _plan():
    m = torch.zeros(2, 24)
    m[0, :10] = 1
    m[0, 10] = 0.5
    m[1, 8:16] = torch.linspace(0.2, 1, 8)
    return RegionalPlan(m, [1.0, 2.0], "restricted", "background", 0.3)


def _qkv(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 2, _layout().total, D, generator=g) for _ in range(3)]


def test_threads_sharing_a_fresh_cached_plan_get_the_single_thread_outputs():
    """Every round starts from a plan nobody has used: all threads plan, prepare and grow it at once (the
    cache re-measures it meanwhile), each with its own TACA gamma (its own query groups)."""
    layout = _layout()
    gammas = [1.0, 1.3, 1.0, 1.3]
    inputs = [_qkv(i) for i in range(THREADS)]

    def attend(plan, i):
        spec = call_spec(texts_unread=False, structure=plan, gamma=gammas[i])
        return joint_attention(*inputs[i], layout, spec, KernelSelector(), SCALE)

    alone = _plan()
    want = [attend(alone, i) for i in range(THREADS)]
    for r in range(ROUNDS):
        registry = MemoryRegistry()
        cache = BoundedCache(registry, budget_bytes=1 << 30)
        plan = cache.get(("plan", r), _plan, "regional")
        got = at_once([lambda i=i, plan=plan: attend(plan, i) for i in range(THREADS)])
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
        assert set(plan.planned) == set(alone.planned)  # one entry per layout and gamma: none built twice
        assert cache.bytes == plan.nbytes() == alone.nbytes()


def test_one_capture_sink_written_by_several_threads_records_every_call_once():
    layout = _layout()
    calls = 6
    inputs = [_qkv(i) for i in range(THREADS)]

    def record(sink, i):
        for step in range(calls):
            spec = call_spec(texts_unread=False, structure=plan, sink=sink, step=float(step))
            joint_attention(*inputs[i], layout, spec, KernelSelector(), SCALE)

    plan = _plan()
    alone = CaptureSink(layout.n_img, "cpu")
    for i in range(THREADS):
        record(alone, i)
    want = alone.result()
    for _ in range(ROUNDS):
        sink = CaptureSink(layout.n_img, "cpu")
        at_once([lambda i=i, sink=sink: record(sink, i) for i in range(THREADS)])
        got = sink.result()
        assert got["buffers"] == THREADS and want["buffers"] == 1
        # Every call of every thread counted once per row, at its step.
        assert got["step_rows"] == want["step_rows"] == [(float(s), 2 * THREADS) for s in reversed(range(calls))]
        torch.testing.assert_close(got["maps"], want["maps"], rtol=1e-6, atol=1e-7)


def test_token_masks_never_write_the_masks_they_are_given():
    """A region's own mask (CPU, float, already at the image's size) was clamped in place; under concurrent
    use every device's plan reads it."""
    mask = torch.zeros(1, 32, 48)
    mask[:, :, :20] = 1.0
    version = mask._version
    token_masks(mask, (4, 6), (2, 3), 2, 8)
    assert mask._version == version


def test_threads_missing_one_cache_key_at_once_make_its_value_once():
    """A device's copy of what a modifier needs (token masks, plans, region texts) is made once per device,
    however many threads ask for it together; the others wait for it and share it."""
    cache = BoundedCache(MemoryRegistry(), budget_bytes=1 << 30)
    made, lock = [], threading.Lock()

    def factory(key):
        # Held until every thread is inside `get` for this key (the cache counts them), so all ask at once.
        while cache._building[key][1] < THREADS:
            time.sleep(0.001)
        with lock:
            made.append(key)
        return torch.ones(16)

    for r in range(ROUNDS):
        key = ("tokens", r, "cuda:1")
        got = at_once([lambda key=key: cache.get(key, lambda: factory(key), "regional")] * THREADS)
        assert made.count(key) == 1 and all(t is got[0] for t in got)
    assert cache.misses == ROUNDS and cache.hits == ROUNDS * (THREADS - 1)
    assert not cache._building  # nothing left behind
