"""Issue 17: a model family the pack does not support is refused by every node that takes a model, with an error
naming the node, the input and the families it accepts, before anything is patched. AuraFlow (an MMDiT built from
the host's own classes, which the pack does not cover) is the case at hand."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, sample, tiny_aura_flow
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


@pytest.fixture(scope="module")
def aura_flow():
    return tiny_aura_flow()


def test_an_unknown_mmdit_is_refused_by_name_and_left_unpatched(aura_flow):
    qwen = build("qwen_image")
    regions, _ = regions_for(qwen, cell_masks(False)[0], [1.0])
    calls = [
        ("Apply Regional Attention", lambda m: run_node(JointAttentionRegionalApply, m, regions, 0.2, 0.0, 0.4, "all",
                                                        "none", "restricted", "background")),
        ("JointAttentionTACA", lambda m: run_node(JointAttentionTACA, m, 1.2, 0.97, "both", "all", "none")),
        ("JointAttentionTextScale", lambda m: run_node(JointAttentionTextScale, m, "0", 1.5, "scale", 0.0, 1.0)),
        ("JointAttentionCapture", lambda m: run_node(JointAttentionCapture, m, "all", "none", 0.0, 1.0)),
    ]
    pos, neg = make_cond(aura_flow, seed=1), make_cond(aura_flow, seed=2)
    before = sample(aura_flow.patcher, pos, neg, steps=1, cfg=2.0, width=96, height=64)
    for node, call in calls:
        with pytest.raises(ValueError, match=rf"\[{node}\] input 'model': expected a joint-attention model .*Z-Image.*got "
                                             r"'AuraFlow'"):
            call(aura_flow.patcher)
    assert "transformer_options" not in aura_flow.patcher.model_options or not \
        aura_flow.patcher.model_options["transformer_options"].get("optimized_attention_override")
    assert torch.equal(sample(aura_flow.patcher, pos, neg, steps=1, cfg=2.0, width=96, height=64), before)


def test_every_family_of_the_pack_is_in_the_test_family_list():
    """The family scenarios run over one list (tests/support/ja_families.py): a family the pack accepts must be in it,
    and an entry must name a family the pack has, with its tiny model detected as that family."""
    import ja_families
    from joint_attention_pack.nodes.families import FAMILIES, model_family

    assert {entry.family for entry in ja_families.FAMILIES} == {family.name for family in FAMILIES}
    for entry in ja_families.FAMILIES:
        assert model_family(entry.build().patcher).name == entry.family, entry.name
