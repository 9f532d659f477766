"""Issue 19 on real devices: ComfyUI's MultiGPU work units ("MultiGPU CFG Split") with the pack's regions, TACA
and capture.

- With two or more CUDA devices, the host's own device enumeration: cond rows on one GPU, uncond rows on the
  other, in the host's worker threads.
- With one CUDA device, the CPU as the second work-unit device (only the host's device enumeration is
  substituted): the same path across two kinds of device, the capture merging buffers from both.

The host must be booted for CUDA (JA_TEST_DEVICE=cuda, as the other CUDA runs); skipped, not faked, otherwise.
"""
import pytest
import torch

import ja_host
from ja_regions import HEIGHT, WIDTH
from ja_tiny import build, make_cond, sample
from ja_workunits import (
    ForwardLog,
    assert_untouched,
    cfg_split,
    fingerprint,
    patched,
    prompts,
    shared_tensors,
    substitute_devices,
    unload_all,
    work_units_missing,
)
from joint_attention_pack.integration.runtime import MEMORY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not ja_host.test_device().startswith("cuda"), reason="the host is booted for the CPU: run with JA_TEST_DEVICE=cuda"),
    pytest.mark.skipif(bool(work_units_missing()), reason=work_units_missing() or "has work units"),
]

KW = dict(steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


@pytest.fixture
def on_cuda0(monkeypatch):
    """Tiny models load on cuda:0 (the device index ComfyUI's own loaders give), unloaded afterwards."""
    monkeypatch.setenv("JA_TEST_DEVICE", "cuda:0")
    yield torch.device("cuda", 0)
    unload_all()


def _run(tiny, split_devices, three_prompts=False):
    """(single-device latent and capture, work-unit latent and capture, forward log, shared tensors checked)."""
    model, handle = patched(tiny, mixed_masks=True)
    shared = shared_tensors(model)
    before = fingerprint(shared)
    log = ForwardLog().attach(model)
    if three_prompts:  # cond rows on every device: three prompts that cannot be batched, one negative
        pos = [make_cond(tiny, seed=1 + i, n_tokens=n)[0] for i, n in enumerate((8, 9, 11))]
        neg = make_cond(tiny, seed=9)
    else:
        pos, neg = prompts(tiny)
    want = sample(model, pos, neg, seed=0, **KW)
    single = handle.take()
    split = cfg_split(model)
    assert sorted(str(c.load_device) for c in split.get_additional_models_with_key("multigpu")) == split_devices
    log.clear()
    got = sample(split, pos, neg, seed=0, **KW)
    units = handle.take()
    assert_untouched(shared, before)
    assert all(t.device.type == "cpu" for t in shared)  # region data stays where the nodes made it
    return (want, single), (got, units), log


def _check(tiny, single_run, unit_run, log, devices):
    (want, single), (got, units) = single_run, unit_run
    assert {d for _, d, _ in log.forwards} == set(devices)
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=2e-4, atol=2e-4)
    assert units["step_rows"] == single["step_rows"]
    assert units["steps"] == single["steps"] and units["blocks"] == single["blocks"]
    torch.testing.assert_close(units["maps"], single["maps"], rtol=1e-4, atol=1e-5)
    assert MEMORY.registry.count("run") == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA device")
@pytest.mark.parametrize("three_prompts", [False, True])
def test_work_units_on_two_gpus_give_the_single_gpu_latent_and_maps(on_cuda0, three_prompts):
    tiny = build("flux")
    single_run, unit_run, log = _run(tiny, ["cuda:1"], three_prompts)
    _check(tiny, single_run, unit_run, log, {"cuda:0", "cuda:1"})
    if three_prompts:
        assert unit_run[1]["devices"] == ["cuda:0", "cuda:1"]  # each GPU recorded its own cond rows
    # Each device got its own copies of what regions need (plans and region texts), in the pack's cache.
    keys = [str(k) for k in MEMORY.cache._items]
    assert any("cuda:0" in k for k in keys) and any("cuda:1" in k for k in keys)


@pytest.mark.parametrize("three_prompts", [False, True])
def test_work_units_on_one_gpu_and_the_cpu(monkeypatch, on_cuda0, three_prompts):
    substitute_devices(monkeypatch, (torch.device("cuda", 0), torch.device("cpu")))
    tiny = build("flux")
    single_run, unit_run, log = _run(tiny, ["cpu"], three_prompts)
    _check(tiny, single_run, unit_run, log, {"cuda:0", "cpu"})
    if three_prompts:
        assert unit_run[1]["devices"] == ["cpu", "cuda:0"]
