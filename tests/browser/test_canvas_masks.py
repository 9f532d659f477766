"""Issue 20: the canvas joins other mask tools. Each region is exported as a MASK (the `masks` output, and a PNG from
its row), and masks that reach the `import_masks` input are offered as new regions after a run.

Each test runs with classic and Vue node rendering, drives the editor with the mouse and checks what the backend
outputs or receives.
"""
import io
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

from ja_browser import add_canvas, canvas_value, drag, node_rendering, wait_for_history

pytestmark = pytest.mark.browser
MODES = pytest.mark.parametrize("vue", [False, True], ids=["classic", "vue"])


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
