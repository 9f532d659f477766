"""HunyuanImage 2.1: what its family module does beyond the shared family scenarios (ja_families runs those).

The prompt's byT5 glyph tokens (quoted text) are text tokens of the prompt: a full-image region still gives the image
of its own text alone, the regions and TACA match the dense reference with glyph tokens in the prompt, and a region
prompt with glyph tokens of its own is refused by name. The token refiner (`txt_in`) is wrapped on the pack's clone
with the very same layers under the same names. ConceptAttention is refused with its reason. The refiner model:
test_hunyuan_image_refiner.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, with_options
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

GLYPH_WIDTH = 1472  # byT5-small's features per token (the model's byt5_in)


def glyphs(seed: int, n: int = 5) -> torch.Tensor:
    return torch.randn(1, n, GLYPH_WIDTH, generator=torch.Generator().manual_seed(seed))


def with_glyphs(cond, seed: int, n: int = 5):
    """The conditioning as the HunyuanImage text encoder makes it for a prompt with quoted text."""
    return with_options(cond, conditioning_byt5small=glyphs(seed, n))


def test_full_image_region_with_glyph_tokens_in_the_prompt_equals_its_text_alone():
    tiny = build("hunyuan_image")
    base = patcher(tiny)
    base_cond = with_glyphs(make_cond(tiny, seed=1, n_tokens=7), seed=11)
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 8, 8), 1.0)[0]
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    kw = dict(seed=0, steps=3, cfg=1.0, width=96, height=64)
    neg = make_cond(tiny, seed=2)
    got = sample(model, base_cond, neg, **kw)
    alone = prompt_alone(region_cond, base_cond)
    alone[0][1].pop("conditioning_byt5small")  # the region's text alone has no glyph tokens
    want = sample(base, alone, neg, **kw)
    assert (want - sample(base, base_cond, neg, **kw)).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("feature", ["regions", "taca"])
def test_glyph_tokens_in_the_prompt_match_the_reference(feature):
    """Glyph tokens in the prompt (and a negative prompt without them): regions at base_ratio 0.3 and TACA on every
    block match the dense reference, which counts the glyph tokens as prompt text after the Qwen2.5-VL tokens."""
    tiny = build("hunyuan_image")
    base = patcher(tiny)
    pos, neg = with_glyphs(make_cond(tiny, seed=1), seed=11), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
    if feature == "regions":
        pixels, token_masks = cell_masks(True)
        strengths = [1.0, 1.5]
        regions, conds = regions_for(tiny, pixels, strengths)
        model = run_node(JointAttentionRegionalApply, base, regions, 0.3, 0.0, 0.6, "all", "all", "restricted",
                         "everywhere")[0]
        config = regional_config(base, tiny, conds, token_masks, strengths, 0.3, 0.0, 0.6, "all", "all",
                                 "restricted", "everywhere")
    else:
        model = run_node(JointAttentionTACA, base, 2.0, 0.0, "both", "all", "all")[0]
        config = regional_config(base, tiny, [], None, [], gamma=2.0, gamma_threshold=0.0, gamma_rows="both",
                                 gamma_double=range(tiny.n_double), gamma_single=range(tiny.n_single))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    got, want, plain = (sample(m, pos, neg, **kw) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_region_prompt_with_glyph_tokens_is_refused_by_name():
    tiny = build("hunyuan_image")
    regions = run_node(JointAttentionRegion, with_glyphs(make_cond(tiny, seed=5), seed=12), torch.ones(1, 8, 8),
                       1.0)[0]
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'regions': region 1's prompt has quoted text.*"
                                         r"main prompt"):
        run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                 "background")


def test_the_token_refiner_is_wrapped_with_its_own_layers():
    """The object patch on `txt_in` holds the model's own layers under the same names: the weights a LoRA or the
    loader reaches by key are the model's, and the state dict keys do not change."""
    import comfy.utils

    tiny = build("hunyuan_image")
    base = patcher(tiny)
    keys = set(base.model.state_dict())
    weight = base.model.diffusion_model.txt_in.input_embedder.weight
    model = run_node(JointAttentionTACA, base, 2.0, 0.0, "both", "all", "all")[0]
    model.patch_model()
    try:
        wrapped = model.model.diffusion_model.txt_in
        assert type(wrapped).__name__ == "RefinedApart"
        assert comfy.utils.get_attr(model.model, "diffusion_model.txt_in.input_embedder.weight") is weight
        assert set(model.model.state_dict()) == keys
    finally:
        model.unpatch_model()
    assert type(base.model.diffusion_model.txt_in).__name__ == "TokenRefiner"


def test_concepts_are_refused_with_the_reason():
    import ja_tiny
    from joint_attention_pack.integration.concepts import ConceptInputError, concept_stream

    tiny = build("hunyuan_image")
    with pytest.raises(ConceptInputError, match="HunyuanImage 2.1.*token refiner"):
        concept_stream(patcher(tiny), "cat, dog", ja_tiny.tiny_clip(), frozenset({0}), "all")
