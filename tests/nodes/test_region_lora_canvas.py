"""Region LoRA on the Region Canvas's REGIONS (issue 31's example wiring).

Identity (no reference): region k of the canvas with a LoRA samples bit for bit what the same regions built with
core's CLIPTextEncode and Region nodes from the canvas's own `masks` output, with the same LoRA on region k, sample.
"""
import pytest
import torch

from ja_compose import core_nodes
from ja_families import BY_NAME
from ja_lora import write_lora
from ja_nodes import run_node
from ja_tiny import make_cond, patcher, sample, tiny_clip
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
from joint_attention_pack.nodes.region_lora import JointAttentionRegionLoRA
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

W, H = 96, 64
PROMPTS = ("a woman in a red coat", "a man in a blue suit", "a white dog")


def _canvas_value():
    """Three regions side by side on the 16 px token grid, the middle one at strength 0.7."""
    mw, mh = canvas_state.mask_dims(W, H)
    shapes = []
    for left in (0, 4, 8):
        m = torch.zeros(mh, mw)
        m[:, left:left + 4] = 1
        shapes.append(m)
    return canvas_state.encode_value(W, H, [{"prompt": p, "mask": m, "strength": 0.7 if i == 1 else 1.0}
                                            for i, (p, m) in enumerate(zip(PROMPTS, shapes))])


def _apply(model, regions):
    return run_node(JointAttentionRegionalApply, model, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                    "background")[0]


@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_canvas_region_with_a_lora_equals_the_region_chain_with_the_same_masks(fmt):
    tiny = BY_NAME["flux"].build()
    base = patcher(tiny)
    clip = tiny_clip()
    name = write_lora(base, f"canvas_region_{fmt}.safetensors", fmt, seed=41, scale=0.5)
    value = _canvas_value()
    canvas_regions, masks = run_node(JointAttentionRegionCanvas, clip, W, H, value)[:2]
    assert len(canvas_regions) == 3 and masks.shape == (3, H, W)

    encode = core_nodes().CLIPTextEncode()
    chain = None
    for prompt, mask, strength in zip(PROMPTS, masks, (1.0, 0.7, 1.0)):
        chain = run_node(JointAttentionRegion, encode.encode(clip, prompt)[0], mask[None], strength, chain)[0]

    kw = dict(seed=0, steps=2, cfg=1.0, width=W, height=H)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)

    def image(regions, index=None):
        if index is not None:
            regions = run_node(JointAttentionRegionLoRA, regions, index, name, 1.0, 0.0, 1.0)[0]
        return sample(_apply(base, regions), pos, neg, **kw)

    from_canvas = image(canvas_regions, 2)
    assert torch.equal(from_canvas, image(chain, 2))
    plain = image(canvas_regions)
    assert torch.equal(plain, image(chain))  # the regions alone agree too
    assert not torch.equal(from_canvas, plain)  # the LoRA acts
    assert not torch.equal(from_canvas, image(canvas_regions, 1))  # on region 2, not region 1


def test_a_clip_with_lora_hooks_gives_every_canvas_region_its_loras():
    """Set CLIP Hooks (apply_to_conds) puts the hooks on every prompt the canvas encodes: each region carries the
    hook's LoRA, and sampling matches the canvas's regions with that LoRA given by Region LoRA nodes."""
    import comfy_extras.nodes_hooks as hooks_nodes

    tiny = BY_NAME["flux"].build()
    base = patcher(tiny)
    name = write_lora(base, "canvas_hooked_clip.safetensors", "comfy", seed=42, scale=0.5)
    hooks = hooks_nodes.CreateHookLoraModelOnly().create_hook_model_only(name, 0.8)[0]
    hooked_clip = hooks_nodes.SetClipHooks().apply_hooks(tiny_clip(), False, True, hooks)[0]
    value = _canvas_value()
    hooked = run_node(JointAttentionRegionCanvas, hooked_clip, W, H, value)[0]
    assert [[lora.strength for lora in r.adapters] for r in hooked] == [[0.8]] * 3
    by_nodes = run_node(JointAttentionRegionCanvas, tiny_clip(), W, H, value)[0]
    for index in (1, 2, 3):
        by_nodes = run_node(JointAttentionRegionLoRA, by_nodes, index, name, 0.8, 0.0, 1.0)[0]
    kw = dict(seed=0, steps=2, cfg=2.5, width=W, height=H)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    assert torch.equal(sample(_apply(base, hooked), pos, neg, **kw), sample(_apply(base, by_nodes), pos, neg, **kw))
