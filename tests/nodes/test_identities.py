"""Identities that need no reference: they hold whatever the pack's (and the reference's) assumptions are.

The full-region identity: one region covering the whole image at strength 1, `restricted`,
`background`, base_ratio 0, every block and step, cfg 1, is the same as prompting with the
region's text alone. Image tokens then see exactly [region text ; image], and region text sees
[region text ; image], as the prompt would; the base text is seen by nothing that reaches the
output. It checks what the dense references cannot: mask scale, token positions (FLUX.2
numbers text positions on a rope axis) and how region texts enter the model.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

FAMILIES = ["flux", "flux2", "chroma", "sd3", "sd35m", "qwen_image", "z_image"]


def _prompt_alone(region_cond, base_cond):
    """The region's tokens with the base prompt's pooled vector / guidance (the pack keeps those)."""
    return [[region_cond[0][0], dict(base_cond[0][1])]]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mask_size", [(64, 96), (3, 2)])
def test_full_image_region_equals_prompting_with_its_text(family, mask_size):
    tiny = build(family)
    base = patcher(tiny)
    base_cond = make_cond(tiny, seed=1, n_tokens=7)
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, *mask_size), 1.0)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", single, "restricted", "background")[0]
    # Z-Image pads its image tokens to a multiple of 32, and its pad tokens see the base prompt (they are nobody's
    # region): 128 x 64 pixels make 32 tokens, no pads. Prompt and region text both pad to 32 tokens, so the image
    # sits where it would with the region text as the prompt.
    kw = dict(seed=0, steps=3, cfg=1.0, width=128 if family == "z_image" else 96, height=64)
    neg = make_cond(tiny, seed=2)
    got = sample(model, base_cond, neg, **kw)
    want = sample(base, _prompt_alone(region_cond, base_cond), neg, **kw)
    other = sample(base, base_cond, neg, **kw)
    assert (want - other).abs().max() > 1e-3  # the two prompts differ, so the identity can fail
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_hw", [(256, 256), (2, 2), (100, 60)])
def test_half_image_mask_on_flux2_covers_exactly_half_the_tokens(mask_hw, monkeypatch):
    """FLUX.2's latent is 1/16 of the image (patch 1): a left-half mask covers the left 8 of 16 token columns."""
    from joint_attention_pack.attention import regional

    tiny = build("flux2")
    mask = torch.zeros(1, *mask_hw)
    mask[..., : mask_hw[1] // 2] = 1.0
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=5), mask, 1.0)[0]
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                                                "background")[0]
    seen = []
    original = regional.RegionalPlan.__init__

    def spy(self, masks, *args, **kwargs):
        seen.append(masks.clone())
        original(self, masks, *args, **kwargs)

    monkeypatch.setattr(regional.RegionalPlan, "__init__", spy)
    latent = torch.zeros(1, 128, 16, 16)  # a 256 x 256 image
    sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=1, cfg=1.0, latent=latent)
    assert seen
    grid = seen[0].reshape(16, 16)
    assert torch.equal(grid[:, :8], torch.ones(16, 8)) and torch.equal(grid[:, 8:], torch.zeros(16, 8))
