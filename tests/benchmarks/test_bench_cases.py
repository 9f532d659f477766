"""Every case `make bench` times, run at small sizes through the pack as ComfyUI loaded it,
against the dense float64 reference: the fast paths the benchmark measures are the exact ones."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from ja_reference import dense_attention, dense_bias

_spec = importlib.util.spec_from_file_location("ja_bench_cases", Path(__file__).with_name("cases.py"))
bench_cases = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench_cases  # dataclasses look their module up
_spec.loader.exec_module(bench_cases)

API = bench_cases.Api("joint_attention_pack.attention")
HEAD_DIM = 16


DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# fp32: 1e-5. Half inputs: 1e-3 against a float64 reference computed from the same rounded
# inputs, plus the output's own rounding (about 4e-3 relative in bf16, 5e-4 in fp16).
OUT_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-3 + 4e-3, torch.float16: 1e-3 + 5e-4}
MAPS_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-3, torch.float16: 1e-3}


def _all_cases(dtype=torch.float32):
    return list(bench_cases.cases(API, torch.device("cpu"), dtype, heads=2, head_dim=HEAD_DIM, n_img=64, n_txt=12,
                                  region_len=6, all_blocks=3))


CASES = _all_cases()
ENGINE_CASES = [(dtype, c) for dtype in DTYPES for c in _all_cases(dtype) if c.check is not None]


def test_the_benchmark_covers_every_setting_and_baseline():
    names = [c.name for c in CASES]
    for n in (2, 4):
        for ia, gp, br in bench_cases.SETTINGS_ALL:
            assert f"regional, {n} regions, {ia} / {gp} / base_ratio {br}" in names
        assert f"baseline: dense [B,H,L,L] additive mask, {n} regions" in names
        assert f"baseline: one pass per region (core masked conditioning), {n} regions" in names
        assert f"everything: regional defaults + TACA + text scale + capture, {n} regions" in names
        assert f"regional, uncond row of CFG (region texts isolated), {n} regions" in names
    assert {"plain attention", "TACA (gamma 1.2)", "text scale (x1.5 before the block)",
            "capture (attention maps) of the call", "capture of all blocks (3 calls into one buffer)"} <= set(names)
    # Every engine case is checked below; the rest are plain attention or the baselines.
    unchecked = {c.name for c in CASES if c.check is None}
    assert all(n.startswith(("plain", "baseline", "text scale")) for n in unchecked), unchecked


@pytest.mark.parametrize("dtype,case", ENGINE_CASES, ids=[f"{str(d)[6:]}-{c.name}" for d, c in ENGINE_CASES])
def test_engine_case_matches_dense_reference(dtype, case):
    check = case.check
    layout = check.layout
    if check.masks is not None:
        ia, gp, br = check.settings
        bias = dense_bias(layout, check.masks, [1.0] * len(layout.region_lens), ia, gp)
    else:
        br, bias = 0.0, dense_bias(layout, isolate_regions=check.isolate)
    want, probs = dense_attention(check.q, check.k, check.v, bias, 1.0 / math.sqrt(HEAD_DIM), check.gamma, layout, br)
    if check.sink is not None:
        check.sink.sum.zero_()
        check.sink.counts.zero_()
    for _ in range(check.calls):
        got = check.output()
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=OUT_TOL[dtype], atol=OUT_TOL[dtype])
    if check.sink is not None:
        maps = check.sink.result()["maps"]  # [N_img, N_text]: mean over calls, rows and heads
        want_maps = probs[..., layout.img, : layout.n_context].mean(dim=(0, 1))
        assert maps.shape == want_maps.shape
        torch.testing.assert_close(maps.double(), want_maps, rtol=MAPS_TOL[dtype], atol=MAPS_TOL[dtype])
        assert check.sink.counts.max().item() == check.calls * check.q.shape[0]
    # The case's timed function computes the same thing.
    if case.calls == 1:
        torch.testing.assert_close(case.fn().double(), want, rtol=OUT_TOL[dtype], atol=OUT_TOL[dtype])


def test_text_scale_case_scales_only_the_text_stream():
    case = next(c for c in CASES if c.name.startswith("text scale"))
    modifier, state, block, stream = case.extra["text_scale"]
    scaled, plain = case.fn()
    torch.testing.assert_close(scaled, stream * bench_cases.TEXT_SCALE, rtol=0, atol=0)
    assert scaled.data_ptr() != stream.data_ptr()  # the host's tensor is left as it was
    assert plain.shape[-2] == state.n_txt + state.n_img
