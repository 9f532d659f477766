"""Issue 14: paths that changed between the pinned ComfyUI 0.3.75 and current ComfyUI (0.29), run on both hosts.

- A patched model cloned many times: 0.3.75 deep-copies `model_options` on clone, 0.29 copies only its dicts and
  lists (`comfy.utils.deepcopy_list_dict`) and shares every other object. Either way the clones share the one
  dispatcher, sample exactly like the original, and a node applied to a clone leaves the original alone.
- Reference images (Kontext, FLUX.2 with 0.29's `index_timestep_zero`, Qwen-Image-Edit) with regions and TACA:
  test_reference_images, over every family of the test list that takes them.

Nothing here branches on the host's version: every case runs, and passes, on both hosts.
"""
import torch

from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.integration.options import find_dispatcher
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


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
