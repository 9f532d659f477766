"""Issue 32 items 1 and 2: no key typed in the editor reaches the graph, and an exported region loads as its mask.

1. With the node selected and the full-window editor open, a click on a region's row left the focus on the page:
   Del deleted the whole node (pinned host), Ctrl+Z ran the graph's undo and closed the editor, the editor's own keys
   stopped working.
2. The exported PNG was opaque white-on-black: Load Image (as Mask) reads its default channel "alpha" as
   mask = 1 - alpha, so the region loaded as an empty mask.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch

from ja_browser import MODES, add_canvas, canvas_value, node_rendering, set_canvas_value, wait_for_history
from joint_attention_pack.nodes import canvas_state

pytestmark = pytest.mark.browser
SIZE = 128


def two_regions():
    """Region 1: the left half; region 2: a 4 x 4-cell block at the lower right (cells are 8 px)."""
    mw = SIZE // 8
    left = torch.zeros(mw, mw)
    left[:, : mw // 2] = 1
    block = torch.zeros(mw, mw)
    block[10:14, 10:14] = 1
    value = json.loads(canvas_state.encode_value(SIZE, SIZE, [
        {"prompt": "a red house", "mask": left.flatten()}, {"prompt": "a blue lake", "mask": block.flatten()}]))
    value["regions"][0]["color"], value["regions"][1]["color"] = "#e6194b", "#3cb44b"
    return json.dumps(value)


def covered(value):
    _, _, regions = canvas_state.parse(value)
    return [int((r.mask > 0).sum().item()) for r in regions]


@MODES
def test_keys_after_a_click_on_a_region_row_stay_in_the_full_window_editor(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        set_canvas_value(page, node_id, two_regions())
        page.evaluate(f"() => app.canvas.selectNode(app.graph.getNodeById({node_id}))")
        page.locator(".ja-rc-tool[data-tool=brush]").first.click()
        page.locator(".ja-rc button[title^='Full-window']").first.click()
        page.wait_for_timeout(300)
        assert page.locator(".ja-rc-overlay").count() == 1
        page.locator(".ja-rc-overlay .ja-rc-name").nth(1).click()  # "Region 2" in the list
        page.keyboard.press("Delete")
        page.wait_for_timeout(600)
        assert page.evaluate(f"!!app.graph.getNodeById({node_id})"), "Del deleted the node"
        assert page.locator(".ja-rc-overlay").count() == 1, "the editor closed"
        assert covered(canvas_value(page, node_id)) == [SIZE * SIZE // 128, 0]  # region 2 cleared, region 1 kept
        page.keyboard.press("Control+z")  # the editor's undo, not the graph's
        page.wait_for_timeout(800)
        assert page.locator(".ja-rc-overlay").count() == 1, "Ctrl+Z closed the editor"
        assert covered(canvas_value(page, node_id)) == [SIZE * SIZE // 128, 16]
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        for key, tool in (("r", "rect"), ("e", "eraser"), ("v", "select"), ("b", "brush")):
            page.locator(".ja-rc-overlay .ja-rc-name").nth(0).click()
            page.keyboard.press(key)
            assert page.evaluate(f"{editor}.tool") == tool, key
        brush = page.evaluate(f"{editor}.brush")
        page.locator(".ja-rc-overlay .ja-rc-status").first.click()
        page.keyboard.press("]")
        assert page.evaluate(f"{editor}.brush") == brush + 8
        snap = page.evaluate(f"{editor}.snapToGrid")
        page.locator(".ja-rc-overlay .ja-rc-tool[data-tool=rect]").first.click()  # a toolbar button keeps the keys too
        page.keyboard.press("g")
        assert page.evaluate(f"{editor}.snapToGrid") is (not snap)
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
        assert page.locator(".ja-rc-overlay").count() == 0
        assert page.evaluate(f"!!app.graph.getNodeById({node_id})")


def load_as_mask_prompt(file_name):
    """What the exported file gives through core's loaders and mask nodes, each as a picture to compare."""
    return {
        "mask_alpha": {"class_type": "LoadImageMask", "inputs": {"image": file_name, "channel": "alpha"}},
        "mask_red": {"class_type": "LoadImageMask", "inputs": {"image": file_name, "channel": "red"}},
        "image": {"class_type": "LoadImage", "inputs": {"image": file_name}},
        "image_red": {"class_type": "ImageToMask", "inputs": {"image": ["image", 0], "channel": "red"}},
        **{f"save_{k}": {"class_type": "SaveImage", "inputs": {"filename_prefix": f"ja_export_{k}",
                                                               "images": [f"pic_{k}", 0]}}
           for k in ("alpha", "red", "load_image", "image_red")},
        "pic_alpha": {"class_type": "MaskToImage", "inputs": {"mask": ["mask_alpha", 0]}},
        "pic_red": {"class_type": "MaskToImage", "inputs": {"mask": ["mask_red", 0]}},
        "pic_load_image": {"class_type": "MaskToImage", "inputs": {"mask": ["image", 1]}},
        "pic_image_red": {"class_type": "MaskToImage", "inputs": {"mask": ["image_red", 0]}},
    }


@MODES
def test_an_exported_region_loads_as_its_mask_with_load_image_defaults_and_core_mask_nodes(comfy_server, vue):
    from PIL import Image

    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        value = two_regions()
        set_canvas_value(page, node_id, value)
        with page.expect_download() as download:
            page.locator(".ja-rc-region").nth(1).locator("button", has_text="⤓").click()
        name = f"ja_exported_{'vue' if vue else 'classic'}.png"
        target = Path(comfy_server._tmp.name) / "input" / name
        shutil.copyfile(download.value.path(), target)
        # The editor reads its own export back as the same region.
        page.locator(".ja-rc-import-file").first.set_input_files(str(target))
        page.wait_for_timeout(800)
        imported = json.loads(canvas_value(page, node_id))["regions"]
        assert len(imported) == 3 and imported[2]["mask"] == json.loads(value)["regions"][1]["mask"]

    _, _, regions = canvas_state.parse(value)
    want = canvas_state.full_mask(regions[1], SIZE, SIZE)
    before = set(comfy_server.get("/history") or {})
    comfy_server.queue(load_as_mask_prompt(name))
    entry = wait_for_history(comfy_server, before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    for key in ("alpha", "red", "load_image", "image_red"):
        ref = entry["outputs"][f"save_{key}"]["images"][0]
        picture = Image.open(comfy_server.output_dir / ref.get("subfolder", "") / ref["filename"]).convert("L")
        got = torch.tensor(list(picture.getdata()), dtype=torch.float32).reshape(SIZE, SIZE) / 255
        assert torch.equal(got, want.float()), key
    # The file itself: white and transparent where the region is, black and opaque elsewhere.
    grey, alpha = (torch.tensor(list(band.getdata()), dtype=torch.float32).reshape(SIZE, SIZE) / 255
                   for band in Image.open(target).convert("LA").split())  # RGBA in the file
    assert torch.equal(grey, want.float()) and torch.equal(alpha, 1 - want.float())
