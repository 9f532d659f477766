"""Regional prompting as a structure of the executor: identities that need no reference, the plan's groups, and the
modifier that contributes the plan (the dense-reference grid lives in test_joint.py)."""
import math

import pytest
import torch

from joint_attention_pack.attention.dispatcher import JointAttentionDispatcher
from joint_attention_pack.attention.forward import ATTENTION, COND, UNCOND, BlockRef, ForwardState
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.joint import EXCLUDED, CallSpec, index_len, joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import MaskBatchMismatch, Region, RegionalModifier, RegionalPlan, check_settings

D = 8
SCALE = 1.0 / math.sqrt(D)
GRID, LATENT = (3, 4), (6, 8)  # 12 image tokens of 2 x 2 latent cells of 8 x 8 pixels: a 48 x 64 image
BLOCK = BlockRef("double", 0, 0)
SETTINGS = [(ia, gp, br) for ia in ("restricted", "open") for gp in ("background", "everywhere") for br in (0.0, 0.3)]


def _qkv(layout, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 2, layout.total, D, generator=g) for _ in range(3)]


def _positions(index) -> list:
    return list(range(index.start, index.stop)) if isinstance(index, slice) else index.tolist()


@pytest.mark.parametrize("image_attention", ["restricted", "open"])
def test_a_region_over_the_whole_image_at_strength_one_is_prompting_with_its_text_alone(image_attention):
    """[T0 ; T1 ; I] with T1 covering every image token (background mode hides T0 from the image) gives, at T1 and
    image rows, what [T1 ; I] gives: no reference needed, the plain prompt is the reference."""
    regional = TokenLayout(n_txt=5, n_img=12, region_lens=(4,), grid=GRID)
    q, k, v = _qkv(regional)
    plan = RegionalPlan(torch.ones(1, 12), [1.0], image_attention, "background", 0.0)
    out = joint_attention(q, k, v, regional, CallSpec(texts_unread=False, structure=plan), KernelSelector(), SCALE)
    alone = TokenLayout(n_txt=4, n_img=12, grid=GRID)
    keep = _positions(regional.region(0)) + _positions(regional.img)
    qa, ka, va = (x[:, :, keep] for x in (q, k, v))
    want = joint_attention(qa, ka, va, alone, CallSpec(), KernelSelector(), SCALE)
    torch.testing.assert_close(out[:, :, keep], want, atol=1e-6, rtol=1e-6)


