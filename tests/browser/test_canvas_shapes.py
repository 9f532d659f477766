"""Issue 32, item 4: shapes that can be corrected. New shapes start a new region unless the user asks to add them to
the selected one; the Select tool moves, resizes (handles) and deletes the selected region's shape; regions have
names the user gives them, which stay with them when the list is reordered and are saved in the workflow.

Each test runs with classic and with Vue node rendering and drives the editor with the mouse and keyboard.
"""
import json

import pytest

from ja_browser import MODES, add_canvas, canvas_value, drag, drawn_cells, node_rendering, readme_images

pytestmark = pytest.mark.browser
SIZE = 128  # 16 x 16 cells of 8 px


def box(mask):
    """[x0, y0, x1, y1] in cells (x1, y1 exclusive)."""
    ys, xs = mask.nonzero(as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def names(page, node_id):
    """The regions' names as saved: a name its place gives ("Region 2" second) is left out of the value and read back."""
    regions = json.loads(canvas_value(page, node_id))["regions"]
    return [r.get("name", f"Region {i + 1}") for i, r in enumerate(regions)]


@MODES
def test_a_new_shape_starts_a_new_region_unless_shift_or_add_to_selected(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.keyboard.press("r")
        drag(page, canvas, 0.05, 0.05, 0.3, 0.3)
        drag(page, canvas, 0.6, 0.6, 0.9, 0.9)  # on main this box went silently into region 1
        value = canvas_value(page, node_id)
        assert len(drawn_cells(value)) == 2 and names(page, node_id) == ["Region 1", "Region 2"]
        assert page.locator(".ja-rc-region").count() == 2
        assert page.evaluate("[...document.querySelectorAll('.ja-rc-region')].map(r => r.classList.contains('selected'))") == [False, True]
        page.keyboard.down("Shift")  # Shift: into the selected region
        drag(page, canvas, 0.6, 0.05, 0.9, 0.3)
        page.keyboard.up("Shift")
        got = drawn_cells(canvas_value(page, node_id))
        assert len(got) == 2 and box(got[1]) == [10, 1, 14, 14]  # cells whose centres the box holds (no snapping)
        page.keyboard.press("a")  # "add to selected" on
        assert page.locator(".ja-rc-add-to").first.is_checked()
        drag(page, canvas, 0.05, 0.6, 0.3, 0.9)
        got = drawn_cells(canvas_value(page, node_id))
        assert len(got) == 2 and box(got[1]) == [1, 1, 14, 14]
        page.keyboard.press("a")
        # The brush: a stroke starting on the selected region adds to it, one starting off it starts a new region.
        page.keyboard.press("b")
        drag(page, canvas, 0.75, 0.75, 0.75, 0.5)
        assert len(drawn_cells(canvas_value(page, node_id))) == 2
        drag(page, canvas, 0.45, 0.1, 0.45, 0.4)
        assert len(drawn_cells(canvas_value(page, node_id))) == 3
        assert not page.errors, page.errors


@MODES
def test_the_select_tool_moves_resizes_and_deletes_the_selected_shape(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.keyboard.press("r")
        drag(page, canvas, 0.125, 0.125, 0.375, 0.375)  # image pixels 16-48: cells 2-5
        assert box(drawn_cells(canvas_value(page, node_id))[0]) == [2, 2, 6, 6]
        page.keyboard.press("v")
        # Move: a drag inside the box, 32 px right and 16 px down (whole token squares while snapping).
        drag(page, canvas, 0.25, 0.25, 0.5, 0.375, steps=6)
        moved = drawn_cells(canvas_value(page, node_id))[0]
        assert box(moved) == [6, 4, 10, 8] and int(moved.sum()) == 16
        # Resize: the lower right handle, dragged 32 px further out; the cells are stretched.
        drag(page, canvas, 80 / SIZE, 64 / SIZE, 112 / SIZE, 96 / SIZE, steps=6)
        grown = drawn_cells(canvas_value(page, node_id))[0]
        assert box(grown) == [6, 4, 14, 12] and int(grown.sum()) == 64
        if not vue:  # the manual's picture of the Select tool's handles (docs/canvas.md)
            images = readme_images()  # scripts/readme_images.py: where its pictures are kept
            page.mouse.move(1400, 1000)  # the pointer off the node
            page.wait_for_timeout(300)
            node = page.locator(".ja-rc").first.bounding_box()
            images.ARTIFACTS.mkdir(parents=True, exist_ok=True)
            drawing = canvas.bounding_box()
            page.screenshot(path=str(images.ARTIFACTS / "region_canvas_handles.png"), clip={  # the toolbar and the drawing
                "x": node["x"] - 12, "y": node["y"] - 12, "width": node["width"] + 24,
                "height": drawing["y"] + drawing["height"] - node["y"] + 24})
            readme_images().refresh("region_canvas_handles.png")
        # The upper left handle, dragged inwards.
        drag(page, canvas, 48 / SIZE, 32 / SIZE, 80 / SIZE, 64 / SIZE, steps=6)
        assert box(drawn_cells(canvas_value(page, node_id))[0]) == [10, 8, 14, 12]
        # Undo steps back through the edits; Del deletes the shape (the region stays, Undo is offered).
        page.keyboard.press("Control+z")
        assert box(drawn_cells(canvas_value(page, node_id))[0]) == [6, 4, 14, 12]
        page.keyboard.press("Delete")
        assert int(drawn_cells(canvas_value(page, node_id))[0].sum()) == 0
        assert "Cleared Region 1" in page.locator(".ja-rc-notice").first.inner_text()
        assert not page.errors, page.errors


@MODES
def test_a_renamed_region_keeps_its_name_through_reorder_and_in_the_saved_workflow(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=SIZE)
        canvas = page.locator(".ja-rc-canvas").first
        page.keyboard.press("r")
        drag(page, canvas, 0.05, 0.05, 0.3, 0.3)
        drag(page, canvas, 0.6, 0.6, 0.9, 0.9)
        page.locator(".ja-rc-name").nth(0).dblclick()
        field = page.locator(".ja-rc-rename").first
        field.fill("sky")
        field.press("Enter")
        assert names(page, node_id) == ["sky", "Region 2"]
        page.locator(".ja-rc-region").nth(0).locator("button[title='Move down']").click()
        assert names(page, node_id) == ["Region 2", "sky"]  # on main the rows were renumbered
        assert page.locator(".ja-rc-name").all_inner_texts() == ["Region 2", "sky"]
        assert page.locator(".ja-rc-prompt").nth(1).get_attribute("placeholder") == "sky prompt"
        # Esc leaves the name as it was.
        page.locator(".ja-rc-name").nth(0).dblclick()
        page.locator(".ja-rc-rename").first.fill("ground")
        page.locator(".ja-rc-rename").first.press("Escape")
        assert names(page, node_id) == ["Region 2", "sky"]
        # Saved with the workflow, and shown again when it is loaded.
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        assert '\\"name\\":\\"sky\\"' in saved
        page.evaluate("(w) => app.loadGraphData(JSON.parse(w))", saved)
        page.wait_for_timeout(1000)
        assert page.locator(".ja-rc-name").all_inner_texts() == ["Region 2", "sky"]
        assert not page.errors, page.errors
