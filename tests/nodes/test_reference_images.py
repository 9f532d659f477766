"""Reference images (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit) with the pack's features, through the real sampler
against the dense reference model, for every family of the test list that takes reference images (ja_families).

- The reference latent's tokens follow the image tokens; regions keep them visible to every image query, covered or
  not (cell_masks leaves the last token column uncovered), as the README says. With the reference on both prompts
  the CFG halves share one batch; on the positive only they run as two forwards with different layouts.
- TACA beside reference tokens.
- Issue 14: 0.29's FLUX forward copies `transformer_options` and sets `reference_image_num_tokens` / `img_slice` on
  the way; its `index_timestep_zero` reference method doubles the timestep batch for modulation (the host takes it
  on models without guidance weights: FLUX.2 Klein, Qwen-Image-Edit). A host that does not know the method treats
  it as its default offset method; the pack must match the reference either way. Nothing here branches on the
  host's version: every case runs, and passes, on both hosts.
"""
import pytest
import torch

from ja_families import BY_NAME, family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import make_cond, patcher, sample, uncond_first_step, with_options
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
METHOD = "index_timestep_zero"


def _reference_options(ref, method):
    """What the host's ReferenceLatent node (and FLUX.2 / Edit nodes) put in the conditioning."""
    return {"reference_latents": [ref], **({"reference_latents_method": method} if method else {})}


def _build(family, method):
    return family.build(**(family.index_timestep_zero_build if method == METHOD else {}))


# (the negative prompt has the reference too, reference method)
REFERENCE_ON = {"both_prompts": (True, None), "positive_only": (False, None), METHOD: (True, METHOD)}


@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,soft", [
    ("restricted", "background", 0.0, False),
    ("restricted", "everywhere", 0.3, True),
    ("open", "background", 0.2, True),
])
@pytest.mark.parametrize("family,reference_on", family_params("reference_images_with_regions", REFERENCE_ON))
def test_reference_tokens_stay_visible_with_regions(family, reference_on, image_attention, global_prompt, base_ratio,
                                                    soft):
    negative_has_reference, method = reference_on
    tiny = _build(family, method)
    base = patcher(tiny)
    ref = family.reference_latent(tiny, 4, 6)  # 2 x 3 = 6 reference tokens beside the 4 x 6 image tokens
    pixels, token_masks = cell_masks(soft)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 0.6, "all", single, image_attention,
                     global_prompt)[0]
    config = regional_config(base, tiny, conds, token_masks, strengths, base_ratio, 0.0, 0.6, "all", single,
                             image_attention, global_prompt)
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos = with_options(make_cond(tiny, seed=1), **_reference_options(ref, method))
    neg = make_cond(tiny, seed=2)
    if negative_has_reference:
        neg = with_options(neg, **_reference_options(ref, method))
    got = sample(model, pos, neg, **KW)
    want = sample(reference, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=family.reference_tol, rtol=family.reference_tol)
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **KW)
    plain = sample(base, pos, neg, **KW)
    assert (got - without_ref).abs().max() > 1e-3  # the reference tokens are in the sequence and attended
    assert (got - plain).abs().max() > 1e-3  # the regions did something


# (reference method, TACA's rows)
TACA_ON = {"both_rows": (None, "both"), "cond_rows": (None, "cond"), METHOD: (METHOD, "both"),
           f"{METHOD}_cond_rows": (METHOD, "cond")}


@pytest.mark.parametrize("family,taca_on", family_params("reference_images_with_taca", TACA_ON))
def test_reference_tokens_with_taca_match_reference(family, taca_on):
    method, apply_to = taca_on
    tiny = _build(family, method)
    base = patcher(tiny)
    ref = family.reference_latent(tiny, 4, 6)  # FLUX.2 patches are 1 latent cell: 24 reference tokens
    options = _reference_options(ref, method)
    pos, neg = with_options(make_cond(tiny, seed=1), **options), with_options(make_cond(tiny, seed=2), **options)
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionTACA, base, 1.8, 0.5, apply_to, "all", single)[0]
    config = ReferenceConfig(gamma=1.8, gamma_threshold=0.5, gamma_rows=apply_to,
                             gamma_double=range(tiny.n_double), gamma_single=range(tiny.n_single))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    kw = dict(KW, steps=2)
    got, want, plain = (sample(m, pos, neg, **kw) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-6
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **kw)
    assert (got - without_ref).abs().max() > 1e-4


@pytest.mark.parametrize("method", [None, METHOD])
def test_flux2_reference_image_with_regions(method):
    """FLUX.2 regions beside a reference image (its token grid is not cell_masks', so no dense reference here): the
    negative half runs exactly as without the pack (reference tokens included), the result is finite and depends on
    the reference."""
    family = BY_NAME["flux2"]
    tiny = _build(family, method)
    base = patcher(tiny)
    options = _reference_options(family.reference_latent(tiny, 4, 6, seed=3), method)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    pos, neg = with_options(make_cond(tiny, seed=1), **options), with_options(make_cond(tiny, seed=2), **options)
    kw = dict(KW, steps=2)
    uncond, got = uncond_first_step(model, pos, neg, **kw)
    plain_uncond, plain = uncond_first_step(base, pos, neg, **kw)
    torch.testing.assert_close(uncond, plain_uncond, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(got).all() and (got - plain).abs().max() > 1e-4
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **kw)
    assert (got - without_ref).abs().max() > 1e-4
