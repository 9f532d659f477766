"""Issue 32, item 5: size handling that keeps the graph consistent. The canvas offers its width/height as INT outputs a
latent node links to, and "Match width/height to it" never crops a drawing without asking first.

Each test runs with classic and with Vue node rendering.
"""
import json
from pathlib import Path

import pytest

from ja_browser import MODES, add_canvas, canvas_value, drag, node_rendering

pytestmark = pytest.mark.browser


@MODES
def test_the_latent_size_links_to_the_canvas_width_and_height_outputs(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=128)
        outputs = page.evaluate(f"app.graph.getNodeById({node_id}).outputs.map(o => [o.name, o.type])")
        assert outputs[-2:] == [["width", "INT"], ["height", "INT"]]
        prompt = page.evaluate(f"""async () => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const latent = LiteGraph.createNode('EmptyLatentImage'); latent.pos = [700, 80]; app.graph.add(latent);
            const slot = (name) => latent.inputs.findIndex(i => i.name === name);
            canvasNode.connect(3, latent, slot('width')); canvasNode.connect(4, latent, slot('height'));
            const p = await app.graphToPrompt();
            return p.output[String(latent.id)].inputs; }}""")
        assert prompt["width"] == [str(node_id), 3] and prompt["height"] == [str(node_id), 4]
        assert not page.errors, page.errors


def wide_picture(path: Path):
    from PIL import Image

    Image.new("RGB", (1216, 832), (90, 150, 235)).save(path)


@MODES
def test_match_width_height_asks_before_it_crops_the_drawing(comfy_server, vue):
    wide_picture(Path(comfy_server._tmp.name) / "input" / "ja_wide.png")
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=1024)
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        page.evaluate(f"{editor}.setBackground({{filename: 'ja_wide.png', subfolder: '', type: 'input'}})")
        note = page.locator(".ja-rc-bg-note").first
        note.wait_for(state="visible", timeout=20000)
        canvas = page.locator(".ja-rc-canvas").first
        # A box across the band above the letterboxed picture (the picture covers rows 162-862 of 1024).
        drag(page, canvas, 0.3, 0.02, 0.7, 0.3)
        drawn = canvas_value(page, node_id)
        note.locator("button", has_text="Match width/height").click()
        page.wait_for_timeout(300)
        # Nothing changed yet: the note says what would be lost and asks.
        assert "crops the drawing" in note.inner_text()
        assert canvas_value(page, node_id) == drawn
        assert json.loads(drawn)["width"] == 1024 and json.loads(drawn)["height"] == 1024
        note.locator("button", has_text="Cancel").click()
        page.wait_for_timeout(300)
        assert "letterboxed" in note.inner_text() and canvas_value(page, node_id) == drawn
        note.locator("button", has_text="Match width/height").click()
        note.locator("button", has_text="Crop and resize").click()
        page.wait_for_timeout(300)
        value = json.loads(canvas_value(page, node_id))
        assert (value["width"], value["height"]) == (1024, 704)
        assert not note.is_visible()  # the shapes match now
        assert not page.errors, page.errors
