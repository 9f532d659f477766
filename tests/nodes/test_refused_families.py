"""Issue 30: joint-attention image families the pack refuses by name (a family module with `refused`), each with its
reason. A node given a model of one of those classes stops with the class, the models and the reason, before
anything is patched. The model is a tiny supported model seen as the refused class (only the class decides which
family a model belongs to); a host without the class skips with the reason."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, sample
from joint_attention_pack.families import FAMILIES, REFUSED
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

CASES = [pytest.param(family, name, id=name) for family in REFUSED for name in family.classes]


def test_refused_entries_name_classes_no_supported_family_names():
    supported = {cls for f in FAMILIES for cls in f.classes}
    for family in REFUSED:
        assert family.classes and family.models and family.refused, family
        assert not set(family.classes) & supported, family
        assert not family.refused.endswith(".") and family.refused[0].islower()  # one clause, read inside the error


@pytest.mark.parametrize("family,name", CASES)
def test_a_refused_class_stops_every_node_with_its_reason(family, name):
    import comfy.model_base

    host_class = getattr(comfy.model_base, name, None)
    if host_class is None:
        pytest.skip(f"this host has no {name}")
    tiny = build("flux")
    model = tiny.patcher.clone()
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    calls = [
        ("Apply Regional Attention", lambda m: run_node(JointAttentionRegionalApply, m, regions, 0.2, 0.0, 0.4, "all",
                                                        "none", "restricted", "background")),
        ("TACA \\(text attention temperature\\)", lambda m: run_node(JointAttentionTACA, m, 1.2, 0.97, "both", "all",
                                                                     "none")),
        ("Text Scale per Block", lambda m: run_node(JointAttentionTextScale, m, "0", 1.5, "scale", 0.0, 1.0)),
    ]
    original = model.model.__class__
    model.model.__class__ = host_class
    try:
        for node, call in calls:
            with pytest.raises(ValueError) as info:
                call(model)
            message = str(info.value)
            assert message.startswith(f"[{node.replace(chr(92), '')}] input 'model': '{name}' ({family.models}) is not "
                                      "supported by this pack: "), message
            assert family.refused in message
    finally:
        model.model.__class__ = original
    assert not model.model_options.get("transformer_options", {}).get("optimized_attention_override")


@pytest.mark.parametrize("family,name", CASES)
def test_the_refused_model_samples_untouched(family, name):
    """Refusing leaves the input model as it was: it samples as before."""
    import comfy.model_base

    if getattr(comfy.model_base, name, None) is None:
        pytest.skip(f"this host has no {name}")
    tiny = build("flux")
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    before = sample(tiny.patcher, pos, neg, steps=1, cfg=1.0, width=64, height=64)
    original = tiny.patcher.model.__class__
    tiny.patcher.model.__class__ = getattr(comfy.model_base, name)
    try:
        with pytest.raises(ValueError, match=name):
            run_node(JointAttentionTACA, tiny.patcher, 1.2, 0.97, "both", "all", "none")
    finally:
        tiny.patcher.model.__class__ = original
    assert torch.equal(sample(tiny.patcher, pos, neg, steps=1, cfg=1.0, width=64, height=64), before)
