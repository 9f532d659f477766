"""Issue 32, item 7 (part): invert, hiding a region from view only (apart from "off", which leaves it out of the
output), and pen pressure.

Each test runs with classic and with Vue node rendering and drives the editor with the mouse, the keyboard and
pointer events of a pen.
"""
import json

import pytest

from ja_browser import MODES, add_canvas, canvas_pixels, canvas_value, drag, drawn_cells, node_rendering

pytestmark = pytest.mark.browser
SIZE = 128  # 16 x 16 cells of 8 px


def shows_red_at(page, fx, fy):
    rgb = canvas_pixels(page, [(fx, fy)])[0]
    return rgb[0] - rgb[1] > 40  # region 1 is #e6194b over the grey canvas


def pen_stroke(page, pressure, y):
    """A horizontal pen stroke across the canvas at height `y` (a fraction), pressed at `pressure`: the browser's own
    pointer events of a pen (Chrome DevTools Protocol input, as a tablet driver delivers them)."""
    cdp = page.context.new_cdp_session(page)
    box = page.locator(".ja-rc-canvas").first.bounding_box()
    at = lambda fx: {"x": box["x"] + fx * box["width"], "y": box["y"] + y * box["height"]}  # noqa: E731
    pen = {"pointerType": "pen", "button": "left"}
    cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **at(0.2), "pointerType": "pen"})
    cdp.send("Input.dispatchMouseEvent", {"type": "mousePressed", **at(0.2), **pen, "clickCount": 1, "buttons": 1, "force": pressure})
    for i in range(1, 7):
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **at(0.2 + 0.1 * i), **pen, "buttons": 1, "force": pressure})
    cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", **at(0.8), **pen, "clickCount": 1, "buttons": 0})
    cdp.detach()
    page.wait_for_timeout(200)


@MODES
def test_invert_view_only_hide_and_pen_pressure(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.keyboard.press("r")
        drag(page, canvas, 0.0, 0.0, 0.5, 1.0)  # the left half
        assert int(drawn_cells(canvas_value(page, node_id))[0].sum()) == 128
        # Invert (I): the right half; Undo is offered.
        page.keyboard.press("i")
        inverted = drawn_cells(canvas_value(page, node_id))[0]
        assert int(inverted.sum()) == 128 and bool(inverted[:, 8:].all())
        assert "Inverted Region 1" in page.locator(".ja-rc-notice").first.inner_text()
        # Hidden from view only: gone from the canvas, still in use (not "off").
        page.wait_for_timeout(200)
        assert shows_red_at(page, 0.75, 0.5)
        page.locator(".ja-rc-eye").first.click()
        page.wait_for_timeout(300)
        assert not shows_red_at(page, 0.75, 0.5)
        region = json.loads(canvas_value(page, node_id))["regions"][0]
        assert region["viewHidden"] is True and region["hidden"] is False
        assert len(drawn_cells(canvas_value(page, node_id))) == 1  # the masks output still has it
        page.locator(".ja-rc-eye").first.click()
        page.wait_for_timeout(300)
        assert shows_red_at(page, 0.75, 0.5)
        # Pen pressure: a light stroke is narrower than a firm one (brush 48 px, snapping off).
        page.locator(".ja-rc-region").nth(0).locator("button[title^='Remove']").click()
        page.keyboard.press("b")
        page.locator(".ja-rc-snap-box").first.uncheck()
        pen_stroke(page, 1.0, 0.25)
        page.locator(".ja-rc-add").first.click()
        pen_stroke(page, 0.25, 0.75)
        firm, light = drawn_cells(canvas_value(page, node_id))
        rows = lambda m: int(m.any(dim=1).sum())  # noqa: E731
        assert rows(firm) >= 5 and rows(light) <= 2, (rows(firm), rows(light))
        assert not page.errors, page.errors
