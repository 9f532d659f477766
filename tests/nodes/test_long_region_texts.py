"""Issue 28, break 1: region texts longer than the prompt (as the model sees it) keep their own-prompt positions.

Real prompts are padded (T5: 256 tokens on FLUX.1, FLUX.2: 512), so a region prompt longer than that is a region text
longer than the base text. Each region text must have the positions it has as the prompt alone, on every family,
at cfg 1 (one row) and batched (cfg > 1: cond and uncond rows in one forward).
"""
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, on_token_grid
from ja_tiny import build, make_cond, patcher, prompt_alone, sample
from joint_attention_pack.integration.conditioning import model_text
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply


def _seen_length(tiny, cond) -> int:
    """The prompt's length as the model sees it (FLUX.2 pads text to 512 tokens)."""
    return model_text(patcher(tiny), cond[0][0][0], cond[0][1]).shape[0]


@pytest.mark.parametrize("family", family_params("long_region_identity"))
@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_full_image_region_longer_than_the_prompt_equals_prompting_with_its_text(family, cfg):
    tiny = family.build()
    base = patcher(tiny)
    base_cond = make_cond(tiny, seed=1, n_tokens=7)
    # FLUX.2: 600 tokens against a prompt padded to 512; Z-Image: 95 tokens against 7, padded to 96 and 32 (the
    # image sits after the padded prompt, and the region text must see it at the distance it has as the prompt).
    longer = _seen_length(tiny, base_cond) + 88
    region_cond = make_cond(tiny, seed=5, n_tokens=longer)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 64, 96), 1.0)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", single, "restricted",
                     "background")[0]
    kw = dict(seed=0, steps=2, cfg=cfg, width=family.width_without_image_pads(96, 64), height=64)
    neg = make_cond(tiny, seed=2)
    got = sample(model, base_cond, neg, **kw)
    want = sample(base, prompt_alone(region_cond, base_cond), neg, **kw)
    other = sample(base, base_cond, neg, **kw)
    assert (want - other).abs().max() > 1e-3  # the two prompts differ, so the identity can fail
    torch.testing.assert_close(got, want, atol=family.identity_tol, rtol=family.identity_tol)


def test_flux2_region_text_positions_are_those_of_the_text_alone(monkeypatch):
    """The ids the model gets: base text 0..511, then each region text 0..T_r-1 (600 and 520 tokens, both past the
    padded prompt), in every row of a batched forward."""
    from joint_attention_pack.families.base import TextIdsAsPromptAlone

    tiny = build("flux2")
    regions = None
    for seed, n in ((5, 600), (6, 520)):
        regions = run_node(JointAttentionRegion, make_cond(tiny, seed=seed, n_tokens=n), torch.ones(1, 64, 64), 1.0,
                           regions)[0]
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    seen = []
    original = TextIdsAsPromptAlone.__call__

    def spy(self, args):
        out = original(self, args)
        seen.append(out["txt_ids"].clone())
        return out

    monkeypatch.setattr(TextIdsAsPromptAlone, "__call__", spy)
    sample(model, make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2), steps=1, cfg=2.0)
    assert seen
    ids = seen[0]
    assert ids.shape[:2] == (2, 512 + 600 + 520)
    counting = [d for d in range(ids.shape[-1]) if bool(ids[0, :, d].any())]
    assert counting  # FLUX.2 numbers text positions on an axis
    want = torch.cat([torch.arange(512), torch.arange(600), torch.arange(520)]).float()
    for d in counting:
        for row in range(ids.shape[0]):
            assert torch.equal(ids[row, :, d], want)


@pytest.mark.parametrize("family", family_params("long_regions_reference"))
def test_two_region_texts_longer_than_the_prompt_match_reference(family):
    """Batched (cfg 2.5) against the independent reference: the second region text is longer than base text and
    first region text together (and, padded, than the prompt on Z-Image: 40 tokens pad to 64 against 32)."""
    tiny = family.build()
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1, n_tokens=4), make_cond(tiny, seed=2, n_tokens=4)
    pixels, token_masks = cell_masks(False)
    regions, conds = None, []
    for i, n in enumerate((9, 40)):
        cond = make_cond(tiny, seed=10 + i, n_tokens=n)
        conds.append(cond[0][0][0])
        regions = run_node(JointAttentionRegion, cond, pixels[i:i + 1], 1.0, regions)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", single, "restricted",
                     "background")[0]
    from joint_attention_pack.attention.blocks import parse_blocks

    config = ReferenceConfig(regions=conds, masks=on_token_grid(tiny, token_masks), strengths=[1.0, 1.0], double=parse_blocks("all", tiny.n_double),
                             single=parse_blocks(single, tiny.n_single) if tiny.n_single else ())
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    got = sample(model, pos, neg, **kw)
    assert (got - sample(base, pos, neg, **kw)).abs().max() > 1e-3
    torch.testing.assert_close(got, sample(reference, pos, neg, **kw), atol=1e-5, rtol=1e-5)
