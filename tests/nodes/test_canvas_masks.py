"""Region Canvas with other mask tools: each region is a MASK of the `masks` output, and a MASK batch on
`import_masks` is handed to the editor (saved as pictures, named in the node's UI output) to import as regions."""
import os

import pytest
import torch

from ja_nodes import run_node
from ja_tiny import tiny_clip
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas

W, H = 128, 64


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def _value(hidden=(), feather=()):
    mw, mh = canvas_state.mask_dims(W, H)
    shapes = []
    for left in (0, 5, 10):
        m = torch.zeros(mh, mw)
        m[1:6, left:left + 4] = 1
        shapes.append(m)
    value = canvas_state.encode_value(W, H, [{"prompt": f"thing {i}", "mask": m, "feather": 32 if i in feather else 0}
                                             for i, m in enumerate(shapes)])
    if hidden:
        import json

        raw = json.loads(value)
        for i in hidden:
            raw["regions"][i]["hidden"] = True
        value = json.dumps(raw)
    return value


def _saved(ref):
    import folder_paths
    import numpy as np
    from PIL import Image

    assert ref["type"] == "temp" and ref["subfolder"] == "" and os.path.basename(ref["filename"]) == ref["filename"]
    with Image.open(os.path.join(folder_paths.get_temp_directory(), ref["filename"])) as img:
        return torch.from_numpy(np.array(img.convert("L"))).float() / 255


def test_the_masks_output_is_one_mask_per_visible_region_in_list_order(clip):
    value = _value(hidden=(1,), feather=(2,))
    _, _, regions = canvas_state.parse(value)
    masks = run_node(JointAttentionRegionCanvas, clip, W, H, value)[1]
    assert masks.shape == (2, H, W)  # regions 1 and 3: the hidden one is left out
    assert torch.equal(masks[0], canvas_state.full_mask(regions[0], W, H))
    assert torch.equal(masks[1], canvas_state.full_mask(regions[2], W, H))
    assert ((masks[1] > 0) & (masks[1] < 1)).any()  # feathered: soft
    empty = run_node(JointAttentionRegionCanvas, clip, W, H, canvas_state.encode_value(W, H, []))[1]
    assert empty.shape == (1, H, W) and not empty.any()  # nothing drawn: one empty mask, never an empty batch


def test_masks_on_import_masks_are_offered_to_the_editor(clip):
    incoming = torch.zeros(3, 96, 96)
    incoming[0, :48] = 1
    incoming[1, :, :24] = 0.8
    incoming[2] = torch.linspace(0, 1, 96)[None]
    out = run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=incoming)
    offer = out.ui["ja_import_masks"][0]
    assert offer["total"] == 3 and len(offer["images"]) == 3
    for k, ref in enumerate(offer["images"]):
        assert (_saved(ref) - incoming[k]).abs().max() <= 1 / 255 + 1e-6, k  # at the mask's own size
    # The drawing is not changed by the masks: the editor imports them when the user asks.
    assert out[1].shape == (3, H, W)
    again = run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=incoming.clone()).ui["ja_import_masks"][0]
    assert again["batch"] == offer["batch"]  # the same masks: the same batch (an imported batch is not offered again)
    other = incoming.clone()
    other[0, 0, 0] = 0.5
    assert run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=other).ui["ja_import_masks"][0]["batch"] != offer["batch"]
    single = run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=incoming[0]).ui["ja_import_masks"][0]
    assert single["total"] == 1  # a single [H, W] mask is a batch of one
    assert run_node(JointAttentionRegionCanvas, clip, W, H, _value()).ui in (None, {})  # nothing connected, nothing offered


def test_import_masks_limits_and_bad_input(clip):
    many = torch.rand(canvas_state.MAX_REGIONS + 8, 16, 16)
    offer = run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=many).ui["ja_import_masks"][0]
    assert offer["total"] == canvas_state.MAX_REGIONS + 8 and len(offer["images"]) == canvas_state.MAX_REGIONS
    huge = torch.zeros(1, 3000, 1500)
    assert _saved(run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=huge)
                  .ui["ja_import_masks"][0]["images"][0]).shape == (2048, 1024)  # long side at most 2048
    odd = torch.full((1, 8, 8), float("nan"))
    assert _saved(run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=odd)
                  .ui["ja_import_masks"][0]["images"][0]).max() == 0  # NaN reads as outside
    for bad in (torch.zeros(1, 1, 8, 8), torch.zeros(8), torch.zeros(1, 0, 8), "mask"):
        with pytest.raises(ValueError, match=r"^\[Region Canvas\] input 'import_masks': .*MASK"):
            run_node(JointAttentionRegionCanvas, clip, W, H, _value(), import_masks=bad)


def test_width_and_height_are_outputs_a_latent_can_be_linked_to(clip):
    """Issue 32, item 5: the canvas size as INT outputs, so the latent's size follows the canvas."""
    schema = JointAttentionRegionCanvas.define_schema()
    assert [(o.display_name, o.get_io_type()) for o in schema.outputs[3:]] == [("width", "INT"), ("height", "INT")]
    out = run_node(JointAttentionRegionCanvas, clip, W, H, _value())
    assert out[3:5] == (W, H)


def test_a_regions_opacity_is_read_and_changes_only_how_the_editor_shows_it(clip):
    """Issue 32, item 7 (per-region opacity): an optional `opacity` field, 1 (the default) never written, so drawings
    saved before it read the same; the masks and regions do not depend on it."""
    import json

    plain = _value()
    assert "opacity" not in plain  # the default is not saved
    raw = json.loads(plain)
    raw["regions"][1]["opacity"] = 0.3
    faded = json.dumps(raw)
    assert [r.opacity for r in canvas_state.parse(faded)[2]] == [1.0, 0.3, 1.0]
    assert [r.opacity for r in canvas_state.parse(plain)[2]] == [1.0, 1.0, 1.0]
    assert torch.equal(run_node(JointAttentionRegionCanvas, clip, W, H, faded)[1],
                       run_node(JointAttentionRegionCanvas, clip, W, H, plain)[1])
    # encode_value writes it only where it is not 1, as the editor does.
    mw, mh = canvas_state.mask_dims(W, H)
    again = canvas_state.encode_value(W, H, [{"prompt": "a", "mask": torch.ones(mh, mw), "opacity": 0.3},
                                             {"prompt": "b", "mask": torch.ones(mh, mw), "opacity": 1.0}])
    assert [r.get("opacity") for r in json.loads(again)["regions"]] == [0.3, None]
    for bad in (1.5, -0.1, "half", True, None):
        raw["regions"][1]["opacity"] = bad
        with pytest.raises(ValueError, match=r"region 2: opacity must be a number between 0 and 1"):
            canvas_state.parse(json.dumps(raw))
