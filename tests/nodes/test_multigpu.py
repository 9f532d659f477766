"""Issue 19: the pack under concurrent use and under ComfyUI's MultiGPU work units, on the CPU.

- Two threads sampling one patched model (regions + TACA + capture) at the same time give what two
  sequential runs give, a fixed number of rounds. The host cannot run one BaseModel in two samplers at
  once (it keeps `current_patcher` on it), so the second thread samples the patched model over a second
  copy of its weights (`ja_workunits.twin`: the same dispatcher, modifiers, capture and caches), as a
  MultiGPU device clone does. The host's loaded-model bookkeeping (one global list, single-threaded by design)
  is put under one lock for these tests (`ja_workunits.serialize_model_loading`); the forwards stay concurrent.
- The host's MultiGPU work-unit path itself ("MultiGPU CFG Split", `deepclone_multigpu`, the sampler's
  work-unit branch with one worker thread per device) on two CPU "devices" (only the host's device
  enumeration is substituted: tests/support/ja_workunits.py) gives the single-device latent, and a capture
  records each step's cond rows once, with the single-device maps.
- No tensor a model clone shares is moved or written in place when a clone moves to another device.
"""
import threading

import pytest
import torch

from ja_families import host_param
from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH
from ja_threads import at_once
from ja_tiny import build, make_cond, noise_for, patcher, sample, tiny_clip
from ja_workunits import (
    CPU_PAIR,
    ForwardLog,
    assert_untouched,
    cfg_split,
    fingerprint,
    patched,
    prompts,
    serialize_model_loading,
    shared_tensors,
    substitute_devices,
    twin,
    unload_all,
    work_units_missing,
)
from joint_attention_pack.integration.options import find_dispatcher
from joint_attention_pack.integration.runtime import MEMORY
from joint_attention_pack.integration.workunits import work_unit_devices
from joint_attention_pack.nodes.maps import JointAttentionCapture

