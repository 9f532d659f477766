"""Issue 32, item 7 (the rest): a smooth brush with hardness, per-region opacity, lasso and bucket fill; the toolbar's
symbol-only tool buttons, its help from the key table, both redo keys.

Each test runs with classic and with Vue node rendering, drives the editor with the mouse and the keyboard, and reads
the saved value through the backend's decoder (nodes/canvas_state.py).
"""
import json
from pathlib import Path

import pytest

from ja_browser import MODES, add_canvas, canvas_pixels, canvas_value, click_at, drag, drawn_cells, node_rendering

pytestmark = pytest.mark.browser
SIZE = 128  # 16 x 16 cells of 8 px
DOCS = Path(__file__).resolve().parents[2] / "docs" / "canvas.md"


def column(page, fx):
    """The canvas's pixels down the column at `fx` (a fraction of its width), as [r, g, b] lists."""
    return page.evaluate("""(fx) => { const c = document.querySelector('.ja-rc-canvas');
        const d = c.getContext('2d').getImageData(Math.floor(fx * c.width), 0, 1, c.height).data;
        const out = []; for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]); return out; }""", fx)


def rows(mask):
    return int(mask.any(dim=1).sum())


def stroke(page, canvas, y, hold=False):
    """A mouse stroke across the canvas at height `y` (a fraction), 3 px down at its end; `hold` leaves the button
    down."""
    drag(page, canvas, 0.1, y, 0.9, y + 3 / canvas.bounding_box()["height"], steps=8, hold=hold)
    page.wait_for_timeout(150)


