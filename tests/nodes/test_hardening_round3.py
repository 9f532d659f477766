"""Issue 28 (hardening, round 3): each break of the review, in-process in the real host."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

APPLY = dict(base_ratio=0.2, start_percent=0.0, end_percent=0.6, double_blocks="all", single_blocks="all",
             image_attention="restricted", global_prompt="background")


@pytest.fixture(scope="module")
def flux():
    return build("flux")


def _chain(tiny, pixels, seeds, regions=None):
    for i, seed in enumerate(seeds):
        regions = run_node(JointAttentionRegion, make_cond(tiny, seed=seed, n_tokens=5 + i), pixels[i:i + 1], 1.0 + i / 2,
                           regions)[0]
    return regions


# -- break 2: two Apply Regional Attention nodes in a row ---------------------------------------------------------------
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image"])
def test_two_apply_nodes_in_a_row_act_as_one_apply_with_both_chains(family):
    tiny = build(family)
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    settings = {**APPLY, "single_blocks": "all" if tiny.n_single else "none"}
    first, second = _chain(tiny, pixels[:1], [10]), _chain(tiny, pixels[1:], [11])
    both = _chain(tiny, pixels[1:], [11], regions=first)
    one = run_node(JointAttentionRegionalApply, base, both, **settings)[0]
    stacked = run_node(JointAttentionRegionalApply, run_node(JointAttentionRegionalApply, base, first, **settings)[0],
                       second, **settings)[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=128 if family == "z_image" else WIDTH, height=HEIGHT)
    want = sample(one, pos, neg, **kw)
    alone = sample(run_node(JointAttentionRegionalApply, base, second, **settings)[0], pos, neg, **kw)
    assert (want - alone).abs().max() > 1e-3  # the first chain matters, so dropping it would show
    assert torch.equal(sample(stacked, pos, neg, **kw), want)


@pytest.mark.parametrize("change", [dict(base_ratio=0.3), dict(end_percent=0.9), dict(double_blocks="0"),
                                    dict(image_attention="open"), dict(global_prompt="everywhere")])
def test_two_apply_nodes_with_different_settings_are_refused_naming_both(flux, change):
    pixels, _ = cell_masks(False)
    first = run_node(JointAttentionRegionalApply, patcher(flux), _chain(flux, pixels[:1], [10]), **APPLY)[0]
    with pytest.raises(ValueError, match=r"^\[Apply Regional Attention\] input 'model': .*earlier Apply Regional "
                                         r"Attention node.*Fix: "):
        run_node(JointAttentionRegionalApply, first, _chain(flux, pixels[1:], [11]), **{**APPLY, **change})


def test_two_apply_nodes_share_the_region_limit(flux):
    from joint_attention_pack.attention.regional import MAX_REGIONS

    mask = torch.ones(1, 8, 8)
    regions = ()
    for i in range(MAX_REGIONS):
        regions = run_node(JointAttentionRegion, make_cond(flux, seed=i, n_tokens=1), mask, 1.0, regions)[0]
    first = run_node(JointAttentionRegionalApply, patcher(flux), regions, **APPLY)[0]
    with pytest.raises(ValueError, match=r"^\[Apply Regional Attention\] input 'regions': .*at most 128"):
        run_node(JointAttentionRegionalApply, first, regions[:1], **APPLY)
