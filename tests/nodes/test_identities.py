"""Identities that need no reference: they hold whatever the pack's (and the reference's) assumptions are, for every
family of the test list (ja_families).

The full-region identity: one region covering the whole image at strength 1, `restricted`,
`background`, base_ratio 0, every block and step, cfg 1, is the same as prompting with the
region's text alone. Image tokens then see exactly [region text ; image], and region text sees
[region text ; image], as the prompt would; the base text is seen by nothing that reaches the
output. It checks what the dense references cannot: mask scale, token positions (FLUX.2
numbers text positions on a rope axis) and how region texts enter the model.

A mask over half the image covers half the image tokens, at any mask resolution and latent scale. Runs the pack
leaves alone (gamma 1, text scale 1, no regions, a window no step falls in) are the plain model bit for bit.
"""
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import make_cond, patcher, prompt_alone, sample
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


@pytest.mark.parametrize("family", family_params("full_region_identity"))
@pytest.mark.parametrize("mask_size", [(64, 96), (3, 2)])
def test_full_image_region_equals_prompting_with_its_text(family, mask_size):
    tiny = family.build()
    base = patcher(tiny)
    base_cond = make_cond(tiny, seed=1, n_tokens=7)
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, *mask_size), 1.0)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", single, "restricted", "background")[0]
    # Z-Image pads its image tokens to a multiple of 32, and its pad tokens see the base prompt (they are nobody's
    # region): 128 x 64 pixels make 32 tokens, no pads. Prompt and region text both pad to 32 tokens, so the image
    # sits where it would with the region text as the prompt.
    kw = dict(seed=0, steps=3, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
    neg = make_cond(tiny, seed=2)
    got = sample(model, base_cond, neg, **kw)
    want = sample(base, prompt_alone(region_cond, base_cond), neg, **kw)
    other = sample(base, base_cond, neg, **kw)
    assert (want - other).abs().max() > 1e-3  # the two prompts differ, so the identity can fail
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class _Planned(Exception):
    """Stops a run once its first forward has the regional plan: the plan's masks are all the test reads."""


@pytest.mark.parametrize("family", family_params("half_image_mask"))
@pytest.mark.parametrize("mask_hw", [(256, 256), (2, 2), (100, 60)])
def test_half_image_mask_covers_exactly_half_the_tokens(family, mask_hw, monkeypatch):
    """A left-half mask of any resolution on a 256 x 256 image covers the left half of the token columns (8 of 16),
    whatever the family's latent scale and patch (FLUX.2: latent 1/16 of the image, patch 1; Chroma Radiance: the image
    itself, the tiny model's patch 2; the others: 1/8, patch 2)."""
    from joint_attention_pack.attention import regional

    tiny = family.build()
    mask = torch.zeros(1, *mask_hw)
    mask[..., : mask_hw[1] // 2] = 1.0
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=5), mask, 1.0)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", single, "restricted",
                     "background")[0]
    seen = []
    original = regional.RegionalModifier.begin_forward

    def spy(self, state):
        original(self, state)
        seen.extend(plan.masks.clone() for plan in state.regions)  # made now or found in the plan cache
        raise _Planned

    monkeypatch.setattr(regional.RegionalModifier, "begin_forward", spy)
    side = 256 // family.latent_px
    latent = torch.zeros(1, tiny.latent_channels, side, side)  # a 256 x 256 image
    with pytest.raises(_Planned):
        sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=1, cfg=1.0, latent=latent)
    assert seen
    side = 256 // family.token_px
    grid = seen[0].reshape(side, side)
    half = side // 2
    assert torch.equal(grid[:, :half], torch.ones(side, half)) and torch.equal(grid[:, half:], torch.zeros(side, half))


@pytest.mark.parametrize("family", family_params("leaves_alone"))
def test_runs_the_pack_leaves_alone_are_bit_identical(family):
    """The nodes at settings that change nothing give the input model itself; in runs where no step falls in their
    window the patched model samples the plain image bit for bit."""
    tiny = family.build()
    base = patcher(tiny)
    single = "all" if tiny.n_single else "none"
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    late = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.999, 1.0, "all", single, "restricted",
                    "background")[0]
    assert torch.equal(sample(late, pos, neg, **KW), plain)  # a window no step falls in
    off = run_node(JointAttentionTACA, base, 1.5, 500.0, "both", "all", single)[0]  # threshold above every sigma
    assert torch.equal(sample(off, pos, neg, **KW), plain)
    unit = run_node(JointAttentionTextScale, base, "all", 1.0, "scale", 0.0, 1.0)[0]
    assert torch.equal(sample(unit, pos, neg, **KW), plain)
    assert run_node(JointAttentionTACA, base, 1.0, 0.0, "both", "all", single)[0] is base
    assert run_node(JointAttentionTACA, base, 1.5, 0.0, "both", "none", "none")[0] is base
    # A region the mask drops (all zero) leaves no region at all: the model passes through.
    empty = run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.zeros(1, HEIGHT, WIDTH), 1.0)[0]
    assert run_node(JointAttentionRegionalApply, base, empty, 0.2, 0.0, 1.0, "all", single, "restricted",
                    "background")[0] is base