@MODES
def test_a_smooth_stroke_rasterised_into_cells_and_a_softer_brush(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.locator(".ja-rc-tool[data-tool=brush]").first.click()  # a click in the editor gives it the keyboard
        # Snapping is off until chosen: strokes are not squared to the 16 px token grid.
        assert not page.locator(".ja-rc-snap-box").first.is_checked()
        # While the stroke is drawn it shows smooth: its edge blends over many shades (hard cells showed two or three).
        stroke(page, canvas, 0.3, hold=True)
        page.wait_for_timeout(200)
        reds = {r for r, g, b in column(page, 0.5) if r - g > 8}
        page.mouse.up()
        assert len(reds) >= 6, sorted(reds)
        # Rasterised into the cells when it ends: a diagonal stroke is not made of whole 2 x 2 token squares.
        page.locator(".ja-rc-add").first.click()
        drag(page, canvas, 0.1, 0.55, 0.9, 0.95, steps=12)
        diagonal = drawn_cells(canvas_value(page, node_id))[1]
        squares = diagonal.reshape(8, 2, 8, 2).sum(dim=(1, 3))
        assert ((squares > 0) & (squares < 4)).any(), squares
        # Hardness: the softer brush takes the band its half strength reaches (radius × (1 + hardness) / 2).
        hard = rows(drawn_cells(canvas_value(page, node_id))[0])
        for _ in range(4):
            page.keyboard.press("Shift+BracketLeft")  # "{": softer by 25 %
        assert page.locator(".ja-rc-hardness").first.input_value() == "0"
        page.locator(".ja-rc-add").first.click()
        stroke(page, canvas, 0.3)
        soft = rows(drawn_cells(canvas_value(page, node_id))[2])
        assert hard >= 5 and 2 <= soft <= hard - 2, (hard, soft)
        assert not page.errors, page.errors


@MODES
def test_a_regions_opacity_is_saved_and_reloaded(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.locator(".ja-rc-tool[data-tool=rect]").first.click()
        drag(page, canvas, 0.0, 0.0, 0.5, 1.0)
        assert "opacity" not in canvas_value(page, node_id)  # the default is not saved
        page.wait_for_timeout(200)
        before = canvas_pixels(page, [(0.25, 0.5)])[0]
        slider = page.locator(".ja-rc-region-opacity").first
        box = slider.bounding_box()
        assert box["height"] > box["width"]  # upright in the row
        slider.fill("20")
        page.wait_for_timeout(300)
        assert json.loads(canvas_value(page, node_id))["regions"][0]["opacity"] == 0.2
        faded = canvas_pixels(page, [(0.25, 0.5)])[0]
        assert faded[0] - faded[1] < (before[0] - before[1]) / 2, (before, faded)  # fainter red over the grey
        assert len(drawn_cells(canvas_value(page, node_id))) == 1  # view only: the region is still used
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        page.evaluate("() => app.graph.clear()")
        page.evaluate("async (wf) => { await app.loadGraphData(JSON.parse(wf)); }", saved)
        page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
        page.wait_for_timeout(1000)
        assert page.locator(".ja-rc-region-opacity").first.input_value() == "20"
        assert json.loads(canvas_value(page, node_id))["regions"][0]["opacity"] == 0.2
        again = canvas_pixels(page, [(0.25, 0.5)])[0]
        assert again[0] - again[1] < (before[0] - before[1]) / 2, (before, again)
        assert not page.errors, page.errors


def lasso(page, canvas, points):
    box = canvas.bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()
    page.wait_for_timeout(200)


@MODES
def test_lasso_and_bucket_fill(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        # Lasso (L): a triangle, closed on release; about half of its 8 x 8 cell square.
        page.locator(".ja-rc-add").first.click()  # a click in the editor gives it the keyboard
        page.keyboard.press("l")
        lasso(page, canvas, [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)])
        triangle = drawn_cells(canvas_value(page, node_id))[0]
        assert 24 <= int(triangle.sum()) <= 40, int(triangle.sum())
        assert bool(triangle[1, 1]) and not bool(triangle[7, 7]) and not bool(triangle[8:, :].any())
        # Fill (K) with a new region: the empty area around the triangle, up to it.
        page.locator(".ja-rc-add").first.click()
        page.keyboard.press("k")
        click_at(page, canvas, 0.75, 0.75)
        first, filled = drawn_cells(canvas_value(page, node_id))
        assert int(filled.sum()) == 256 - int(first.sum()) and not bool((first & filled).any())
        # A click inside the filled area: nothing more to fill, and the status says so.
        click_at(page, canvas, 0.75, 0.75)
        assert "already in" in page.locator(".ja-rc-status").first.inner_text()
        # Both undo (Ctrl+Z) and redo with either key.
        page.keyboard.press("Control+z")
        assert int(drawn_cells(canvas_value(page, node_id))[1].sum()) == 0
        page.keyboard.press("Control+y")
        assert int(drawn_cells(canvas_value(page, node_id))[1].sum()) == int(filled.sum())
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+Shift+z")
        assert int(drawn_cells(canvas_value(page, node_id))[1].sum()) == int(filled.sum())
        assert not page.errors, page.errors


def doc_shortcuts():
    section = DOCS.read_text(encoding="utf-8").split("## Shortcuts")[1].split("\n## ")[0]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| key |")]


@MODES
def test_symbol_tool_buttons_fit_and_the_help_is_the_docs_list(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = page.evaluate("""() => { const n = LiteGraph.createNode('JointAttentionRegionCanvas'); n.pos = [150, 220];
            app.graph.add(n); app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); return n.id; }""")
        page.wait_for_function("(id) => (app.graph.getNodeById(id)?.jaRegionEditor?.canvas.getBoundingClientRect().width ?? 0) > 16",
                               arg=node_id, timeout=30000, polling=250)
        page.wait_for_timeout(500)
        tools = page.evaluate("""(id) => [...app.graph.getNodeById(id).jaRegionEditor.root.querySelectorAll('.ja-rc-tool')]
            .map(b => [b.textContent, b.title])""", node_id)
        assert [t[1].split(" (")[0].split(":")[0] for t in tools] == ["Select", "Rectangle", "Brush", "Eraser", "Lasso", "Fill"]
        assert all(len(text) == 1 for text, _ in tools), tools  # one symbol each; the tooltip names it and its key
        assert [t[1][-3:] for t in tools] == ["(V)", "(R)", "(B)", "(E)", "(L)", "(K)"]
        # The toolbar fits the default node: nothing of it lies right of the node's drawing.
        overflow = page.evaluate("""(id) => { const root = app.graph.getNodeById(id).jaRegionEditor.root;
            const right = root.getBoundingClientRect().right + 0.5;
            return [...root.querySelectorAll('.ja-rc-toolbar > *')].filter(e => e.offsetParent !== null
              && e.getBoundingClientRect().right > right).map(e => e.className + ' ' + e.textContent); }""", node_id)
        assert not overflow, overflow
        page.locator(".ja-rc button", has_text="?").first.click()
        help_rows = page.evaluate("""() => [...document.querySelectorAll('.ja-rc-help > div')]
            .map(d => [d.querySelector('kbd').textContent, d.textContent.slice(d.querySelector('kbd').textContent.length + 1)])""")
        assert help_rows == doc_shortcuts()
        assert not page.errors, page.errors
