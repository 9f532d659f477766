"""Issue 17: Qwen-Image and Qwen-Image-Edit, on the tiny model built from the host's own classes.

The family-wide tests (regions in every mode, TACA, text scale, maps, ConceptAttention, the full-image identity)
run Qwen-Image through their `family` parameters (test_regional, test_guidance, test_maps, test_concepts,
test_identities). Here: what only Qwen-Image has.
- Text rope positions: the host numbers text tokens from `txt_start` along the whole context, so appended region
  texts would read as a continuation of the base prompt. Each region text's rope rows must equal the rows the same
  text gets as the prompt alone; base text and image rows stay the host's own (bit for bit).
- Qwen-Image-Edit's reference image tokens (appended after the image tokens) stay visible to every image query,
  whatever the masks say (as for FLUX Kontext), against the dense reference; with 0.29's `index_timestep_zero`
  too (a host that does not know it treats it as its offset method; the pack must match the reference either way).
- Runs the pack leaves alone are bit-identical to the plain model.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def _with(cond, **extra):
    return [[tokens, {**options, **extra}] for tokens, options in cond]


def _rope_tables(model, pos, neg, **kw):
    """The rope table every double block 0 got, per forward."""
    seen = []
    m = model.clone()
    inner = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {}).get(("double_block", 0))

    def spy(args, extra):
        out = inner(args, {**extra, "original_block": lambda a: (seen.append(a["pe"].clone()), extra["original_block"](a))[1]}) \
            if inner is not None else (seen.append(args["pe"].clone()), extra["original_block"](args))[1]
        return out

    m.set_model_patch_replace(spy, "dit", "double_block", 0)
    sample(m, pos, neg, **kw)
    return seen


def test_region_texts_get_the_rope_rows_of_the_prompt_alone():
    tiny = build("qwen_image")
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])  # region texts of 5 and 6 tokens
    pos, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2, n_tokens=7)
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "none", "restricted",
                     "background")[0]
    kw = dict(KW, steps=1, cfg=1.0)
    patched = _rope_tables(model, pos, neg, **kw)[0]
    plain = _rope_tables(base, pos, neg, **kw)[0]
    n_txt, n_img = 7, (HEIGHT // 16) * (WIDTH // 16)
    lens = [c.shape[0] for c in conds]
    assert patched.shape[2] == n_txt + sum(lens) + n_img
    assert torch.equal(patched[:, :, :n_txt], plain[:, :, :n_txt])  # base text as without regions
    assert torch.equal(patched[:, :, n_txt + sum(lens):], plain[:, :, n_txt:])  # image as without regions
    start = n_txt
    for r, length in enumerate(lens):
        alone = _rope_tables(base, [[conds[r][None], dict(pos[0][1])]], neg, **kw)[0]
        assert torch.equal(patched[:, :, start:start + length], alone[:, :, :length])
        start += length


@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,soft", [
    ("restricted", "background", 0.0, False),
    ("restricted", "everywhere", 0.3, True),
    ("open", "background", 0.2, True),
])
@pytest.mark.parametrize("method", [None, "index_timestep_zero"])
def test_edit_reference_tokens_stay_visible_with_regions(image_attention, global_prompt, base_ratio, soft, method):
    tiny = build("qwen_image")
    base = patcher(tiny)
    ref = torch.randn(1, tiny.latent_channels, 1, 4, 6, generator=torch.Generator().manual_seed(7))  # 2 x 3 tokens
    extra = {"reference_latents": [ref]}
    if method:
        extra["reference_latents_method"] = method
    pixels, token_masks = cell_masks(soft)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    model = run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 0.6, "all", "none", image_attention,
                     global_prompt)[0]
    sampling = base.get_model_object("model_sampling")
    config = ReferenceConfig(
        regions=conds, masks=token_masks, strengths=strengths, base_ratio=base_ratio,
        sigma_start=float(sampling.percent_to_sigma(0.0)), sigma_end=float(sampling.percent_to_sigma(0.6)),
        double=parse_blocks("all", tiny.n_double), image_attention=image_attention, global_prompt=global_prompt)
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = _with(make_cond(tiny, seed=1), **extra), _with(make_cond(tiny, seed=2), **extra)
    got = sample(model, pos, neg, **KW)
    want = sample(reference, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    without_ref = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **KW)
    plain = sample(base, pos, neg, **KW)
    assert (got - without_ref).abs().max() > 1e-3  # the reference tokens are in the sequence and attended
    assert (got - plain).abs().max() > 1e-3  # the regions did something


@pytest.mark.parametrize("method", [None, "index_timestep_zero"])
def test_edit_with_taca_matches_reference(method):
    tiny = build("qwen_image")
    base = patcher(tiny)
    ref = torch.randn(1, tiny.latent_channels, 1, 4, 6, generator=torch.Generator().manual_seed(3))
    extra = {"reference_latents": [ref]}
    if method:
        extra["reference_latents_method"] = method
    pos, neg = _with(make_cond(tiny, seed=1), **extra), _with(make_cond(tiny, seed=2), **extra)
    model = run_node(JointAttentionTACA, base, 1.8, 0.5, "both", "all", "none")[0]
    config = ReferenceConfig(gamma=1.8, gamma_threshold=0.5, gamma_rows="both", gamma_double=range(tiny.n_double))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    got, want, plain = (sample(m, pos, neg, **KW) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-6
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_runs_the_pack_leaves_alone_are_bit_identical():
    tiny = build("qwen_image")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    late = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.999, 1.0, "all", "none", "restricted",
                    "background")[0]
    assert torch.equal(sample(late, pos, neg, **KW), plain)
    off = run_node(JointAttentionTACA, base, 1.5, 2.0, "both", "all", "none")[0]  # threshold above every sigma
    assert torch.equal(sample(off, pos, neg, **KW), plain)
    unit = run_node(JointAttentionTextScale, base, "all", 1.0, "scale", 0.0, 1.0)[0]
    assert torch.equal(sample(unit, pos, neg, **KW), plain)
    # A region the mask drops (all zero) leaves no region at all: the model passes through.
    empty = run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.zeros(1, HEIGHT, WIDTH), 1.0)[0]
    assert run_node(JointAttentionRegionalApply, base, empty, 0.2, 0.0, 1.0, "all", "none", "restricted",
                    "background")[0] is base


def test_block_numbers_beyond_the_model_are_named():
    tiny = build("qwen_image")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    with pytest.raises(ValueError, match=r"input 'double_blocks'.*valid numbers are 0-1"):
        run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.2, 0.0, 0.4, "0-59", "none", "restricted",
                 "background")


def test_a_text_padding_mask_is_refused_with_a_message_where_the_host_passes_it():
    """Newer hosts pass Qwen-Image a text padding mask (`attention_mask`) when the prompt has padded tokens; region
    texts appended after the text would break the model's own mask, so regional prompting refuses such runs by name.
    Hosts that do not pass it (0.3.75) sample as usual."""
    tiny = build("qwen_image")
    base = patcher(tiny)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "none", "restricted",
                     "background")[0]
    mask = torch.tensor([[1] * 6 + [0] * 2])
    pos = _with(make_cond(tiny, seed=1, n_tokens=8), attention_mask=mask)
    neg = make_cond(tiny, seed=2, n_tokens=8)
    passed = "attention_mask" in base.model.extra_conds(cross_attn=pos[0][0], attention_mask=mask)
    kw = dict(KW, steps=1)
    if passed:
        with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model'.*padding mask"):
            sample(model, pos, neg, **kw)
    else:
        assert torch.isfinite(sample(model, pos, neg, **kw)).all()
