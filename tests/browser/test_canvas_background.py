"""Issue 20, problem 6: the background keeps its shape, survives a reload, can be traced over; docs/canvas.md's screenshot."""
import io
import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ja_browser import (
    MODES,
    add_canvas,
    canvas_pixels,
    canvas_value,
    drag,
    node_rendering,
    open_app,
    readme_images,
    wait_for_history,
)
from ja_host import ROOT

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
NEUTRAL = (58, 58, 58)  # the canvas colour outside the image (#3a3a3a)


def scene(path: Path):
    """A 1216 x 832 picture drawn here (no download): sky, sun, hills, a red house, a lake."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1216, 832))
    draw = ImageDraw.Draw(img)
    for y in range(832):
        t = y / 831
        draw.line([(0, y), (1215, y)], fill=(int(90 + 120 * t), int(150 + 80 * t), int(235 - 30 * t)))
    draw.ellipse([930, 90, 1070, 230], fill=(255, 226, 120))
    draw.polygon([(0, 560), (300, 420), (620, 540), (900, 400), (1216, 520), (1216, 832), (0, 832)], fill=(70, 150, 70))
    draw.rectangle([170, 430, 430, 640], fill=(200, 40, 40))
    draw.polygon([(150, 440), (300, 330), (450, 440)], fill=(120, 30, 30))
    draw.ellipse([700, 620, 1150, 780], fill=(60, 110, 200))
    img.save(path)


def pixels(page, points):
    return [rgba[:3] for rgba in canvas_pixels(page, points)]


def view_image(server, ref):
    from PIL import Image

    query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref["type"]})
    with urllib.request.urlopen(f"{server.base}/view?{query}", timeout=30) as resp:
        return Image.open(io.BytesIO(resp.read())).convert("RGB")


@MODES
def test_background_keeps_its_shape_survives_a_reload_and_can_be_traced(comfy_server, vue):
    """Problem 6: a 1216x832 image was stretched to a square canvas without warning, was gone after a reload until
    the next run, lay under a checker and a fixed 45 % overlay, and a crimson region could not be told from red."""
    scene(Path(comfy_server._tmp.name) / "input" / "ja_scene.png")
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=1024, pos=(60, 60))
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 60]; app.graph.add(clip);
            const image = LiteGraph.createNode('LoadImage'); image.pos = [700, 200]; app.graph.add(image);
            image.widgets.find(w => w.name === 'image').value = 'ja_scene.png';
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [1000, 60]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0); image.connect(0, canvasNode, 1); canvasNode.connect(2, preview, 0);
            window.jaPreviewId = preview.id; }}""")
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.1, 0.45, 0.4, 0.8)  # region 1 over the red house
        # A prompt of its own per mode: an unchanged node would come from ComfyUI's cache, and a cached node's run
        # does not resend its UI output (the background reference) on this host.
        page.locator(".ja-rc-prompt").first.fill(f"a red house ({'vue' if vue else 'classic'})")
        before = set(comfy_server.get("/history") or {})
        page.evaluate("app.queuePrompt(0)")
        entry = wait_for_history(comfy_server, before)
        assert entry["status"]["status_str"] == "success", entry["status"]
        note = page.locator(".ja-rc-bg-note").first
        note.wait_for(state="visible", timeout=20000)
        assert "1216×832" in note.inner_text() and "letterboxed" in note.inner_text()
        # Letterboxed, not stretched: bands above and below the image, the picture's sky in the middle.
        top, bottom, sky = pixels(page, [(0.5, 0.05), (0.5, 0.95), (0.5, 0.2)])
        assert tuple(top) == tuple(bottom) == NEUTRAL, (top, bottom)
        assert sky[2] > sky[0] + 40, sky  # blue sky, no checker over it
        # The preview output is letterboxed the same way.
        preview_id = str(page.evaluate("window.jaPreviewId"))
        preview = view_image(comfy_server, entry["outputs"][preview_id]["images"][0])
        assert preview.size == (1024, 1024)
        assert max(abs(c - 89) for c in preview.getpixel((512, 20))) <= 2  # 0.35 grey band
        assert preview.getpixel((512, 250))[2] > 150  # sky
        # Overlay opacity: the region's colour covers the house more or less.
        house = (0.25, 0.62)
        weak = pixels(page, [house])[0]
        page.locator(".ja-rc-opacity").first.fill("90")
        page.wait_for_timeout(200)
        strong = pixels(page, [house])[0]
        assert page.locator(".ja-rc-opacity-value").first.inner_text() == "90%"
        region = (0xE6, 0x19, 0x4B)
        assert sum(abs(a - b) for a, b in zip(strong, region)) < sum(abs(a - b) for a, b in zip(weak, region))
        page.locator(".ja-rc-opacity").first.fill("45")
        # The region's own colour can be changed, and its outline sets it apart from red in the picture.
        page.locator(".ja-rc-color").first.fill("#42d4f4")
        page.wait_for_timeout(200)
        assert json.loads(canvas_value(page, node_id))["regions"][0]["color"] == "#42d4f4"

        # Reload the page and the workflow: the background comes back without a new run.
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        page.reload()
        open_app(page, comfy_server)
        page.evaluate("async (wf) => { await app.loadGraphData(JSON.parse(wf)); }", saved)
        page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
        note = page.locator(".ja-rc-bg-note").first
        note.wait_for(state="visible", timeout=20000)
        assert "letterboxed" in note.inner_text()
        # Offer to match the canvas to the picture's shape (long side kept, multiples of 16).
        note.locator("button", has_text="Match").click()
        page.wait_for_timeout(400)
        value = json.loads(canvas_value(page, node_id))
        assert (value["width"], value["height"]) == (1024, 704)
        widgets = page.evaluate(f"app.graph.getNodeById({node_id}).widgets.filter(w => ['width', 'height'].includes(w.name)).map(w => w.value)")
        assert widgets == [1024, 704]
        assert not note.is_visible()
        # The drawing follows the picture: region 1, drawn over the letterboxed house, still covers the house.
        from joint_attention_pack.nodes import canvas_state

        _, _, regions = canvas_state.parse(canvas_value(page, node_id))
        house = (round(300 * 1024 / 1216), round(535 * 704 / 832))
        assert regions[0].mask[house[1] // 8, house[0] // 8] == 1
        if not vue:
            screenshot(page, node_id)


def screenshot(page, node_id):
    """docs/canvas.md's picture: the editor over a background, three regions with prompts."""
    page.evaluate(f"() => {{ const n = app.graph.getNodeById({node_id}); n.pos = [60, 130]; n.setSize([620, 940]); app.canvas.setDirty(true, true); }}")
    page.wait_for_timeout(500)
    page.locator(".ja-rc-notice button[title=Dismiss]").first.click()
    canvas = page.locator(".ja-rc-canvas").first
    page.locator(".ja-rc-add").first.click()
    page.keyboard.press("b")
    page.locator(".ja-rc-size").first.fill("96")
    drag(page, canvas, 0.62, 0.78, 0.9, 0.86, steps=14)
    page.locator(".ja-rc-add").first.click()
    page.keyboard.press("r")
    drag(page, canvas, 0.74, 0.05, 0.9, 0.3)
    prompts = page.locator(".ja-rc-prompt")
    for i, text in enumerate(["a red wooden barn with a dark roof", "a calm blue lake with reflections", "a bright low sun"]):
        prompts.nth(i).fill(text)
    page.locator(".ja-rc-feather").nth(1).fill("32")
    page.mouse.move(1400, 700)  # no hover tooltip in the picture
    page.wait_for_timeout(400)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    box = page.locator(".ja-rc").first.bounding_box()
    path = ARTIFACTS / "region_canvas_background.png"
    page.screenshot(path=str(path), clip={"x": box["x"] - 12, "y": box["y"] - 120, "width": box["width"] + 24,
                                          "height": box["height"] + 132})
    # docs/canvas.md shows it: refreshed in docs/images/ when it looks different (scripts/readme_images.py).
    readme_images().refresh(path.name)
