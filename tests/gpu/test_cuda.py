"""CUDA checks: half-precision exactness of the engine and device memory over many runs.

Skipped, not faked, without a GPU. Run on a GPU machine with JA_TEST_DEVICE=cuda.
"""
import math

import pytest
import torch

from ja_nodes import run_node
from ja_reference import dense_attention, dense_bias
from ja_specs import call_spec
from joint_attention_pack.attention.joint import joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import RegionalPlan

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,gamma", [
    ("restricted", "background", 0.2, 1.0), ("open", "everywhere", 0.0, 1.2), ("restricted", "everywhere", 0.3, 1.2),
])
def test_engine_on_cuda_matches_reference(dtype, image_attention, global_prompt, base_ratio, gamma):
    g = torch.Generator().manual_seed(0)
    layout = TokenLayout(n_txt=40, n_img=96, n_ref=8, region_lens=(24, 16), grid=(8, 12))
    masks = torch.zeros(2, 96)
    masks[0, :50] = 1.0
    masks[0, 50:56] = 0.5
    masks[1, 40:90] = torch.linspace(0.1, 1.0, 50)
    q, k, v = (torch.randn(2, 4, layout.total, 64, generator=g) for _ in range(3))
    plan = RegionalPlan(masks.cuda(), [1.0, 1.5], image_attention, global_prompt, base_ratio)
    spec = call_spec(texts_unread=False, structure=plan, gamma=gamma)
    scale = 1.0 / math.sqrt(64)
    qc, kc, vc = (t.to("cuda", dtype) for t in (q, k, v))
    out = joint_attention(qc, kc, vc, layout, spec, KernelSelector(), scale)
    bias = dense_bias(layout, masks, [1.0, 1.5], image_attention, global_prompt)
    ref, _ = dense_attention(qc.cpu().double(), kc.cpu().double(), vc.cpu().double(), bias, scale, gamma, layout, base_ratio)
    tol = 1e-5 if dtype == torch.float32 else 1e-3
    # Half inputs are compared with a float64 reference computed from the same rounded inputs;
    # the output's own rounding (about 1e-3 relative in bf16) is allowed on top.
    out_tol = tol + (4e-3 if dtype == torch.bfloat16 else 5e-4 if dtype == torch.float16 else 0.0)
    torch.testing.assert_close(out.double().cpu(), ref, atol=out_tol, rtol=out_tol)


def test_cuda_memory_returns_to_baseline_over_many_runs():
    import comfy.model_management

    from ja_regions import cell_masks, regions_for
    from ja_tiny import build, make_cond, sample
    from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

    tiny = build("flux")
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    pixels, _ = cell_masks(True)

    def run(i):
        regions, _ = regions_for(tiny, torch.roll(pixels, 16 * (i % 3), dims=-1), [1.0 + 0.1 * i, 1.0])
        model = run_node(JointAttentionRegionalApply, tiny.patcher, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                                                    "background")[0]
        sample(model, pos, neg, seed=i, steps=3, cfg=2.0, width=96, height=64)

    run(0)
    comfy.model_management.unload_all_models()
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    for i in range(1, 31):
        run(i)
    comfy.model_management.unload_all_models()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= baseline


@pytest.mark.parametrize("base_ratio", [0.0, 0.2])
def test_regional_calls_do_not_synchronise_the_stream(base_ratio):
    """After the first call (kernel probe, plan preparation), an attention call queues work only."""
    layout = TokenLayout(n_txt=40, n_img=96, n_ref=0, region_lens=(24, 16), grid=(8, 12))
    masks = torch.zeros(2, 96, device="cuda")
    masks[0, :50] = 1.0
    masks[1, 40:90] = torch.linspace(0.1, 1.0, 50, device="cuda")
    q, k, v = (torch.randn(2, 4, layout.total, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    plan = RegionalPlan(masks, [1.0, 1.5], "restricted", "background", base_ratio)
    spec = call_spec(texts_unread=False, structure=plan, gamma=1.2)
    kernels = KernelSelector()
    joint_attention(q, k, v, layout, spec, kernels, 0.125)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        joint_attention(q, k, v, layout, spec, kernels, 0.125)
    finally:
        torch.cuda.set_sync_debug_mode("default")
