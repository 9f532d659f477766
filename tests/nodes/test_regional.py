"""Issue 4: regional prompting in the real host, against the independent reference model."""
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, on_token_grid, regional_config, regions_for
from ja_tiny import build, make_cond, patcher, sample, uncond_first_step
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

CONFIGS = [
    # image_attention, global_prompt, base_ratio, soft, double, single
    ("restricted", "background", 0.0, False, "all", "all"),
    ("restricted", "everywhere", 0.3, False, "all", "all"),
    ("open", "background", 0.3, True, "all", "all"),
    ("open", "everywhere", 0.0, True, "odd", "0"),
    ("restricted", "background", 0.3, True, "0", "none"),
]


@pytest.mark.parametrize("family", family_params("regional_reference"))
@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,soft,double,single", CONFIGS)
def test_regional_matches_reference(family, image_attention, global_prompt, base_ratio, soft, double, single):
    tiny = family.build()
    base = patcher(tiny)
    if not tiny.n_single:
        single = "none"
    pixels, token_masks = cell_masks(soft)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    start, end = 0.0, 0.6
    model = run_node(JointAttentionRegionalApply, base, regions, base_ratio, start, end, double, single,
                                                image_attention, global_prompt)[0]
    config = regional_config(base, tiny, conds, token_masks, strengths, base_ratio, start, end, double, single,
                             image_attention, global_prompt)
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT, latent=family.cell_latent(tiny, WIDTH, HEIGHT))
    got = sample(model, pos, neg, **kw)
    want = sample(reference, pos, neg, **kw)
    plain = sample(base, pos, neg, **kw)
    assert (got - plain).abs().max() > 1e-3  # the regions did something
    torch.testing.assert_close(got, want, atol=family.reference_tol, rtol=family.reference_tol)


@pytest.mark.parametrize("family", family_params("uncond_rows"))
def test_uncond_rows_match_unpatched(family):
    """The negative half runs as without the pack (region texts isolated). A window no step falls in:
    test_identities.test_runs_the_pack_leaves_alone_are_bit_identical."""
    tiny = family.build()
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.0])
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=3, cfg=3.0, width=WIDTH, height=HEIGHT)
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", single, "restricted", "background")[0]
    torch.testing.assert_close(uncond_first_step(model, pos, neg, **kw)[0], uncond_first_step(base, pos, neg, **kw)[0],
                               atol=1e-5, rtol=1e-5)


def test_zero_regions_and_empty_masks_pass_through():
    tiny = build("flux")
    base = patcher(tiny)
    empty = run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.zeros(1, 64, 96), 1.0)[0]
    assert empty == ()
    dropped = run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.ones(1, 64, 96), 0.0, empty)[0]
    assert dropped == ()
    out = run_node(JointAttentionRegionalApply, base, dropped, 0.2, 0.0, 0.4, "all", "all", "restricted", "background")[0]
    assert out is base


def test_bad_inputs_name_node_input_and_fix():
    tiny = build("flux")
    base = patcher(tiny)
    two = run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.stack([torch.ones(8, 8), torch.zeros(8, 8)]), 1.0)[0]
    model = run_node(JointAttentionRegionalApply, base, two, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
    with pytest.raises(ValueError, match=r"\[Region \(mask \+ prompt\)\] input 'mask'.*do not match the 3 image"):
        sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=1, cfg=2.0, batch=3)
    sd3 = build("sd3")
    foreign, _ = regions_for(sd3, cell_masks(False)[0], [1.0])
    if sd3.context_dim != tiny.context_dim:
        with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'regions'.*features per token"):
            run_node(JointAttentionRegionalApply, base, foreign, 0.2, 0.0, 0.4, "all", "all", "restricted", "background")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    with pytest.raises(ValueError, match=r"input 'double_blocks'.*valid numbers are 0-"):
        run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 0.4, "0-99", "all", "restricted", "background")
    with pytest.raises(ValueError, match=r"input 'double_blocks'.*cannot read"):
        run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 0.4, "1-x", "all", "restricted", "background")


