"""Issue 14: paths that changed between the pinned ComfyUI 0.3.75 and current ComfyUI (0.29), run on both hosts.

- Kontext reference latents with regions, through the real sampler, against the dense reference model: reference
  tokens are always visible to image queries (docs/regional.md), whatever the masks say. 0.29's FLUX forward copies
  `transformer_options` and sets `reference_image_num_tokens` / `img_slice` on the way.
- A patched model cloned many times: 0.3.75 deep-copies `model_options` on clone, 0.29 copies only its dicts and
  lists (`comfy.utils.deepcopy_list_dict`) and shares every other object. Either way the clones share the one
  dispatcher, sample exactly like the original, and a node applied to a clone leaves the original alone.
- FLUX.2 with a reference image and a pack feature, including 0.29's `index_timestep_zero` reference method (which
  doubles the timestep batch for modulation; the host supports it on Klein-style models without guidance
  weights). A host that does not know that method treats it as its default offset method; the pack must match
  the reference either way.

Nothing here branches on the host's version: every case runs, and passes, on both hosts.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.integration.options import find_dispatcher
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def _with(cond, **extra):
    """The conditioning with extra keys (reference_latents, reference_latents_method) set, as the host's nodes do."""
    return [[tokens, {**options, **extra}] for tokens, options in cond]


def _reference_latent(tiny, rows, cols, seed=7):
    return torch.randn(1, tiny.latent_channels, rows, cols, generator=torch.Generator().manual_seed(seed))


def _regional_reference(tiny, base, conds, token_masks, strengths, base_ratio, start, end, image_attention,
                        global_prompt, single):
    sampling = base.get_model_object("model_sampling")
    config = ReferenceConfig(
        regions=conds, masks=token_masks, strengths=strengths, base_ratio=base_ratio,
        sigma_start=float(sampling.percent_to_sigma(start)), sigma_end=float(sampling.percent_to_sigma(end)),
        double=parse_blocks("all", tiny.n_double), single=parse_blocks(single, tiny.n_single),
        image_attention=image_attention, global_prompt=global_prompt)
    return install_reference(base, config, tiny.n_double, tiny.n_single)


