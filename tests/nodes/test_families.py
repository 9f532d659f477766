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

    from joint_attention_pack.families import FAMILIES

    named = {cls for f in FAMILIES for cls in f.classes}
    found = []
    for name, cls in vars(comfy.model_base).items():
        if not isinstance(cls, type) or name in named:
            continue
        parents = [p.__name__ for p in cls.__mro__[1:] if p.__name__ in named and getattr(comfy.model_base, p.__name__, None) is p]
        if parents:
            found.append((name, parents[0]))
    return sorted(found)


def test_no_model_class_is_accepted_by_inheritance():
    """A model class built on a supported one (LongCat-Image on FLUX, in newer hosts) is not taken as its parent: every
    node refuses it by name, naming the class it is built on, until a family module names it."""
    import comfy.model_base

    subclasses = _subclasses_of_supported_classes()
    if not subclasses:
        pytest.skip("this host has no model class built on a supported one")
    by_family = {"Flux": "flux", "Flux2": "flux2", "Chroma": "chroma", "SD3": "sd3", "QwenImage": "qwen_image",
                 "Lumina2": "z_image", "ChromaRadiance": "chroma", "AuraFlow": "aura_flow"}
    for name, parent in subclasses:
        tiny = build(by_family[parent])
        model = tiny.patcher.clone()
        original = model.model.__class__
        model.model.__class__ = getattr(comfy.model_base, name)  # the parent's weights, seen as the subclass
        try:
            with pytest.raises(ValueError, match=rf"\[TACA \(text attention temperature\)\] input 'model': '{name}' is "
                                                 rf"a model built on .*\({parent}\), which this pack has not been proven on"):
                run_node(JointAttentionTACA, model, 1.2, 0.97, "both", "all", "none")
        finally:
            model.model.__class__ = original


def test_every_family_of_the_pack_is_in_the_test_family_list():
    """The family scenarios run over one list (tests/support/ja_families.py): a family the pack accepts must be in it,
    and an entry must name a family the pack has, with its tiny model detected as that family."""
    import ja_families
    import ja_tiny
    from joint_attention_pack.families import FAMILIES, model_family

    assert {entry.family for entry in ja_families.FAMILIES} == {family.name for family in FAMILIES}
    for entry in ja_families.FAMILIES:
        if ja_tiny.host_lacks(entry.name):  # a family of newer hosts (Lens): its entry runs there
            continue
        assert model_family(entry.build().patcher).name == entry.family, entry.name