def test_masks_of_any_resolution_and_non_square_images():
    tiny = build("flux")
    base = patcher(tiny)
    low_res = torch.zeros(1, 3, 2)
    low_res[0, :, 0] = 1.0  # left half, stretched over the image
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=3), low_res, 1.0)[0]
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    for width, height in ((96, 64), (40, 72), (56, 56)):
        out = sample(model, pos, neg, seed=0, steps=2, cfg=2.0, width=width, height=height)
        assert out.shape[-2:] == (height // 8, width // 8) and torch.isfinite(out).all()


def _positions(index):
    return set(range(index.start, index.stop)) if isinstance(index, slice) else set(index.tolist())


@pytest.mark.parametrize("family", family_params("region_text_reach"))
@pytest.mark.parametrize("base_ratio", [0.0, 0.3])
def test_outside_image_tokens_never_see_region_text_in_selected_blocks(family, base_ratio, monkeypatch):
    """Probability from image tokens outside region r to T_r is exactly 0: those keys are never in
    anything such a row attends to (checked on every planned call of a real sampling run)."""
    from joint_attention_pack.attention import joint
    from joint_attention_pack.attention.joint import EXCLUDED

    tiny = family.build()
    pixels, token_masks = cell_masks(True)
    token_masks = on_token_grid(tiny, token_masks)
    regions, _ = regions_for(tiny, pixels, [1.0, 2.0])
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, base_ratio, 0.0, 1.0, "all", single,
                                                "restricted", "background")[0]
    planned = []
    original = joint.plan_groups

    def spy(layout, spec, device):
        groups = original(layout, spec, device)
        if spec.structure is not None:
            planned.append((layout, groups))
        return groups

    monkeypatch.setattr(joint, "plan_groups", spy)
    sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), seed=0, steps=2, cfg=2.0, width=WIDTH, height=HEIGHT)
    n_blocks = tiny.n_double + tiny.n_single
    assert len(planned) == 2 * n_blocks  # every selected block of every step
    for layout, groups in planned:
        planned_rows = set()
        for group in groups:
            rows = _positions(group.index)
            planned_rows |= rows
            for r in range(len(layout.region_lens)):
                text_r = _positions(layout.region(r))
                outside_r = {layout.img.start + i for i in (token_masks[r] == 0).nonzero().flatten().tolist()}
                for part in group.parts:
                    visible = part.main_bias is not EXCLUDED or (part.in_base and group.base_ratio > 0)
                    if visible and _positions(part.index) & text_r:
                        assert not rows & outside_r, f"rows {sorted(rows & outside_r)} could see region {r}'s text"
        assert planned_rows == set(range(layout.total))  # every token is planned, none falls through


def test_one_mask_per_image_of_the_batch():
    """A mask batch gives each image its own layout: image i matches a run where every image uses mask i."""
    tiny = build("flux")
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    left, right = pixels[0], torch.flip(pixels[0], dims=[-1])
    cond = make_cond(tiny, seed=3)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.0, width=WIDTH, height=HEIGHT, batch=2)

    def run(masks):
        regions = run_node(JointAttentionRegion, cond, masks, 1.0)[0]
        model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
        return sample(model, pos, neg, **kw)

    mixed = run(torch.stack([left, right]))
    all_left = run(torch.stack([left, left]))
    all_right = run(torch.stack([right, right]))
    torch.testing.assert_close(mixed[0], all_left[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1], all_right[1], atol=1e-5, rtol=1e-5)
    assert (all_left[0] - all_right[0]).abs().max() > 1e-3


def test_one_hundred_chained_regions_on_random_cells_match_reference():
    """Issue 15: 100 chained Region nodes (random 16 px cells, soft and hard) through the real sampler."""
    from joint_attention_pack.attention.blocks import parse_blocks

    tiny = build("flux")
    base = patcher(tiny)
    g = torch.Generator().manual_seed(100)
    cells = (torch.rand(100, 4, 6, generator=g) < 0.25).float()
    cells[::4] *= 0.5
    cells[:, 0, 0] = 0.0  # some tokens stay uncovered
    cells[-1, 0, 1] = 1.0
    pixels = cells.repeat_interleave(16, 1).repeat_interleave(16, 2)
    regions, conds = None, []
    strengths = (torch.rand(100, generator=g) + 0.5).tolist()
    for i in range(100):
        cond = make_cond(tiny, seed=100 + i, n_tokens=2)
        conds.append(cond[0][0][0])
        regions = run_node(JointAttentionRegion, cond, pixels[i:i + 1], strengths[i], regions)[0]
    kept = [i for i in range(100) if cells[i].any()]
    assert len(regions) == len(kept)
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
    sampling = base.get_model_object("model_sampling")
    config = ReferenceConfig(
        regions=[conds[i] for i in kept], masks=cells[kept].reshape(len(kept), -1), strengths=[strengths[i] for i in kept],
        base_ratio=0.2, sigma_start=float(sampling.percent_to_sigma(0.0)), sigma_end=float(sampling.percent_to_sigma(1.0)),
        double=parse_blocks("all", tiny.n_double), single=parse_blocks("all", tiny.n_single))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.0, width=WIDTH, height=HEIGHT)
    torch.testing.assert_close(sample(model, pos, neg, **kw), sample(reference, pos, neg, **kw), atol=1e-5, rtol=1e-5)


def test_region_count_limit_is_refused_before_sampling():
    from joint_attention_pack.attention.regional import MAX_REGIONS

    tiny = build("flux")
    cond = make_cond(tiny, seed=3, n_tokens=2)
    regions = None
    for _ in range(MAX_REGIONS):
        regions = run_node(JointAttentionRegion, cond, torch.ones(1, 8, 8), 1.0, regions)[0]
    with pytest.raises(ValueError, match=rf"\[Region \(mask \+ prompt\)\] input 'regions'.*at most {MAX_REGIONS}"):
        run_node(JointAttentionRegion, cond, torch.ones(1, 8, 8), 1.0, regions)
    with pytest.raises(ValueError, match=rf"\[Apply Regional Attention\] input 'regions'.*at most {MAX_REGIONS}"):
        run_node(JointAttentionRegionalApply, patcher(tiny), regions + regions[:1], 0.2, 0.0, 1.0, "all", "all",
                                            "restricted", "background")