KW = dict(steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
ROUNDS = 3  # concurrent rounds per test: a fixed count, no clock

needs_work_units = pytest.mark.skipif(bool(work_units_missing()), reason=work_units_missing() or "has work units")


class Deliveries:
    """Every result a capture handle is given (the handle itself keeps the last), read from the handle's
    own `deliver`, which still runs."""

    def __init__(self, handle):
        self.lock = threading.Lock()
        self.results: list = []
        original = handle.deliver

        def deliver(result):
            with self.lock:
                self.results.append(result)
            original(result)

        handle.deliver = deliver


@pytest.fixture
def one_loader(monkeypatch):
    """The host's loaded-model bookkeeping under one lock (it is single-threaded by design; see ja_workunits)."""
    serialize_model_loading(monkeypatch)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_two_threads_sampling_one_patched_model_give_the_sequential_latents_and_maps(family, one_loader):
    tiny = build(family)
    model, handle = patched(tiny)
    pos, neg = prompts(tiny)
    seeds = (0, 1)
    want_latents, want_maps = [], []
    for seed in seeds:  # sequential runs: the reference
        want_latents.append(sample(model, pos, neg, seed=seed, **KW))
        want_maps.append(handle.take()["maps"])
    assert not torch.equal(want_maps[0], want_maps[1])  # the two runs are told apart by their maps
    other = twin(model)
    assert find_dispatcher(other.model_options["transformer_options"]) is find_dispatcher(
        model.model_options["transformer_options"])
    deliveries = Deliveries(handle)
    for _ in range(ROUNDS):
        deliveries.results.clear()
        # Cached plans are shared by both threads: start every round with none, so that both threads
        # build and grow the same plans at once.
        MEMORY.cache.clear()
        noise = [noise_for(model, seed, **KW) for seed in seeds]
        got = at_once([lambda n=noise[0]: sample(model, *prompts(tiny), seed=seeds[0], noise=n, **KW),
                       lambda n=noise[1]: sample(other, *prompts(tiny), seed=seeds[1], noise=n, **KW)])
        for latent, want in zip(got, want_latents):
            torch.testing.assert_close(latent, want, rtol=0, atol=0)
        # Each run delivered its own maps, once: one delivery equal to each sequential run's maps.
        maps = [r["maps"] for r in deliveries.results]
        assert len(maps) == 2
        matched = sorted(next(i for i, w in enumerate(want_maps) if torch.equal(m, w)) for m in maps)
        assert matched == [0, 1]
    assert MEMORY.registry.count("run") == 0


def test_two_threads_sampling_two_clones_with_their_own_captures(one_loader):
    """Two models made from one regional + TACA model, each with its own capture, sampled at once."""
    tiny = build("flux")
    base, _ = patched(tiny, capture=False)
    (m1, h1), (m2, h2) = (run_node(JointAttentionCapture, base, "all", "all", 0.0, 1.0).args for _ in range(2))
    m2 = twin(m2)
    pos, neg = prompts(tiny)
    want = [sample(m, pos, neg, seed=s, **KW) for m, s in ((m1, 0), (m2, 1))]
    want_maps = [h.take()["maps"] for h in (h1, h2)]
    for _ in range(ROUNDS):
        MEMORY.cache.clear()
        noise = [noise_for(m1, seed, **KW) for seed in (0, 1)]
        got = at_once([lambda n=noise[0]: sample(m1, *prompts(tiny), seed=0, noise=n, **KW),
                       lambda n=noise[1]: sample(m2, *prompts(tiny), seed=1, noise=n, **KW)])
        for latent, w in zip(got, want):
            torch.testing.assert_close(latent, w, rtol=0, atol=0)
        for h, w in zip((h1, h2), want_maps):
            torch.testing.assert_close(h.take()["maps"], w, rtol=0, atol=0)


@pytest.fixture
def two_cpu_devices(monkeypatch):
    """The host enumerates two devices, cpu and cpu:0; device clones made here are unloaded afterwards."""
    substitute_devices(monkeypatch, CPU_PAIR)
    yield CPU_PAIR
    unload_all()


@needs_work_units
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image", host_param("krea2"), host_param("ideogram4")])
def test_work_units_give_the_single_device_latent_and_maps(family, two_cpu_devices):
    tiny = build(family)
    model, handle = patched(tiny)
    log = ForwardLog().attach(model)
    pos, neg = prompts(tiny)
    want = sample(model, pos, neg, seed=0, **KW)
    single = handle.take()
    assert {device for _, device, _ in log.forwards} == {None}  # one device: no work units
    split = cfg_split(model)
    log.clear()
    got = sample(split, pos, neg, seed=0, **KW)
    units = handle.take()
    # The host's work-unit path ran: one worker thread per device, each forward with the rows of one half.
    devices = {device for _, device, _ in log.forwards}
    assert devices == {str(d) for d in two_cpu_devices}
    assert len({thread for thread, _, _ in log.forwards}) == 2
    assert {kinds for _, _, kinds in log.forwards} == {(0,), (1,)}
    assert len(log.forwards) == 2 * KW["steps"]
    # The device clone carries the main model's dispatcher (the host's ON_DEEPCLONE_MULTIGPU callback).
    assert work_unit_devices(find_dispatcher(model.model_options["transformer_options"])) == ["cpu:0"]
    # The single-device latent (batching cond and uncond together or apart rounds differently).
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # Each step's cond rows recorded once: the same rows per step, in step order, as on one device.
    blocks = tiny.n_double + tiny.n_single
    assert single["step_rows"] == units["step_rows"]
    assert [rows for _, rows in units["step_rows"]] == [blocks] * KW["steps"]
    assert units["steps"] == single["steps"] == KW["steps"] and units["blocks"] == single["blocks"]
    torch.testing.assert_close(units["maps"], single["maps"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(units["region_masks"], single["region_masks"], rtol=0, atol=0)
    assert MEMORY.registry.count("run") == 0


@needs_work_units
def test_work_units_on_z_image_wrap_each_devices_own_layers(two_cpu_devices):
    """Z-Image's layer hooks are object patches holding the layer modules: a device clone (a freshly loaded copy of
    the weights) must wrap its own layers, never run the main model's from another device."""
    from joint_attention_pack.families.z_image import LAYER_LISTS, HookedLayers

    tiny = build("z_image")
    model, _ = patched(tiny, capture=False)
    pos, neg = prompts(tiny)
    want = sample(model, pos, neg, seed=0, **KW)
    split = cfg_split(model)
    torch.testing.assert_close(sample(split, pos, neg, seed=0, **KW), want, rtol=1e-5, atol=1e-5)
    (clone,) = split.get_additional_models_with_key("multigpu")
    for name in LAYER_LISTS:
        key = f"diffusion_model.{name}"
        wrapped = clone.object_patches[key]
        assert isinstance(wrapped, HookedLayers)
        own = clone.object_patches_backup.get(key, getattr(clone.model.diffusion_model, name))
        main = getattr(model.model.diffusion_model, name)
        children = list(torch.nn.ModuleList.__iter__(wrapped))
        assert all(a is b for a, b in zip(children, torch.nn.ModuleList.__iter__(own), strict=True))
        assert not any(a is b for a, b in zip(children, torch.nn.ModuleList.__iter__(main)))


@needs_work_units
@pytest.mark.parametrize("family", [host_param("krea2")])
def test_work_units_on_krea2_wrap_each_devices_own_blocks_and_text_adapter(family, two_cpu_devices):
    """Krea 2's hooks are object patches holding its block modules and its text adapter's layers: a device clone
    must wrap its own, never run the main model's from another device."""
    from joint_attention_pack.families.krea2 import FusedAlone, HookedBlocks

    tiny = build(family)
    model, _ = patched(tiny, capture=False)
    pos, neg = prompts(tiny)
    want = sample(model, pos, neg, seed=0, **KW)
    split = cfg_split(model)
    torch.testing.assert_close(sample(split, pos, neg, seed=0, **KW), want, rtol=1e-5, atol=1e-5)
    (clone,) = split.get_additional_models_with_key("multigpu")
    main = model.model.diffusion_model
    wrapped = clone.object_patches["diffusion_model.blocks"]
    assert isinstance(wrapped, HookedBlocks)
    own = clone.object_patches_backup.get("diffusion_model.blocks", clone.model.diffusion_model.blocks)
    children = list(torch.nn.ModuleList.__iter__(wrapped))
    assert all(a is b for a, b in zip(children, torch.nn.ModuleList.__iter__(own), strict=True))
    assert not any(a is b for a, b in zip(children, torch.nn.ModuleList.__iter__(main.blocks)))
    fused = clone.object_patches["diffusion_model.txtfusion"]
    assert isinstance(fused, FusedAlone) and not isinstance(fused.inner, FusedAlone)
    own = clone.object_patches_backup.get("diffusion_model.txtfusion", clone.model.diffusion_model.txtfusion)
    assert fused.inner is (own.inner if isinstance(own, FusedAlone) else own)
    main_fusion = main.txtfusion.inner if isinstance(main.txtfusion, FusedAlone) else main.txtfusion
    assert fused.inner is not main_fusion and fused.projector is fused.inner.projector


@needs_work_units
def test_work_units_with_cond_rows_on_both_devices_merge_every_devices_capture(two_cpu_devices):
    """Three positive prompts that cannot be batched (token counts 8, 9, 11) and one negative: the host puts
    two positives on the first device and the third positive with the negative on the second, so both
    devices' worker threads record cond rows; the capture merges them once."""
    tiny = build("flux")
    model, handle = patched(tiny)
    log = ForwardLog().attach(model)
    pos = [make_cond(tiny, seed=1 + i, n_tokens=n)[0] for i, n in enumerate((8, 9, 11))]
    neg = make_cond(tiny, seed=9)
    want = sample(model, pos, neg, seed=0, **KW)
    single = handle.take()
    split = cfg_split(model)
    log.clear()
    got = sample(split, pos, neg, seed=0, **KW)
    units = handle.take()
    cond_devices = {device for _, device, kinds in log.forwards if 0 in kinds}
    assert cond_devices == {"cpu", "cpu:0"}
    # Both worker threads recorded (each into its own buffers), merged once; one device: one buffer.
    assert units["buffers"] == 2 and single["buffers"] == 1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    blocks = tiny.n_double + tiny.n_single
    assert single["step_rows"] == units["step_rows"]
    assert [rows for _, rows in units["step_rows"]] == [3 * blocks] * KW["steps"]
    # Maps are taken over all three prompts' columns (the longest prompt's, plus region texts).
    torch.testing.assert_close(units["maps"], single["maps"], rtol=1e-5, atol=1e-6)


@needs_work_units
def test_work_units_run_the_concept_stream_with_each_devices_own_weights(two_cpu_devices):
    """ConceptAttention with cond rows on both devices: each device's worker thread embeds the concepts with
    the text input layer of the weights it runs (its device clone's), and the concept maps are the
    single-device ones."""
    tiny = build("flux")
    model, handle = run_node(JointAttentionCapture, patcher(tiny), "all", "all", 0.0, 1.0, "cat, sky", tiny_clip()).args
    pos = [make_cond(tiny, seed=1 + i, n_tokens=n)[0] for i, n in enumerate((8, 9, 11))]
    neg = make_cond(tiny, seed=9)
    want = sample(model, pos, neg, seed=0, **KW)
    single = handle.take()
    split = cfg_split(model)
    clone = split.get_additional_models_with_key("multigpu")[0]
    layers = {"main": split.model.diffusion_model.txt_in, "clone": clone.model.diffusion_model.txt_in}
    assert layers["main"] is not layers["clone"]
    used, lock = {}, threading.Lock()

    def seen(name):
        def hook(module, args, output):
            with lock:
                used.setdefault(threading.current_thread().name, set()).add(name)
        return hook

    hooks = [layer.register_forward_hook(seen(name)) for name, layer in layers.items()]
    try:
        got = sample(split, pos, neg, seed=0, **KW)
    finally:
        for h in hooks:
            h.remove()
    units = handle.take()
    assert len(used) == 2 and sorted(len(names) for names in used.values()) == [1, 1]  # each thread: its own
    assert set().union(*used.values()) == {"main", "clone"}
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert units["concept_blocks"] == single["concept_blocks"] and units["steps"] == single["steps"]
    torch.testing.assert_close(units["concept_maps"], single["concept_maps"], rtol=1e-5, atol=1e-6)


@needs_work_units
def test_work_units_in_two_threads_at_once(two_cpu_devices, one_loader):
    """Two runs of one work-unit model at once: four worker threads on one dispatcher."""
    tiny = build("flux")
    model, _ = patched(tiny, capture=False)
    pos, neg = prompts(tiny)
    want = [sample(model, pos, neg, seed=s, **KW) for s in (0, 1)]
    splits = [cfg_split(model), cfg_split(twin(model))]
    for _ in range(ROUNDS):
        MEMORY.cache.clear()
        noise = [noise_for(model, s, **KW) for s in (0, 1)]
        got = at_once([lambda s=s, n=noise: sample(splits[s], *prompts(tiny), seed=s, noise=n[s], **KW) for s in (0, 1)])
        for latent, w in zip(got, want):
            torch.testing.assert_close(latent, w, rtol=1e-5, atol=1e-5)


def test_moving_a_clone_leaves_the_shared_region_tensors_in_place(one_loader):
    """A clone moved to another device (`model_patches_to`, as the host's loader does) and sampled there,
    while the model it was made from samples on its own device: the region masks and texts both share are
    neither moved nor written. One mask is at the image's size and one at the token grid's, so the plan of
    each device is built from masks of different shapes (the path where the token masks are made from the
    region's own tensor on a CPU device)."""
    tiny = build("flux")
    model, _ = patched(tiny, capture=False, mixed_masks=True)
    shared = shared_tensors(model)
    before = fingerprint(shared)
    pos, neg = prompts(tiny)
    want = sample(model, pos, neg, seed=0, **KW)
    assert_untouched(shared, before)
    moved = twin(model)
    moved.load_device = torch.device("cpu", 0)  # another device to ComfyUI
    dispatcher = find_dispatcher(moved.model_options["transformer_options"])
    assert dispatcher.to(torch.device("cpu", 0)) is dispatcher and dispatcher.to(torch.float16) is dispatcher
    moved.model_patches_to(torch.device("cpu", 0))
    moved.model_patches_to(torch.float16)
    assert_untouched(shared, before)
    MEMORY.cache.clear()
    noise = noise_for(model, 0, **KW)
    got = at_once([lambda: sample(moved, *prompts(tiny), seed=0, noise=noise, **KW),
                   lambda: sample(model, *prompts(tiny), seed=0, noise=noise, **KW)])
    assert_untouched(shared, before)
    for latent in got:
        torch.testing.assert_close(latent, want, rtol=0, atol=0)


@needs_work_units
def test_work_unit_clones_leave_the_shared_region_tensors_in_place(two_cpu_devices):
    tiny = build("flux")
    model, handle = patched(tiny, mixed_masks=True)
    shared = shared_tensors(model)
    before = fingerprint(shared)
    split = cfg_split(model)  # deep-clones the model for cpu:0
    assert_untouched(shared, before)
    clones = split.get_additional_models_with_key("multigpu")
    assert [str(c.load_device) for c in clones] == ["cpu:0"]
    for clone in clones:
        assert find_dispatcher(clone.model_options["transformer_options"]) is find_dispatcher(
            split.model_options["transformer_options"])
    pos, neg = prompts(tiny)
    MEMORY.cache.clear()
    sample(split, pos, neg, seed=0, **KW)
    assert_untouched(shared, before)
    assert handle.take()["recorded"]
