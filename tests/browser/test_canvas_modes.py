"""Region Canvas survives what people do to nodes: resize, zoom, collapse, copy/paste, Vue node rendering."""
import json

import pytest

from ja_browser import frontend

pytestmark = pytest.mark.browser

ADD = """() => { const n = LiteGraph.createNode('JointAttentionRegionCanvas'); n.pos = [120, 80]; app.graph.add(n);
  for (const name of ['width', 'height']) { const w = n.widgets.find(w => w.name === name); w.value = 128; w.callback?.(128); }
  app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); return n.id; }"""
VALUE = "(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'regions').value"


def draw_rect(page, canvas, fx0, fy0, fx1, fy1):
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"], steps=5)
    page.mouse.up()


def expected_cells(fx0, fy0, fx1, fy1, size=128):
    """Cells (8 px) a rectangle covers (snapping is off by default): cell centres inside count."""
    x0, y0, x1, y1 = (f * size for f in (fx0, fy0, fx1, fy1))
    return sum(1 for cy in range(size // 8) for cx in range(size // 8)
               if x0 <= (cx + 0.5) * 8 <= x1 and y0 <= (cy + 0.5) * 8 <= y1)


def covered(value):
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [int(r.mask.sum().item()) for r in regions]


def test_resize_zoom_collapse_and_copy_paste(comfy_server):
    with frontend(comfy_server) as page:
        node_id = page.evaluate(ADD)
        page.wait_for_timeout(500)
        canvas = page.locator(".ja-rc-canvas").first
        draw_rect(page, canvas, 0.1, 0.1, 0.5, 0.5)
        first = page.evaluate(VALUE, node_id)
        assert covered(first) == [expected_cells(0.1, 0.1, 0.5, 0.5)]
        # Resize the node: the canvas follows and drawing still maps to image pixels.
        page.evaluate(f"() => {{ const n = app.graph.getNodeById({node_id}); n.setSize([700, 1060]); app.canvas.setDirty(true, true); }}")
        page.wait_for_timeout(500)
        assert canvas.bounding_box()["width"] > 500
        # Zoom out: the DOM widget scales with the graph; a stroke at the same relative place lands in the same cells.
        page.evaluate("() => { app.canvas.ds.scale = 0.6; app.canvas.setDirty(true, true); }")
        page.wait_for_timeout(500)
        page.locator(".ja-rc-add").first.click()
        draw_rect(page, canvas, 0.55, 0.55, 0.9, 0.9)
        zoomed = page.evaluate(VALUE, node_id)
        assert covered(zoomed) == [expected_cells(0.1, 0.1, 0.5, 0.5), expected_cells(0.55, 0.55, 0.9, 0.9)]
        # Collapse and expand: the drawing is kept.
        page.evaluate(f"() => {{ const n = app.graph.getNodeById({node_id}); n.collapse(); n.collapse(); app.canvas.setDirty(true, true); }}")
        page.wait_for_timeout(300)
        assert page.evaluate(VALUE, node_id) == zoomed
        # Copy / paste: the new node carries the same drawing, and editing one leaves the other alone.
        page.evaluate(f"() => {{ app.canvas.selectNode(app.graph.getNodeById({node_id})); app.canvas.copyToClipboard(); "
                      "app.canvas.pasteFromClipboard(); }")
        page.wait_for_timeout(500)
        ids = page.evaluate("app.graph._nodes.filter(n => n.type === 'JointAttentionRegionCanvas').map(n => n.id)")
        assert len(ids) == 2
        pasted = [i for i in ids if i != node_id][0]
        assert json.loads(page.evaluate(VALUE, pasted)) == json.loads(zoomed)
        page.evaluate(f"() => app.graph.getNodeById({pasted}).jaRegionEditor.fill(0)")
        assert covered(page.evaluate(VALUE, node_id)) == covered(zoomed)
        assert page.evaluate(f"(() => app.graph.getNodeById({node_id}).jaRegionEditor !== app.graph.getNodeById({pasted}).jaRegionEditor)()")
        # Removing a node destroys its editor (listeners and DOM gone).
        page.evaluate(f"() => app.graph.remove(app.graph.getNodeById({pasted}))")
        page.wait_for_timeout(300)
        assert page.locator(".ja-rc").count() == 1
        assert not [e for e in page.errors if "ja-rc" in e or "region_canvas" in e], page.errors


def test_vue_node_rendering_mode(comfy_server):
    comfy_server.post("/settings/Comfy.VueNodes.Enabled", True)
    try:
        with frontend(comfy_server) as page:
            assert page.evaluate("app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled')") is True
            node_id = page.evaluate(ADD)
            page.wait_for_timeout(1500)
            canvas = page.locator(".ja-rc-canvas").first
            canvas.wait_for(state="visible", timeout=15000)
            box_before = canvas.bounding_box()
            draw_rect(page, canvas, 0.05, 0.05, 0.95, 0.5)
            assert canvas.bounding_box() == box_before  # drawing never changes the layout
            value = page.evaluate(VALUE, node_id)
            assert covered(value) == [expected_cells(0.05, 0.05, 0.95, 0.5)]
            page.screenshot(path="tests/artifacts/region_canvas_vue_nodes.png")
            # The canvas stays inside its node.
            node_box = page.locator(f"[data-node-id='{node_id}']").bounding_box()
            if node_box:
                box = canvas.bounding_box()
                assert box["x"] + box["width"] <= node_box["x"] + node_box["width"] + 1
    finally:
        comfy_server.post("/settings/Comfy.VueNodes.Enabled", False)


def test_background_from_the_last_run_is_shown_under_the_drawing(comfy_server):
    """An IMAGE on `background` (here a stock EmptyImage; a LoadImage from the input folder works the same)
    is shown in the canvas after the run."""
    with frontend(comfy_server) as page:
        node_id = page.evaluate(ADD)
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [600, 80]; app.graph.add(clip);
            const image = LiteGraph.createNode('EmptyImage'); image.pos = [600, 300]; app.graph.add(image);
            image.widgets.find(w => w.name === 'color').value = 0xff8800;
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [900, 80]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0);
            image.connect(0, canvasNode, 1);
            canvasNode.connect(2, preview, 0);
        }}""")
        page.evaluate("app.queuePrompt(0)")
        page.wait_for_function(f"!!app.graph.getNodeById({node_id}).jaRegionEditor.background", timeout=120000)
        page.wait_for_timeout(300)
        # The canvas now shows the orange background where nothing is drawn.
        pixel = page.evaluate("""() => { const c = document.querySelector('.ja-rc-canvas');
            return [...c.getContext('2d').getImageData(2, 2, 1, 1).data]; }""")
        assert pixel[0] > pixel[2] + 60, pixel  # orange-ish, not the grey empty canvas
