"""Issue 34 item 4: what the editor holds outlives what ComfyUI does around it.

The background survives a server restart (it lived in ComfyUI's temp folder, which the server empties when it starts)
and comes back when the canvas node's run comes from ComfyUI's cache (a cached node's UI output was not sent again);
the canvas's own undo history survives a graph undo (the editor ComfyUI rebuilds started with an empty one).
"""
import json
from pathlib import Path

import pytest

from ja_browser import (
    MODES,
    add_canvas,
    canvas_pixels,
    canvas_value,
    drag,
    frontend,
    graph_undo,
    let_history_settle,
    node_rendering,
    open_app,
    record_graph_state,
    wait_for_history,
)

pytestmark = pytest.mark.browser
BLUE = (20, 60, 220)
NEUTRAL = (58, 58, 58)  # the canvas colour where there is no background (#3a3a3a)


def blue_picture(server, name):
    from PIL import Image

    Image.new("RGB", (128, 128), BLUE).save(Path(server._tmp.name) / "input" / name)


WIRE = """([id, picture]) => { const canvasNode = app.graph.getNodeById(id);
    const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 60]; app.graph.add(clip);
    const image = LiteGraph.createNode('LoadImage'); image.pos = [700, 200]; app.graph.add(image);
    image.widgets.find(w => w.name === 'image').value = picture;
    const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [1000, 60]; app.graph.add(preview);
    clip.connect(0, canvasNode, 0); image.connect(0, canvasNode, 1); canvasNode.connect(2, preview, 0); }"""


def shown_colour(page, node_id, fx=0.9, fy=0.9):
    return canvas_pixels(page, [(fx, fy)], node_id)[0][:3]


def wait_for_background(page, node_id, timeout=20000):
    page.wait_for_function("(id) => !!app.graph.getNodeById(id)?.jaRegionEditor?.background", arg=node_id, timeout=timeout)
    page.wait_for_timeout(300)  # the next frame draws it


def run(page, server):
    before = set(server.get("/history") or {})
    page.evaluate("app.queuePrompt(0)")
    entry = wait_for_history(server, before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


def show_saved(page, server, saved):
    page.reload()
    open_app(page, server)
    page.evaluate("async (wf) => { await app.loadGraphData(JSON.parse(wf)); }", saved)
    page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
    page.wait_for_timeout(800)


def test_a_background_survives_a_server_restart():
    from ja_server import ComfyServer

    server = ComfyServer()
    server.start()
    try:
        blue_picture(server, "ja_blue_restart.png")
        with frontend(server) as page:
            page.evaluate("app.graph.clear()")
            node_id = add_canvas(page)
            page.evaluate(WIRE, [node_id, "ja_blue_restart.png"])
            run(page, server)
            wait_for_background(page, node_id)
            assert tuple(shown_colour(page, node_id)) == BLUE
            ref = page.evaluate(f"app.graph.getNodeById({node_id}).properties.ja_background")
            assert ref["type"] == "input" and ref["subfolder"] == "joint_attention_canvas", ref
            saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        server.stop()
        server.start()
        with frontend(server) as page:
            show_saved(page, server, saved)
            node_id = page.evaluate("app.graph._nodes.find(n => n.type === 'JointAttentionRegionCanvas').id")
            wait_for_background(page, node_id)
            assert tuple(shown_colour(page, node_id)) == BLUE
            assert page.locator(".ja-rc-bg-note").first.is_hidden()  # no "no longer on the server"
    finally:
        server.stop()
        server._tmp.cleanup()


def test_a_cached_run_brings_the_background_back(comfy_server):
    """The workflow as saved before its first run (no background reference in it), opened again and run unchanged:
    ComfyUI takes the canvas node's result from its cache, and the editor still gets its background."""
    blue_picture(comfy_server, "ja_blue_cached.png")
    with node_rendering(comfy_server, False) as page:
        node_id = add_canvas(page)
        page.evaluate(WIRE, [node_id, "ja_blue_cached.png"])
        saved_before_the_run = page.evaluate("JSON.stringify(app.graph.serialize())")
        run(page, comfy_server)
        wait_for_background(page, node_id)
        show_saved(page, comfy_server, saved_before_the_run)
        assert tuple(shown_colour(page, node_id)) == NEUTRAL  # nothing to show until it runs
        run(page, comfy_server)
        wait_for_background(page, node_id)
        assert tuple(shown_colour(page, node_id)) == BLUE


@MODES
def test_the_canvas_undo_history_survives_a_graph_undo(comfy_server, vue):
    """Three strokes, one graph undo (the third stroke goes): the canvas's Ctrl+Z goes on to the first stroke and its
    Ctrl+Y brings back the second and the third (an empty history used to start at the restored drawing)."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        record_graph_state(page)
        canvas = page.locator(".ja-rc-canvas").first
        values = []
        for f in (0.1, 0.4, 0.7):
            page.keyboard.down("Shift")  # strokes add to the selected region (off it, a stroke starts a new one)
            drag(page, canvas, f, f, f + 0.2, f + 0.2)
            page.keyboard.up("Shift")
            let_history_settle(page)
            values.append(canvas_value(page, node_id))
        assert len(set(values)) == 3
        page.mouse.click(1300, 900)
        graph_undo(page)
        assert canvas_value(page, node_id) == values[1]
        page.locator(".ja-rc-keys").first.focus()
        page.keyboard.press("Control+z")
        page.wait_for_timeout(500)
        assert canvas_value(page, node_id) == values[0]
        page.keyboard.press("Control+y")
        page.keyboard.press("Control+y")
        page.wait_for_timeout(500)
        assert canvas_value(page, node_id) == values[2]
        assert json.loads(values[2])["regions"][0]["mask"] != json.loads(values[1])["regions"][0]["mask"]