@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,soft", [
    ("restricted", "background", 0.0, False),
    ("restricted", "everywhere", 0.3, True),
    ("open", "background", 0.2, True),
])
@pytest.mark.parametrize("negative_has_reference", [True, False])
def test_kontext_reference_with_regions_matches_reference(image_attention, global_prompt, base_ratio, soft,
                                                          negative_has_reference):
    """FLUX.1 Kontext: the reference latent's tokens follow the image tokens; regions keep them visible to every
    image query, covered or not (cell_masks leaves the last token column uncovered). With the reference on both
    prompts the CFG halves share one batch; on the positive only they run as two forwards with different layouts."""
    tiny = build("flux")
    base = patcher(tiny)
    ref = _reference_latent(tiny, 4, 6)  # 2 x 3 = 6 reference tokens beside the 4 x 6 image tokens
    pixels, token_masks = cell_masks(soft)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    model = run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 0.6, "all", "all", image_attention,
                                                global_prompt)[0]
    reference = _regional_reference(tiny, base, conds, token_masks, strengths, base_ratio, 0.0, 0.6, image_attention,
                                    global_prompt, "all")
    pos = _with(make_cond(tiny, seed=1), reference_latents=[ref])
    neg = make_cond(tiny, seed=2)
    if negative_has_reference:
        neg = _with(neg, reference_latents=[ref])
    got = sample(model, pos, neg, **KW)
    want = sample(reference, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    without_ref = sample(model, make_cond(tiny, seed=1), neg, **KW)
    plain = sample(base, pos, neg, **KW)
    assert (got - without_ref).abs().max() > 1e-3  # the reference tokens are in the sequence and attended
    assert (got - plain).abs().max() > 1e-3  # the regions did something


def _chain_of_clones(model, n):
    clones = [model]
    for _ in range(n):
        clones.append(clones[-1].clone())
    return clones


def test_repeatedly_cloned_model_samples_the_same_and_shares_the_dispatcher():
    tiny = build("flux")
    base = patcher(tiny)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    taca = run_node(JointAttentionTACA, base, 1.4, 0.5, "both", "all", "all")[0]
    model = run_node(JointAttentionRegionalApply, taca, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                                                "background")[0]
    dispatcher = find_dispatcher(model.model_options["transformer_options"])
    assert dispatcher is not None and [m.key for m in dispatcher.modifiers] == ["taca", "regional"]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    first = sample(model, pos, neg, **KW)
    clones = _chain_of_clones(model, 6)
    for c in clones[1:]:
        opts = c.model_options["transformer_options"]
        assert find_dispatcher(opts) is dispatcher
        assert opts["optimized_attention_override"] is dispatcher
        assert c.model_options is not model.model_options and opts is not model.model_options["transformer_options"]
    assert torch.equal(sample(clones[-1], pos, neg, **KW), first)
    assert torch.equal(sample(clones[3], pos, neg, **KW), first)
    assert torch.equal(sample(model, pos, neg, **KW), first)  # sampling the clones left the original as it was


def test_node_applied_to_a_deep_clone_leaves_the_original_and_the_other_clones_alone():
    tiny = build("flux")
    base = patcher(tiny)
    taca = run_node(JointAttentionTACA, base, 1.4, 0.5, "both", "all", "all")[0]
    clones = _chain_of_clones(taca, 4)
    dispatcher = find_dispatcher(taca.model_options["transformer_options"])
    before = {name: list(options) if isinstance(options, list) else options
              for name, options in taca.model_options["transformer_options"].items()}
    scaled_clone = run_node(JointAttentionTextScale, clones[-1], "0", 1.5, "scale", 0.0, 1.0)[0]
    scaled_direct = run_node(JointAttentionTextScale, taca, "0", 1.5, "scale", 0.0, 1.0)[0]
    extended = find_dispatcher(scaled_clone.model_options["transformer_options"])
    assert extended is not dispatcher and [m.key for m in extended.modifiers] == ["taca", "text_scale"]
    assert [m.key for m in dispatcher.modifiers] == ["taca"]
    for c in [taca] + clones[1:]:
        assert find_dispatcher(c.model_options["transformer_options"]) is dispatcher
    assert {name: list(options) if isinstance(options, list) else options
            for name, options in taca.model_options["transformer_options"].items()} == before
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    assert torch.equal(sample(scaled_clone, pos, neg, **KW), sample(scaled_direct, pos, neg, **KW))
    assert torch.equal(sample(clones[2], pos, neg, **KW), sample(taca, pos, neg, **KW))
    assert not torch.equal(sample(scaled_clone, pos, neg, **KW), sample(taca, pos, neg, **KW))


@pytest.mark.parametrize("method", [None, "index_timestep_zero"])
@pytest.mark.parametrize("apply_to", ["both", "cond"])
def test_flux2_reference_image_with_taca_matches_reference(method, apply_to):
    tiny = build("flux2", guidance_embed=method is None)
    base = patcher(tiny)
    ref = _reference_latent(tiny, 4, 6)  # FLUX.2 patches are 1 latent cell: 24 reference tokens
    extra = {"reference_latents": [ref]}
    if method:
        extra["reference_latents_method"] = method
    pos, neg = _with(make_cond(tiny, seed=1), **extra), _with(make_cond(tiny, seed=2), **extra)
    model = run_node(JointAttentionTACA, base, 1.8, 0.5, apply_to, "all", "all")[0]
    config = ReferenceConfig(gamma=1.8, gamma_threshold=0.5, gamma_rows=apply_to,
                             gamma_double=range(tiny.n_double), gamma_single=range(tiny.n_single))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    kw = dict(KW, steps=2)
    got, want, plain = (sample(m, pos, neg, **kw) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-6
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **kw)
    assert (got - without_ref).abs().max() > 1e-4


def _uncond_first_step(model, pos, neg, **kw):
    seen = []

    def post_cfg(args):
        seen.append(args["uncond_denoised"].clone())
        return args["denoised"]

    m = model.clone()
    m.set_model_sampler_post_cfg_function(post_cfg)
    out = sample(m, pos, neg, **kw)
    return seen[0], out


@pytest.mark.parametrize("method", [None, "index_timestep_zero"])
def test_flux2_reference_image_with_regions(method):
    """FLUX.2 regions beside a reference image: the negative half runs exactly as without the pack (reference tokens
    included), the result is finite and depends on the reference."""
    tiny = build("flux2", guidance_embed=method is None)
    base = patcher(tiny)
    ref = _reference_latent(tiny, 4, 6, seed=3)
    extra = {"reference_latents": [ref]}
    if method:
        extra["reference_latents_method"] = method
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                                                "background")[0]
    pos, neg = _with(make_cond(tiny, seed=1), **extra), _with(make_cond(tiny, seed=2), **extra)
    kw = dict(KW, steps=2)
    uncond, got = _uncond_first_step(model, pos, neg, **kw)
    plain_uncond, plain = _uncond_first_step(base, pos, neg, **kw)
    torch.testing.assert_close(uncond, plain_uncond, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(got).all() and (got - plain).abs().max() > 1e-4
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **kw)
    assert (got - without_ref).abs().max() > 1e-4
