"""Issue 33 on CUDA: every exact path (grouped engine, dense mask, FlexAttention) against the dense reference in
fp16 / bf16 / fp32, and the selector measuring on the device. Skipped, not faked, without a GPU."""
import math

import pytest
import torch

from ja_reference import dense_attention, dense_bias
from ja_specs import call_spec
from joint_attention_pack.attention import paths
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import RegionalPlan

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

D = 64
SCALE = 1.0 / math.sqrt(D)
LAYOUT = TokenLayout(n_txt=40, n_img=96, n_ref=8, region_lens=(24, 16), grid=(8, 12))
STRENGTHS = [1.0, 1.5]


def _masks():
    masks = torch.zeros(2, 96)
    masks[0, :50] = 1.0
    masks[0, 50:56] = 0.5
    masks[1, 40:90] = torch.linspace(0.1, 1.0, 50)
    return masks


def _call(dtype, spec):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, LAYOUT.total, D, generator=g).to("cuda", dtype) for _ in range(3))
    return paths.PlannedCall(q, k, v, LAYOUT, spec, KernelSelector(), SCALE)


def _check(out, call, settings, gamma):
    masks = _masks()
    if settings is None:
        bias, base_ratio = dense_bias(LAYOUT, isolate_regions=True), 0.0
    else:
        bias, base_ratio = dense_bias(LAYOUT, masks, STRENGTHS, settings[0], settings[1]), settings[2]
    ref, _ = dense_attention(call.q.cpu().double(), call.k.cpu().double(), call.v.cpu().double(), bias, SCALE, gamma,
                             LAYOUT, base_ratio)
    dtype = call.q.dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-3
    # Half inputs against a float64 reference from the same rounded inputs, plus the output's own rounding; the
    # dense path's mask is in the inputs' dtype, so its soft-mask biases are rounded too (about 4e-3 in bf16).
    tol += 8e-3 if dtype == torch.bfloat16 else 1e-3 if dtype == torch.float16 else 0.0
    torch.testing.assert_close(out.double().cpu(), ref, atol=tol, rtol=tol)


SETTINGS = [(("restricted", "background", 0.2), 1.0), (("open", "everywhere", 0.0), 1.2),
            (("restricted", "everywhere", 0.3), 1.2), (None, 1.2)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("path", [paths.GROUPED, paths.DENSE, paths.FLEX])
@pytest.mark.parametrize("settings,gamma", SETTINGS)
def test_each_path_on_cuda_matches_reference(dtype, path, settings, gamma):
    if settings is None:
        spec = call_spec(texts_unread=True, gamma=gamma)
    else:
        plan = RegionalPlan(_masks().cuda(), STRENGTHS, *settings)
        spec = call_spec(texts_unread=False, structure=plan, gamma=gamma)
    call = _call(dtype, spec)
    candidate = paths.default_candidates()[path]
    assert candidate.unavailable(call) is None
    with torch.no_grad():
        out = candidate.run(candidate.prepare(call), call)
    assert out.dtype == dtype
    _check(out, call, settings, gamma)


def test_selector_measures_on_cuda_and_keeps_an_exact_path():
    plan = RegionalPlan(_masks().cuda(), STRENGTHS, "restricted", "background", 0.2)
    call = _call(torch.bfloat16, call_spec(texts_unread=False, structure=plan, gamma=1.2))
    selector = paths.PathSelector(force=None)  # the default: measure on CUDA
    with torch.no_grad():
        first = selector.attend(call.q, call.k, call.v, LAYOUT, call.spec, call.kernels, SCALE)
        again = selector.attend(call.q, call.k, call.v, LAYOUT, call.spec, call.kernels, SCALE)
    (choice,) = selector.choices().values()
    assert choice.path in choice.seconds and set(choice.seconds) | set(choice.dropped) == set(paths.PATHS)
    _check(first, call, ("restricted", "background", 0.2), 1.2)
    _check(again, call, ("restricted", "background", 0.2), 1.2)
