"""Issue 17: a model family the pack does not support (yet) is refused by every node that takes a model, with an
error naming the node, the input and the families it accepts, before anything is patched. Z-Image / Lumina-2
(NextDiT, built from the host's own classes) is the case at hand: its caption refiner would have to see each
region text alone, which is the open part of the issue."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, sample, tiny_z_image
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


@pytest.fixture(scope="module")
def z_image():
    return tiny_z_image()


def test_z_image_is_refused_by_name_and_left_unpatched(z_image):
    qwen = build("qwen_image")
    regions, _ = regions_for(qwen, cell_masks(False)[0], [1.0])
    calls = [
        ("Apply Regional Attention", lambda m: run_node(JointAttentionRegionalApply, m, regions, 0.2, 0.0, 0.4, "all",
                                                        "none", "restricted", "background")),
        ("JointAttentionTACA", lambda m: run_node(JointAttentionTACA, m, 1.2, 0.97, "both", "all", "none")),
        ("JointAttentionTextScale", lambda m: run_node(JointAttentionTextScale, m, "0", 1.5, "scale", 0.0, 1.0)),
        ("JointAttentionCapture", lambda m: run_node(JointAttentionCapture, m, "all", "none", 0.0, 1.0)),
    ]
    pos, neg = make_cond(z_image, seed=1), make_cond(z_image, seed=2)
    before = sample(z_image.patcher, pos, neg, steps=1, cfg=2.0, width=96, height=64)
    for node, call in calls:
        with pytest.raises(ValueError, match=rf"\[{node}\] input 'model': expected an MMDiT model .*Qwen-Image.*got "
                                             r"'(Lumina2|ZImage)\w*'"):
            call(z_image.patcher)
    assert "transformer_options" not in z_image.patcher.model_options or not \
        z_image.patcher.model_options["transformer_options"].get("optimized_attention_override")
    assert torch.equal(sample(z_image.patcher, pos, neg, steps=1, cfg=2.0, width=96, height=64), before)
