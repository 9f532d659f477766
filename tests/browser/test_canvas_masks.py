"""Issue 20: the canvas joins other mask tools. Each region is exported as a MASK (the `masks` output, and a PNG from
its row), and masks that reach the `import_masks` input are offered as new regions after a run.

Each test runs with classic and Vue node rendering, drives the editor with the mouse and checks what the backend
outputs or receives.
"""
import io
import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

from ja_browser import MODES, add_canvas, canvas_value, drag, node_rendering, wait_for_history
from ja_host import ROOT

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"


def grey(data: bytes) -> torch.Tensor:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("L")
    return torch.tensor(list(img.getdata()), dtype=torch.float32).reshape(img.height, img.width)


def view(server, ref) -> bytes:
    query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]})
    with urllib.request.urlopen(f"{server.base}/view?{query}", timeout=30) as resp:
        return resp.read()


def queue(page, server):
    before = set(server.get("/history") or {})
    page.evaluate("app.queuePrompt(0)")
    entry = wait_for_history(server, before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


@MODES
def test_each_region_is_a_mask_of_the_masks_output_and_its_row_exports_the_same_png(comfy_server, vue, tmp_path):
    """Export: the `masks` output holds one MASK per visible region, in list order; "⤓" on a row saves that region's
    mask as a PNG at width x height that equals it (feather included), for Load Image (as Mask) or any mask tool."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 60]; app.graph.add(clip);
            const toImage = LiteGraph.createNode('MaskToImage'); toImage.pos = [700, 200]; app.graph.add(toImage);
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [1000, 60]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0); canvasNode.connect(1, toImage, 0); toImage.connect(0, preview, 0);
            window.jaPreviewId = preview.id; }}""")
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.05, 0.05, 0.5, 0.45)
        page.locator(".ja-rc-add").first.click()
        page.keyboard.press("b")
        drag(page, canvas, 0.3, 0.75, 0.9, 0.8, steps=10)
        page.locator(".ja-rc-add").first.click()
        drag(page, canvas, 0.6, 0.05, 0.9, 0.3)  # region 3, hidden below: not in the masks output
        prompts = page.locator(".ja-rc-prompt")
        for i, text in enumerate(["a red house", "a winding <river> path", "a cloud"]):
            prompts.nth(i).fill(f"{text} ({'vue' if vue else 'classic'})")
        feather = page.locator(".ja-rc-feather").nth(1)
        feather.fill("32")
        page.locator(".ja-rc-visible").nth(2).uncheck()
        entry = queue(page, comfy_server)
        outputs = entry["outputs"][str(page.evaluate("window.jaPreviewId"))]["images"]
        assert len(outputs) == 2  # one mask per visible region
        backend = [grey(view(comfy_server, ref)) for ref in outputs]

        from joint_attention_pack.nodes import canvas_state

        _, _, regions = canvas_state.parse(canvas_value(page, node_id))
        for i in range(2):
            assert (backend[i] - canvas_state.full_mask(regions[i], 128, 128) * 255).abs().max() <= 1.5
            with page.expect_download() as download:
                page.locator(".ja-rc-region").nth(i).locator("button[title^='Save this region']").click()
            name = download.value.suggested_filename
            path = tmp_path / f"{i}.png"
            download.value.save_as(path)
            exported = grey(path.read_bytes())
            assert exported.shape == (128, 128)
            assert (exported - backend[i]).abs().max() <= 1, i  # the same mask, to 8-bit rounding
            assert name.startswith(f"region_{i + 1}_") and name.endswith("_mask.png") and "<" not in name, name
        assert ((backend[1] > 5) & (backend[1] < 250)).any()  # the feathered region exports its soft edge
        assert Path(name).name == name  # a plain file name


def mask_pictures(folder: Path):
    """Two 128 x 128 mask pictures in the server's input folder: the top-left quarter, and the bottom half."""
    from PIL import Image, ImageDraw

    for name, box in (("ja_mask_quarter.png", [0, 0, 63, 63]), ("ja_mask_bottom.png", [0, 64, 127, 127])):
        img = Image.new("RGB", (128, 128))
        ImageDraw.Draw(img).rectangle(box, fill=(255, 255, 255))
        img.save(folder / name)


def cells(value):
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [(r.mask > 0.5) for r in regions]