def test_the_base_prompt_everywhere_is_not_the_region_alone():
    """The identity above must be able to fail: with `everywhere` the image also reads T0."""
    regional = TokenLayout(n_txt=5, n_img=12, region_lens=(4,), grid=GRID)
    q, k, v = _qkv(regional)
    plan = RegionalPlan(torch.ones(1, 12), [1.0], "restricted", "everywhere", 0.0)
    out = joint_attention(q, k, v, regional, CallSpec(texts_unread=False, structure=plan), KernelSelector(), SCALE)
    keep = _positions(regional.region(0)) + _positions(regional.img)
    want = joint_attention(*(x[:, :, keep] for x in (q, k, v)), TokenLayout(4, 12, grid=GRID), CallSpec(),
                           KernelSelector(), SCALE)
    assert (out[:, :, regional.img] - want[:, :, 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("image_attention,global_prompt,base_ratio", SETTINGS)
def test_the_plan_places_every_row_once_and_each_key_at_most_once_per_row(image_attention, global_prompt, base_ratio):
    layout = TokenLayout(n_txt=5, n_img=12, n_ref=2, region_lens=(3, 2), grid=GRID)
    masks = torch.zeros(2, 12)
    masks[0, :6], masks[1, 4:9] = 1.0, 0.5
    groups = RegionalPlan(masks, [1.0, 2.0], image_attention, global_prompt, base_ratio).groups(layout, "cpu")
    rows = sorted(r for g in groups for r in _positions(g.index))
    assert rows == list(range(layout.total))
    for group in groups:
        keys = [key for p in group.parts for key in _positions(p.index)]
        assert len(keys) == len(set(keys))
        for part in group.parts:
            for bias in (part.main_bias, part.key_bias):
                if isinstance(bias, torch.Tensor):
                    assert bool(torch.isfinite(bias).all())  # hidden keys are EXCLUDED, never -inf
                    assert bias.numel() == index_len(group.index if bias is part.main_bias else part.index)


def test_fully_covered_image_rows_never_see_the_base_prompt_in_background_mode():
    layout = TokenLayout(n_txt=5, n_img=12, region_lens=(3,), grid=GRID)
    masks = torch.zeros(1, 12)
    masks[0, :4] = 1.0
    masks[0, 4] = 0.5
    groups = RegionalPlan(masks, [1.0], "restricted", "background", 0.0).groups(layout, "cpu")
    for group in groups:
        if group.image_rows is None:
            continue
        base = next(p for p in group.parts if p.text_offset == 0)
        covered = set(_positions(group.image_rows)) <= {0, 1, 2, 3}
        assert (base.main_bias is EXCLUDED) is covered


def test_the_settings_are_checked_once_for_plans_and_modifiers():
    with pytest.raises(ValueError, match=r"image_attention must be one of \('restricted', 'open'\), got 'closed'"):
        check_settings("closed", "background")
    with pytest.raises(ValueError, match=r"global_prompt must be one of \('background', 'everywhere'\), got 'x'"):
        RegionalPlan(torch.ones(1, 4), [1.0], "open", "x")
    with pytest.raises(ValueError, match="image_attention must be one of"):
        RegionalModifier([], 0.0, Gate(), image_attention="closed")


def test_a_plan_refuses_a_layout_with_another_number_of_regions():
    plan = RegionalPlan(torch.ones(2, 12), [1.0, 1.0])
    with pytest.raises(ValueError, match="layout has 1 region texts, plan has 2"):
        plan.groups(TokenLayout(5, 12, 0, (3,), GRID), "cpu")


# -- the modifier -------------------------------------------------------------------------------------------------
def _region(length, mask, strength=1.0, name="r"):
    tokens = torch.full((length, 6), float(length))
    return Region(tokens, mask, strength, content_hash=f"{name}:{length}:{strength}")


def _state(row_kinds=(COND, UNCOND), row_items=(), sigma=0.5):
    return ForwardState("flux", 5, 5, (), 12, GRID, row_kinds, sigma, 2, 0, latent_hw=LATENT, row_items=row_items)


def _left_half(batch=1):
    mask = torch.zeros(batch, 48, 64)
    mask[:, :, :32] = 1.0
    return mask


def test_begin_forward_appends_the_region_texts_and_plans_them():
    modifier = RegionalModifier([_region(3, _left_half()), _region(2, 1.0 - _left_half())], 0.0, Gate(double=frozenset({0})))
    state = _state()
    extra = modifier.begin_forward(state)
    assert extra.shape == (5, 6) and state.region_lens == (3, 2)
    (plan,) = state.regions
    assert plan.masks.tolist() == [[1, 1, 0, 0] * 3, [0, 0, 1, 1] * 3]
    assert modifier.expects(state) == (ATTENTION,)


def test_rows_get_the_plan_in_selected_blocks_and_unmasked_texts_elsewhere_and_uncond_rows_leave_them_unread():
    modifier = RegionalModifier([_region(3, _left_half())], 0.0, Gate(double=frozenset({1})))
    state = _state()
    modifier.begin_forward(state)
    (plan,) = state.regions
    selected, other, uncond = CallSpec(), CallSpec(), CallSpec()
    modifier.contribute(state, BlockRef("double", 1, 1), COND, selected)
    modifier.contribute(state, BLOCK, COND, other)
    modifier.contribute(state, BlockRef("double", 1, 1), UNCOND, uncond)
    assert selected == CallSpec(texts_unread=False, structure=plan)
    assert other == CallSpec(texts_unread=False)
    assert uncond == CallSpec()


def test_one_mask_per_image_gives_each_image_its_plan():
    masks = torch.cat([_left_half(), 1.0 - _left_half()])
    modifier = RegionalModifier([_region(3, masks)], 0.0, Gate(double=frozenset({0})))
    state = _state(row_kinds=(COND, COND, UNCOND, UNCOND), row_items=(0, 1, 0, 1))
    modifier.begin_forward(state)
    plans = state.regions
    assert len(plans) == 2 and plans[0].masks.tolist() != plans[1].masks.tolist()
    for item in (0, 1):
        spec = CallSpec()
        modifier.contribute(state, BLOCK, COND, spec, item)
        assert spec.structure is plans[item]


def test_a_mask_batch_that_matches_no_image_count_is_refused():
    modifier = RegionalModifier([_region(3, torch.cat([_left_half()] * 3))], 0.0, Gate(double=frozenset({0})))
    with pytest.raises(MaskBatchMismatch, match=r"mask batches of \[3\] do not match the 2 image\(s\) being sampled"):
        modifier.begin_forward(_state(row_kinds=(COND, COND), row_items=(0, 1)))


@pytest.mark.parametrize("why", ["no region with strength", "outside the window"])
def test_without_regions_in_force_the_call_is_the_hosts(why):
    """No region texts appended and no row planned: the host's own attention, bit for bit."""
    strength = 0.0 if why == "no region with strength" else 1.0
    gate = Gate(double=frozenset({0}), sigma_high=0.4 if why == "outside the window" else math.inf)
    modifier = RegionalModifier([_region(3, _left_half(), strength)], 0.0, gate)
    state = _state()
    dispatcher = JointAttentionDispatcher([modifier])
    assert dispatcher.begin_forward(state) is None
    assert state.region_lens == () and modifier.expects(state) == ()
    assert dispatcher.plan(state, BLOCK, 17) is None
