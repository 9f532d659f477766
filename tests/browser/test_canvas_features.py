"""Issue 20, new features driven with the mouse and keyboard: per-region feather carried into the masks the backend
outputs, and the full-window editor with zoom and pan sharing the node's state and undo history."""
import io
import json
import urllib.parse
import urllib.request

import pytest
import torch

from ja_browser import MODES, add_canvas, canvas_value, drag, node_rendering, wait_for_history

pytestmark = pytest.mark.browser


def cells(value):
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [int((r.mask > 0).sum().item()) for r in regions]


@MODES
def test_feather_typed_in_a_region_row_softens_the_mask_the_backend_outputs(comfy_server, vue):
    from PIL import Image

    from joint_attention_pack.nodes import canvas_state

    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 60]; app.graph.add(clip);
            const toImage = LiteGraph.createNode('MaskToImage'); toImage.pos = [700, 200]; app.graph.add(toImage);
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [1000, 60]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0); canvasNode.connect(1, toImage, 0); toImage.connect(0, preview, 0);
            window.jaPreviewId = preview.id; }}""")
        drag(page, page.locator(".ja-rc-canvas").first, 0.0, 0.0, 0.5, 1.0)  # the left half
        page.locator(".ja-rc-prompt").first.fill(f"a meadow ({'vue' if vue else 'classic'})")
        feather = page.locator(".ja-rc-feather").first
        feather.click()
        page.keyboard.press("Control+a")
        page.keyboard.type("32")
        page.keyboard.press("Tab")
        value = canvas_value(page, node_id)
        assert json.loads(value)["regions"][0]["feather"] == 32
        before = set(comfy_server.get("/history") or {})
        page.evaluate("app.queuePrompt(0)")
        entry = wait_for_history(comfy_server, before)
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert json.loads(entry["prompt"][2][str(node_id)]["inputs"]["regions"])["regions"][0]["feather"] == 32
        ref = entry["outputs"][str(page.evaluate("window.jaPreviewId"))]["images"][0]
        query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]})
        with urllib.request.urlopen(f"{comfy_server.base}/view?{query}", timeout=30) as resp:
            got = torch.tensor(list(Image.open(io.BytesIO(resp.read())).convert("L").getdata()), dtype=torch.float32).reshape(128, 128)
        row = got[64]
        assert row[:24].min() >= 250 and row[100:].max() <= 5, row  # solid inside, empty far outside
        ramp = row[40:90]
        assert ((ramp > 10) & (ramp < 245)).sum() >= 16, row  # a soft edge, not a step
        assert bool((ramp[1:] <= ramp[:-1] + 1).all()), row  # fading outward
        _, _, regions = canvas_state.parse(value)
        want = canvas_state.full_mask(regions[0], 128, 128) * 255
        assert (got - want).abs().max() <= 1.5  # what the node computes from the saved value


@MODES
def test_full_window_editor_zooms_pans_and_shares_the_drawing_and_undo(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.1, 0.1, 0.3, 0.3)
        page.locator(".ja-rc-add").first.click()
        first = canvas_value(page, node_id)
        box = canvas.bounding_box()
        page.mouse.dblclick(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7)  # the rect tool: no paint
        overlay = page.locator(".ja-rc-overlay")
        overlay.wait_for(state="visible", timeout=5000)
        assert overlay.locator(".ja-rc-canvas").count() == 1
        page.wait_for_timeout(300)
        big = canvas.bounding_box()
        assert big["width"] > 1000 and big["height"] > 500
        assert canvas_value(page, node_id) == first
        # The image is fitted into the window (height-bound here): a 240 px screen drag covers some cells ...
        assert not page.locator(".ja-rc-snap-box").first.is_checked()  # no snapping (the default): cells follow the pointer
        cx, cy = big["x"] + big["width"] / 2, big["y"] + big["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 240, cy + 240, steps=4)
        page.mouse.up()
        at_fit = cells(canvas_value(page, node_id))[1]
        page.keyboard.press("Control+z")
        assert cells(canvas_value(page, node_id))[1] == 0
        # ... zoomed in around the pointer, the same drag covers far fewer image cells, starting at the same point.
        page.mouse.move(cx, cy)
        for _ in range(12):  # at most 1.15x per wheel event (issue 32 item 8): about 5x in all
            page.mouse.wheel(0, -100)
            page.wait_for_timeout(30)
        page.wait_for_timeout(200)
        page.mouse.down()
        page.mouse.move(cx + 240, cy + 240, steps=4)
        page.mouse.up()
        zoomed = cells(canvas_value(page, node_id))[1]
        assert 0 < zoomed * 4 <= at_fit, (zoomed, at_fit)
        # Middle-button drag pans and paints nothing.
        value = canvas_value(page, node_id)
        page.mouse.move(cx, cy)
        page.mouse.down(button="middle")
        page.mouse.move(cx - 300, cy, steps=5)
        page.mouse.up(button="middle")
        assert canvas_value(page, node_id) == value
        # Space + drag pans too; "0" fits again; Esc goes back to the node with the same editor and history.
        page.keyboard.press("0")
        page.keyboard.press("Escape")
        assert overlay.count() == 0
        assert page.evaluate(f"app.graph.getNodeById({node_id}).jaRegionEditor.root.isConnected")
        small = page.locator(".ja-rc-canvas").first.bounding_box()
        assert small["width"] < 700
        page.keyboard.press("Control+z")  # the focus came back with the editor: undo the zoomed rectangle
        assert cells(canvas_value(page, node_id)) == [cells(first)[0], 0]
        page.keyboard.press("Control+y")
        assert cells(canvas_value(page, node_id))[1] == zoomed
        page.keyboard.press("f")  # F opens it again
        overlay.wait_for(state="visible", timeout=5000)
        page.locator(".ja-rc-overlay button", has_text="Close").click()
        assert overlay.count() == 0


@MODES
def test_a_mask_image_is_imported_as_a_new_region(comfy_server, vue, tmp_path):
    """Import (toolbar): a mask image (e.g. a MASK saved from another node) becomes a region, white = inside."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(mask).rectangle([0, 0, 127, 63], fill=255)  # the top-left half of the top quarter
    path = tmp_path / "concept_mask.png"
    mask.save(path)
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        drag(page, page.locator(".ja-rc-canvas").first, 0.5, 0.5, 0.9, 0.9)
        with page.expect_file_chooser() as chooser:
            page.locator(".ja-rc-toolbar button", has_text="Import").first.click()
        chooser.value.set_files(str(path))
        page.wait_for_function(f"JSON.parse(app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'regions').value).regions.length === 2")
        from joint_attention_pack.nodes import canvas_state

        _, _, regions = canvas_state.parse(canvas_value(page, node_id))
        want = torch.zeros(16, 16)
        want[:4, :8] = 1  # 64 x 32 image pixels of the 128 px canvas, in 8 px cells
        assert torch.equal(regions[1].mask, want)
        assert "Imported concept_mask.png as Region 2" in page.locator(".ja-rc-notice").first.inner_text()
        assert page.evaluate("[...document.querySelectorAll('.ja-rc-region')].map(r => r.classList.contains('selected'))") == [False, True]