@MODES
def test_masks_on_import_masks_are_offered_after_a_run_and_imported_as_regions_with_undo(comfy_server, vue):
    """Import from a MASK input: a MASK batch connected to `import_masks` (here two pictures through core's Batch
    Images and Convert Image to Mask; Attention Maps' concept masks or a painted mask connect the same way) is offered
    after the run as thumbnails; a click adds one as a region, "Import all" the rest, Undo takes an import back, and
    the next run sends the imported regions to the backend without offering the same masks again."""
    mask_pictures(Path(comfy_server._tmp.name) / "input")
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, pos=(60, 60))
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const add = (type, x, y) => {{ const n = LiteGraph.createNode(type); n.pos = [x, y]; app.graph.add(n); return n; }};
            const clip = add('JATestTinyCLIP', 700, 40);
            const a = add('LoadImage', 700, 160); a.widgets.find(w => w.name === 'image').value = 'ja_mask_quarter.png';
            const b = add('LoadImage', 700, 520); b.widgets.find(w => w.name === 'image').value = 'ja_mask_bottom.png';
            const batch = add('ImageBatch', 1000, 160);
            const toMask = add('ImageToMask', 1000, 300);
            const preview = add('PreviewImage', 1000, 420);
            a.connect(0, batch, 0); b.connect(0, batch, 1); batch.connect(0, toMask, 0);
            toMask.widgets.find(w => w.name === 'channel').value = 'red';
            clip.connect(0, canvasNode, 0); toMask.connect(0, canvasNode, 'import_masks'); canvasNode.connect(2, preview, 0); }}""")
        assert page.evaluate(f"app.graph.getNodeById({node_id}).inputs.find(i => i.name === 'import_masks').link") is not None
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.55, 0.05, 0.95, 0.4)  # region 1, drawn by hand
        page.locator(".ja-rc-prompt").first.fill(f"a kite ({'vue' if vue else 'classic'})")
        queue(page, comfy_server)
        offer = page.locator(".ja-rc-mask-offer").first
        offer.wait_for(state="visible", timeout=20000)
        assert "2 masks on import_masks" in offer.inner_text()
        box = page.locator(".ja-rc").first.bounding_box()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"region_canvas_mask_offer_{'vue' if vue else 'classic'}.png"),
                        clip={"x": box["x"] - 12, "y": box["y"] - 40, "width": box["width"] + 24, "height": box["height"] + 52})
        thumbs = offer.locator(".ja-rc-mask-thumb")
        assert thumbs.count() == 2
        quarter, bottom = torch.zeros(16, 16, dtype=torch.bool), torch.zeros(16, 16, dtype=torch.bool)
        quarter[:8, :8] = True
        bottom[8:, :] = True
        # One mask, by its thumbnail.
        thumbs.nth(1).click()
        page.wait_for_function(f"JSON.parse(app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'regions').value).regions.length === 2")
        got = cells(canvas_value(page, node_id))
        assert torch.equal(got[1], bottom)
        assert thumbs.nth(1).is_disabled() and not thumbs.nth(0).is_disabled()
        assert "Import the other 1" in offer.inner_text()
        notice = page.locator(".ja-rc-notice").first
        assert "as Region 2" in notice.inner_text()
        assert page.evaluate("[...document.querySelectorAll('.ja-rc-region')].map(r => r.classList.contains('selected'))") == [False, True]
        # Undo takes it back, and the mask is offered again.
        notice.locator("button", has_text="Undo").click()
        assert len(cells(canvas_value(page, node_id))) == 1
        assert not thumbs.nth(1).is_disabled()
        # Both at once.
        offer.locator("button", has_text="Import all 2").click()
        page.wait_for_function(f"JSON.parse(app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'regions').value).regions.length === 3")
        got = cells(canvas_value(page, node_id))
        assert torch.equal(got[1], quarter) and torch.equal(got[2], bottom)
        assert not offer.is_visible()  # everything imported
        prompts = page.locator(".ja-rc-prompt")
        prompts.nth(1).fill("a bird")
        prompts.nth(2).fill("a lake")
        # The next run: the backend receives the imported regions; the same masks are not offered again.
        entry = queue(page, comfy_server)
        received = json.loads(entry["prompt"][2][str(node_id)]["inputs"]["regions"])
        assert [r["prompt"] for r in received["regions"]][1:] == ["a bird", "a lake"]
        from joint_attention_pack.nodes import canvas_state

        _, _, regions = canvas_state.parse(json.dumps(received))
        assert torch.equal(regions[1].mask > 0.5, quarter) and torch.equal(regions[2].mask > 0.5, bottom)
        page.wait_for_timeout(1000)
        assert not offer.is_visible()
        assert page.evaluate(f"app.graph.getNodeById({node_id}).properties.ja_masks_done") == \
            entry["outputs"][str(node_id)]["ja_import_masks"][0]["batch"]
