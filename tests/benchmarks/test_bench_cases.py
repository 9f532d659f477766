"""Every case `make bench` times, run at small sizes through the pack as ComfyUI loaded it,
against the dense float64 reference: the fast paths the benchmark measures are the exact ones."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from ja_reference import NEG, dense_attention, dense_bias

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


# The suites' shapes at small sizes: a square grid with a separate text stream (FLUX, SD3.5, Qwen-Image), and
# Z-Image's: one joint stream, a grid that is not square, image pad tokens as reference tokens.
SHAPES = {
    "text-stream": dict(n_img=64, n_txt=12, region_len=6, all_blocks=3),
    "z_image": dict(n_img=60, grid=(6, 10), n_ref=4, n_txt=16, region_len=8, single_stream=True),
}


def _all_cases(dtype=torch.float32, shape="text-stream"):
    return list(bench_cases.cases(API, torch.device("cpu"), dtype, heads=2, head_dim=HEAD_DIM, **SHAPES[shape]))


CASES = _all_cases()
ENGINE_CASES = [(dtype, shape, c) for shape in SHAPES for dtype in DTYPES for c in _all_cases(dtype, shape)
                if c.check is not None]


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


@pytest.mark.parametrize("dtype,shape,case", ENGINE_CASES, ids=[f"{s}-{str(d)[6:]}-{c.name}" for d, s, c in ENGINE_CASES])
def test_engine_case_matches_dense_reference(dtype, shape, case):
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


@pytest.mark.parametrize("shape", SHAPES)
def test_text_scale_case_scales_only_the_text_stream(shape):
    case = next(c for c in _all_cases(shape=shape) if c.name.startswith("text scale"))
    modifier, state, block, stream = case.extra["text_scale"]
    scaled, plain = case.fn()
    n_txt, total = state.n_txt, state.n_txt + state.n_img + SHAPES[shape].get("n_ref", 0)
    # A text stream of its own is scaled whole; one joint stream (single_stream) only in its text tokens.
    assert stream.shape[1] == (total if SHAPES[shape].get("single_stream") else n_txt)
    torch.testing.assert_close(scaled[:, :n_txt], stream[:, :n_txt] * bench_cases.TEXT_SCALE, rtol=0, atol=0)
    torch.testing.assert_close(scaled[:, n_txt:], stream[:, n_txt:], rtol=0, atol=0)
    assert scaled.data_ptr() != stream.data_ptr()  # the host's tensor is left as it was
    assert plain.shape[-2] == total


def _pairs_of_the_reference(check):
    """Query-key pairs with nonzero weight in the dense reference: keys its bias leaves finite, and for image
    queries with `base_ratio` the base softmax's keys [T0 ; I ; F] too."""
    layout = check.layout
    if check.masks is None:
        return int((dense_bias(layout, isolate_regions=check.isolate) > NEG).sum())
    ia, gp, br = check.settings
    seen = dense_bias(layout, check.masks, [1.0] * len(layout.region_lens), ia, gp) > NEG
    if br > 0:
        seen[layout.img, layout.txt] = True
        seen[layout.img, layout.visual] = True
    return int(seen.sum())


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_flop_floor_counts_the_pairs_the_reference_uses(shape):
    """The floor's numerator of every regional case (reference tokens included) is what the reference attends to."""
    checked = 0
    for case in _all_cases(shape=shape):
        if case.name.startswith(("TACA", "regional,", "regional defaults")):  # TACA's: plain attention's pairs
            assert case.pairs == _pairs_of_the_reference(case.check), case.name
            checked += 1
    assert checked == 1 + 2 * (len(bench_cases.SETTINGS_ALL) + 2)
