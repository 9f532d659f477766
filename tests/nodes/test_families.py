"""Issue 17: a model family the pack does not support is refused by every node that takes a model, with an error
naming the node, the input and the families it accepts, before anything is patched. PixArt-Sigma (a DiT whose image
attends to the text through cross-attention, built from the host's own classes, which the pack does not cover) is
the case at hand."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, sample, tiny_pixart_sigma
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


@pytest.fixture(scope="module")
def pixart():
    return tiny_pixart_sigma()


def test_an_unknown_model_is_refused_by_name_and_left_unpatched(pixart):
    qwen = build("qwen_image")
    regions, _ = regions_for(qwen, cell_masks(False)[0], [1.0])
    calls = [
        ("Apply Regional Attention", lambda m: run_node(JointAttentionRegionalApply, m, regions, 0.2, 0.0, 0.4, "all",
                                                        "none", "restricted", "background")),
        ("TACA \\(text attention temperature\\)", lambda m: run_node(JointAttentionTACA, m, 1.2, 0.97, "both", "all", "none")),
        ("Text Scale per Block", lambda m: run_node(JointAttentionTextScale, m, "0", 1.5, "scale", 0.0, 1.0)),
        ("Attention Capture", lambda m: run_node(JointAttentionCapture, m, "all", "none", 0.0, 1.0)),
    ]
    pos, neg = make_cond(pixart, seed=1), make_cond(pixart, seed=2)
    before = sample(pixart.patcher, pos, neg, steps=1, cfg=2.0, width=512, height=512)  # PixArt needs 384 px and up
    for node, call in calls:
        with pytest.raises(ValueError, match=rf"\[{node}\] input 'model': expected a joint-attention model .*Z-Image.*got "
                                             r"'PixArt'"):
            call(pixart.patcher)
    assert "transformer_options" not in pixart.patcher.model_options or not \
        pixart.patcher.model_options["transformer_options"].get("optimized_attention_override")
    assert torch.equal(sample(pixart.patcher, pos, neg, steps=1, cfg=2.0, width=512, height=512), before)


def _subclasses_of_supported_classes():
    """Every `comfy.model_base` class of this host built on a class a family names, that no family names itself."""
    import comfy.model_base

    from joint_attention_pack.families import FAMILIES, REFUSED

    named = {cls for f in FAMILIES + REFUSED for cls in f.classes}
    found = []
    for name, cls in vars(comfy.model_base).items():
        if not isinstance(cls, type) or name in named:
            continue
        supported = {c for f in FAMILIES for c in f.classes}
        parents = [p.__name__ for p in cls.__mro__[1:]
                   if p.__name__ in supported and getattr(comfy.model_base, p.__name__, None) is p]
        if parents:
            found.append((name, parents[0]))
    return sorted(found)


def test_no_model_class_is_accepted_by_inheritance():
    """A model class built on a supported one is not taken as its parent: every node refuses it by name, naming the
    class it is built on, until a family module names it. Every such class of this host (each family entry names the
    ones ComfyUI 0.33 has, so none may be left), and one made here on FLUX's class, as a newer host may add."""
    import comfy.model_base

    class NextFluxModel(comfy.model_base.Flux):  # a model a newer host might build on FLUX
        pass

    leftover = _subclasses_of_supported_classes()
    cases = [(getattr(comfy.model_base, name), parent) for name, parent in leftover] + [(NextFluxModel, "Flux")]
    by_family = {"Flux": "flux", "Flux2": "flux2", "Chroma": "chroma", "SD3": "sd3", "QwenImage": "qwen_image",
                 "Lumina2": "z_image", "ChromaRadiance": "chroma", "HunyuanImage21": "hunyuan_image",
                 "Omnigen2": "omnigen2", "AuraFlow": "aura_flow"}
    for cls, parent in cases:
        tiny = build(by_family[parent])
        model = tiny.patcher.clone()
        original = model.model.__class__
        model.model.__class__ = cls  # the parent's weights, seen as the subclass
        try:
            with pytest.raises(ValueError, match=rf"\[TACA \(text attention temperature\)\] input 'model': "
                                                 rf"'{cls.__name__}' is a model built on .*\({parent}\), which this "
                                                 r"pack has not been proven on"):
                run_node(JointAttentionTACA, model, 1.2, 0.97, "both", "all", "none")
        finally:
            model.model.__class__ = original


def test_refused_families_stop_every_node_with_their_reason():
    """A refused family's classes (each named in its module with the reason) stop a node with that reason: a tiny model
    seen as each refused class this host has."""
    import comfy.model_base

    from joint_attention_pack.families import REFUSED

    present = [(f, cls) for f in REFUSED for cls in f.classes if hasattr(comfy.model_base, cls)]
    if not present:
        pytest.skip("this host has none of the refused families' model classes")
    model = build("flux").patcher.clone()
    original = model.model.__class__
    for family, name in present:
        model.model.__class__ = getattr(comfy.model_base, name)
        try:
            with pytest.raises(ValueError) as caught:
                run_node(JointAttentionTACA, model, 1.2, 0.97, "both", "all", "none")
        finally:
            model.model.__class__ = original
        message = str(caught.value)
        assert message.startswith("[TACA (text attention temperature)] input 'model': ") and family.refused in message
        assert repr(name) in message and family.models in message


def test_every_family_of_the_pack_is_in_the_test_family_list():
    """The family scenarios run over one list (tests/support/ja_families.py): a family the pack accepts must be in it,
    and an entry must name a family the pack has, with its tiny model detected as that family."""
    import ja_families
    from joint_attention_pack.families import FAMILIES, model_family

    assert {entry.family for entry in ja_families.FAMILIES} == {family.name for family in FAMILIES}
    for entry in ja_families.FAMILIES:
        if entry.missing_from_host():
            continue
        assert model_family(entry.build().patcher).name == entry.family, entry.name


def test_longcat_image_refuses_region_texts_of_another_length_than_the_prompt():
    """LongCat-Image places the image after the text by the prompt's length: a region text of another length could
    not read as the prompt alone, so the run stops naming the input (its own encoder pads every prompt alike)."""
    import comfy.model_base

    if not hasattr(comfy.model_base, "LongCatImage"):
        pytest.skip("this host has no LongCatImage")
    from joint_attention_pack.nodes.regional import JointAttentionRegion

    tiny = build("longcat_image")
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    short = [[torch.randn(1, 5, tiny.context_dim, generator=torch.Generator().manual_seed(3)), dict(pos[0][1])]]
    regions = run_node(JointAttentionRegion, short, torch.ones(1, 64, 96), 1.0)[0]
    model = run_node(JointAttentionRegionalApply, tiny.patcher, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'regions': LongCat-Image places the image "
                                         r"after the text by the prompt's length \(12 tokens\).*\[5\] tokens"):
        sample(model, pos, neg, steps=1, cfg=1.0, width=96, height=64)
