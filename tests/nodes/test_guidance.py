"""Issue 5: TACA and per-block text scaling in the real host, against test-side references."""
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


@pytest.mark.parametrize("family", family_params("taca_reference"))
@pytest.mark.parametrize("apply_to", ["both", "cond", "uncond"])
@pytest.mark.parametrize("blocks", [("all", "all"), ("0", "none"), ("none", "1")])
def test_taca_matches_reference(family, apply_to, blocks):
    tiny = family.build()
    base = patcher(tiny)
    double, single = blocks
    if not tiny.n_single:
        if double == "none":
            pytest.skip("SD3 has no single blocks")
        single = "none"
    threshold = 0.5
    model = run_node(JointAttentionTACA, base, 1.8, threshold, apply_to, double, single)[0]
    config = ReferenceConfig(gamma=1.8, gamma_threshold=threshold, gamma_rows=apply_to,
                             gamma_double=parse_blocks(double, tiny.n_double),
                             gamma_single=parse_blocks(single, tiny.n_single) if tiny.n_single else ())
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    got, want, plain = (sample(m, pos, neg, **KW) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-6  # TACA changed the result (small when only uncond rows of one block)
    torch.testing.assert_close(got, want, atol=family.taca_tol, rtol=family.taca_tol)


@pytest.mark.parametrize("family", family_params("taca_with_regions"))
@pytest.mark.parametrize("order", ["taca_first", "regions_first"])
def test_taca_composes_with_regions(family, order):
    tiny = family.build()
    base = patcher(tiny)
    single = "all" if tiny.n_single else "none"
    pixels, token_masks = cell_masks(True)
    regions, conds = regions_for(tiny, pixels, [1.0, 2.0])

    def regional(m):
        return run_node(JointAttentionRegionalApply, m, regions, 0.3, 0.0, 1.0, "all", single, "restricted", "background")[0]

    def taca(m):
        return run_node(JointAttentionTACA, m, 1.5, 0.5, "both", "all", single)[0]

    model = taca(regional(base)) if order == "regions_first" else regional(taca(base))
    config = regional_config(base, tiny, conds, token_masks, [1.0, 2.0], 0.3, 0.0, 1.0, "all", single,
                             gamma=1.5, gamma_threshold=0.5, gamma_double=range(tiny.n_double),
                             gamma_single=range(tiny.n_single))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    torch.testing.assert_close(sample(model, pos, neg, **KW), sample(reference, pos, neg, **KW), atol=family.taca_tol,
                               rtol=family.taca_tol)


# TACA inactive above every sigma and at gamma 1: test_identities.test_runs_the_pack_leaves_alone_are_bit_identical.


@pytest.mark.parametrize("family", family_params("text_scale_reference"))
@pytest.mark.parametrize("mode", ["scale", "empty", "skip"])
@pytest.mark.parametrize("token_range", ["", "1-3"])
def test_text_scale_matches_block_patch_reference(family, mode, token_range):
    tiny = family.build()
    base = patcher(tiny)
    n_double, n_single = tiny.n_double, tiny.n_single
    chosen = {0, n_double} if n_single else {0, n_double - 1}  # a double and a single (FLUX), first and last (SD3)
    text = ",".join(str(i) for i in sorted(chosen))
    model = run_node(JointAttentionTextScale, base, text, 1.7, mode, 0.0, 1.0, token_range)[0]
    lo_hi = None if not token_range else (1, 4)
    pos, neg = make_cond(tiny, seed=1, n_tokens=6), make_cond(tiny, seed=2, n_tokens=6)
    n_txt = pos[0][0].shape[1]  # 6, or the length a family's encoder gives every prompt (LongCat-Image)

    if not family.block_patches:  # NextDiT: the reference forward edits the joint sequence's text rows itself
        def edit(i, seq, n_ctx):
            if i not in chosen:
                return seq
            if mode == "skip":
                return None
            lo, hi = lo_hi or (0, n_ctx)
            seq = seq.clone()
            seq[:, lo:hi] = seq[:, lo:hi] * (0.0 if mode == "empty" else 1.7)
            return seq

        reference = install_reference(base, ReferenceConfig(text_edit=edit), n_double, n_single)
        got, want, plain = (sample(m, pos, neg, **KW) for m in (model, reference, base))
        assert (got - plain).abs().max() > 1e-5
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        return
    doubles = getattr(base.model.diffusion_model, "double_blocks", None)
    # 0.3.75's HunyuanVideo (flipped double blocks) joins its single stream as [image ; text]: text at the end.
    text_last = bool(doubles is not None and len(doubles) and getattr(doubles[0], "flipped_img_txt", False))
    reference = base.clone()
    for kind, count, offset in (("double", n_double, 0), ("single", n_single, n_double)):
        for i in range(count):
            def patch(args, extra, number=offset + i, kind=kind):
                args = dict(args)
                if number in chosen:
                    if mode == "skip":
                        return {k: args[k] for k in ("img", "txt") if k in args}
                    f = 0.0 if mode == "empty" else 1.7
                    key = "txt" if kind == "double" else "img"
                    x = args[key].clone()
                    lo, hi = lo_hi or (0, family.text_prefix + n_txt)  # AuraFlow: registers, then the prompt
                    if kind == "single" and text_last:
                        lo, hi = lo + x.shape[1] - n_txt, hi + x.shape[1] - n_txt
                    x[:, lo:hi] = x[:, lo:hi] * f
                    args[key] = x
                return extra["original_block"](args)
            reference.set_model_patch_replace(patch, "dit", f"{kind}_block", i)
    got, want, plain = (sample(m, pos, neg, **KW) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-5
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_text_scale_identities_are_bit_identical_and_bad_input_is_named():
    tiny = build("flux")
    base = patcher(tiny)
    assert run_node(JointAttentionTextScale, base, "2,3", 1.0, "scale", 0.0, 1.0)[0] is base
    assert run_node(JointAttentionTextScale, base, "none", 1.5, "scale", 0.0, 1.0)[0] is base
    n = tiny.n_double + tiny.n_single
    with pytest.raises(ValueError, match=rf"\[Text Scale per Block\] input 'blocks'.*valid numbers are 0-{n - 1}"):
        run_node(JointAttentionTextScale, base, f"{n}", 1.5, "scale", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"input 'token_range'"):
        run_node(JointAttentionTextScale, base, "0", 1.5, "scale", 0.0, 1.0, "a-b")
    with pytest.raises(ValueError, match=r"\[TACA \(text attention temperature\)\] input 'single_blocks'"):
        run_node(JointAttentionTACA, base, 1.2, 0.97, "both", "all", "5-1")


@pytest.mark.parametrize("family", family_params("text_scale_with_regions"))
def test_text_scale_composes_with_regions_in_either_order(family):
    """Regions then text scale == text scale then regions (one dispatcher, both features)."""
    tiny = family.build()
    base = patcher(tiny)
    single = "all" if tiny.n_single else "none"
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])

    def regional(m):
        return run_node(JointAttentionRegionalApply, m, regions, 0.2, 0.0, 1.0, "all", single, "restricted", "background")[0]

    def scaled(m):
        return run_node(JointAttentionTextScale, m, "0,1", 1.6, "scale", 0.0, 1.0)[0]

    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    a = sample(scaled(regional(base)), pos, neg, **KW)
    b = sample(regional(scaled(base)), pos, neg, **KW)
    only_regions = sample(regional(base), pos, neg, **KW)
    assert torch.equal(a, b)
    assert (a - only_regions).abs().max() > 1e-5
