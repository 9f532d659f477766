"""Region Canvas in the real frontend: draw, queue, check what the backend received, save and reload."""
import json
import math
import time

import pytest
import torch

from ja_browser import frontend, open_app, readme_images
from ja_host import ROOT
from ja_workflows import load, swap_loaders_ui
from joint_attention_pack.nodes import canvas_state

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
SIZE = 128  # image pixels of the drawing (and of the tiny run)


def token_grid(mask_px: torch.Tensor) -> torch.Tensor:
    """[H, W] 0/1 pixels -> token cells covered by at least half."""
    return torch.nn.functional.avg_pool2d(mask_px[None, None].float(), 16)[0, 0] >= 0.5


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def rect_pixels(x0, y0, x1, y1):
    """Expected rectangle after snapping to the 16 px grid, rasterised like the widget (cell centres)."""
    snap = [round(v / 16) * 16 for v in (x0, y0, x1, y1)]
    left, right = sorted(snap[0::2])
    top, bottom = sorted(snap[1::2])
    cells = torch.zeros(SIZE // 8, SIZE // 8)
    for cy in range(SIZE // 8):
        for cx in range(SIZE // 8):
            if left <= (cx + 0.5) * 8 <= right and top <= (cy + 0.5) * 8 <= bottom:
                cells[cy, cx] = 1
    return cells.repeat_interleave(8, 0).repeat_interleave(8, 1)


def stroke_pixels(points, radius, samples=4):
    """A hard smooth-brush stroke rasterised like the widget (js/region_raster.js): each cell's 4 x 4 samples are covered
    by the brush with an anti-aliased edge one sample (2 px) wide; a cell is taken when its mean coverage is at least half."""
    step = 8 / samples

    def distance(px, py):
        best = math.inf
        for (ax, ay), (bx, by) in zip([points[0]] + points, points):
            dx, dy = bx - ax, by - ay
            t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
            best = min(best, math.hypot(px - ax - t * dx, py - ay - t * dy))
        return best

    cells = torch.zeros(SIZE // 8, SIZE // 8)
    for cy in range(SIZE // 8):
        for cx in range(SIZE // 8):
            total = sum(round(255 * max(0.0, min(1.0, (radius - distance((cx * samples + sx + 0.5) * step,
                                                                             (cy * samples + sy + 0.5) * step)) / step)))
                        for sy in range(samples) for sx in range(samples))
            cells[cy, cx] = 1 if total >= 255 * samples * samples / 2 else 0
    return cells.repeat_interleave(8, 0).repeat_interleave(8, 1)


def canvas_node_id(page):
    return page.evaluate("app.graph._nodes.find(n => n.type === 'JointAttentionRegionCanvas').id")


def test_draw_queue_save_and_reload(comfy_server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    info = comfy_server.object_info()
    workflow = swap_loaders_ui(load("regional_canvas_flux.json"), info)
    with frontend(comfy_server) as page:
        page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
        node_id = canvas_node_id(page)
        page.evaluate(f"""() => {{
            const n = app.graph.getNodeById({node_id});
            for (const name of ['width', 'height']) {{ const w = n.widgets.find(w => w.name === name); w.value = {SIZE}; w.callback?.(w.value); }}
            for (const other of app.graph._nodes) if (other.type === 'EmptySD3LatentImage') {{
                other.widgets.find(w => w.name === 'width').value = {SIZE}; other.widgets.find(w => w.name === 'height').value = {SIZE}; }}
            for (const other of app.graph._nodes) if (other.type === 'KSampler') other.widgets.find(w => w.name === 'steps').value = 2;
            n.jaRegionEditor.setValue('');
            // Left of the example's other nodes and below the workflow tabs: README's picture shows the node alone.
            n.pos = [-600, 200]; n.size = [460, 760];
            app.canvas.ds.offset = [710, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true);
        }}""")
        page.wait_for_timeout(800)
        canvas = page.locator(".ja-rc-canvas")
        box = canvas.bounding_box()
        to_screen = lambda x, y: (box["x"] + x / SIZE * box["width"], box["y"] + y / SIZE * box["height"])  # noqa: E731
        page.evaluate("""() => { window.jaPointer = []; document.querySelector('.ja-rc-canvas').addEventListener('pointermove',
            e => window.jaPointer.push([e.clientX, e.clientY])); }""")
        # Region 1: a rectangle.
        page.locator(".ja-rc-tool[data-tool=rect]").click()
        page.locator(".ja-rc-snap-box").check()  # snapping (off by default) squares the rectangle to the token grid
        page.mouse.move(*to_screen(12, 14))
        page.mouse.down()
        page.mouse.move(*to_screen(60, 110), steps=8)
        page.mouse.up()
        # Region 2: a brush stroke.
        page.locator(".ja-rc-add").click()
        page.locator(".ja-rc-tool[data-tool=brush]").click()
        page.locator(".ja-rc-snap-box").uncheck()  # a free-hand stroke (snapping squares it to the token grid)
        page.evaluate("() => { const s = document.querySelector('.ja-rc-size'); s.value = 24; s.dispatchEvent(new Event('input')); }")
        page.evaluate("window.jaPointer = []")
        start, end = to_screen(80, 24), to_screen(112, 104)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=12)
        page.mouse.up()
        pointer = [start] + [tuple(p) for p in page.evaluate("window.jaPointer")]
        prompts = page.locator(".ja-rc-prompt")
        prompts.nth(0).fill("a red <b>house</b>")
        prompts.nth(0).press("Tab")
        prompts.nth(1).fill("a blue lake")
        prompts.nth(1).press("Tab")
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "region_canvas_page.png"))
        node_box = page.locator(".ja-rc").bounding_box()
        page.screenshot(path=str(ARTIFACTS / "region_canvas.png"), clip={
            "x": node_box["x"] - 12, "y": node_box["y"] - 110, "width": node_box["width"] + 24, "height": node_box["height"] + 122})
        readme_images().refresh("region_canvas.png")  # README's picture in docs/images/, when it looks different
        value = page.evaluate(f"app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'regions').value")

        before = set(comfy_server.get("/history") or {})
        page.evaluate("app.queuePrompt(0)")
        deadline = time.time() + 300
        new = set()
        while time.time() < deadline and not new:
            time.sleep(0.3)
            new = {pid for pid, e in (comfy_server.get("/history") or {}).items()
                   if pid not in before and e.get("status", {}).get("completed") is not None}
        assert new, "the queued prompt did not finish"
        entry = comfy_server.get(f"/history/{new.pop()}")
        entry = next(iter(entry.values()))
        assert entry["status"]["status_str"] == "success", entry["status"]
        received = entry["prompt"][2][str(node_id)]["inputs"]["regions"]
        assert json.loads(received) == json.loads(value)

        _, _, regions = canvas_state.parse(received)
        assert [r.prompt for r in regions] == ["a red <b>house</b>", "a blue lake"]
        got = [token_grid(canvas_state.full_mask(r, SIZE, SIZE)) for r in regions]
        want_rect = token_grid(rect_pixels(12, 14, 60, 110))
        to_image = lambda p: ((p[0] - box["x"]) / box["width"] * SIZE, (p[1] - box["y"]) / box["height"] * SIZE)  # noqa: E731
        want_stroke = token_grid(stroke_pixels([to_image(p) for p in pointer], 12))
        assert iou(got[0], want_rect) >= 0.99
        assert iou(got[1], want_stroke) >= 0.99
        assert got[1].sum() > 3 and got[0].sum() > 6

        # Save the workflow, reload the page, load it again: the same regions come back.
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        (ARTIFACTS / "region_canvas_workflow.json").write_text(saved)
        page.reload()
        open_app(page, comfy_server)
        page.evaluate("async (wf) => { await app.loadGraphData(JSON.parse(wf)); }", saved)
        page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
        page.wait_for_timeout(800)
        assert page.evaluate(f"app.graph.getNodeById({node_id}).jaRegionEditor.list.children.length") == 2
        reloaded = page.evaluate(f"app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'regions').value")
        assert json.loads(reloaded) == json.loads(value)
        assert page.locator(".ja-rc-region").count() == 2
        assert page.locator(".ja-rc-prompt").nth(0).input_value() == "a red <b>house</b>"
        assert page.locator(".ja-rc-canvas b").count() == 0 and page.locator(".ja-rc b").count() == 0  # text, not HTML
        page.screenshot(path=str(ARTIFACTS / "region_canvas_reloaded.png"))
        assert not [e for e in page.errors if "ja-rc" in e or "region_canvas" in e], page.errors


@pytest.mark.parametrize("value,message", [
    ("{not json", "not JSON"),
    (json.dumps({"version": 7, "width": 64, "height": 64, "regions": []}), "unsupported canvas version"),
    (json.dumps({"version": 1, "width": 64, "height": 64, "regions": [{"mask": "0.3"}]}), "region 1: mask covers 3 cells"),
    (json.dumps({"version": 1, "width": 64, "height": 64, "regions": [{"mask": "0.40", "prompt": "x" * 5000}]}), "prompt"),
    ("x" * (5 * 1024 * 1024), "limit"),
])
def test_malformed_values_get_a_node_error_and_the_server_keeps_serving(comfy_server, value, message):
    prompt = {
        "clip": {"class_type": "JATestTinyCLIP", "inputs": {"seed": 0}},
        "canvas": {"class_type": "JointAttentionRegionCanvas",
                   "inputs": {"clip": ["clip", 0], "width": 64, "height": 64, "regions": value}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["canvas", 2]}},
    }
    status, body = comfy_server.queue_raw(prompt)
    assert status == 400
    assert message in json.dumps(body)
    assert "Region Canvas" in json.dumps(body)
    assert comfy_server.get("/system_stats")  # still serving
