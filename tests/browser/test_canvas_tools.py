"""Issue 20, problems 5, 7, 8 and 9: selection, eraser and destructive actions; brush feedback; layout; look.

Each test runs with classic and with Vue node rendering and drives the editor with the mouse and keyboard.
"""
import json

import pytest

from ja_browser import MODES, add_canvas, canvas_pixels, canvas_value, click_at, drag, node_rendering

pytestmark = pytest.mark.browser


def masks(value):
    """Each region's 0/1 mask cells ([mh, mw] tensors) as the backend reads them."""
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [r.mask for r in regions]


def selected_rows(page):
    return page.evaluate("[...document.querySelectorAll('.ja-rc-region')].map(r => r.classList.contains('selected'))")


@MODES
def test_click_selects_the_region_under_the_pointer_eraser_acts_on_all_and_del_offers_undo(comfy_server, vue):
    """Problem 7: eraser/fill/clear/Del acted only on the selected region, clicking the canvas did not select,
    selection was a thin outline, Del cleared without confirmation."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.05, 0.05, 0.45, 0.45)
        page.locator(".ja-rc-add").first.click()
        drag(page, canvas, 0.55, 0.55, 0.95, 0.95)
        assert selected_rows(page) == [False, True]
        click_at(page, canvas, 0.25, 0.25)  # a click without dragging selects what is under it
        assert selected_rows(page) == [True, False]
        page.keyboard.press("v")  # the select tool
        click_at(page, canvas, 0.75, 0.75)
        assert selected_rows(page) == [False, True]
        row = page.locator(".ja-rc-region.selected").first
        assert row.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"  # more than an outline
        before = [int(m.sum()) for m in masks(canvas_value(page, node_id))]
        # The eraser with "all" ticked removes every region under it.
        page.keyboard.press("e")
        page.locator(".ja-rc-erase-all").first.check()
        page.locator(".ja-rc-size").first.evaluate("s => { s.value = 16; s.dispatchEvent(new Event('input')); }")
        drag(page, canvas, 0.1, 0.1, 0.9, 0.9, steps=20)
        after = [int(m.sum()) for m in masks(canvas_value(page, node_id))]
        assert after[0] < before[0] and after[1] < before[1], (before, after)
        # Del clears the selected region and offers Undo; the node is not deleted.
        nodes_before = page.evaluate("app.graph._nodes.length")
        page.keyboard.press("Delete")
        assert [int(m.sum()) for m in masks(canvas_value(page, node_id))] == [after[0], 0]
        notice = page.locator(".ja-rc-notice").first
        assert notice.is_visible() and "Cleared Region 2" in notice.inner_text()
        assert page.evaluate("app.graph._nodes.length") == nodes_before
        assert page.evaluate("(id) => !!app.graph.getNodeById(id)", node_id)
        notice.locator("button", has_text="Undo").click()
        assert [int(m.sum()) for m in masks(canvas_value(page, node_id))] == after
        # Removing a region offers Undo too.
        page.locator(".ja-rc-region").nth(0).locator("button[title^='Remove']").click()
        assert len(masks(canvas_value(page, node_id))) == 1
        page.locator(".ja-rc-notice button", has_text="Undo").first.click()
        assert [int(m.sum()) for m in masks(canvas_value(page, node_id))] == after


@MODES
def test_brush_size_cursor_and_snapping_no_moire_and_a_resize_keeps_the_shape(comfy_server, vue):
    """Problem 8: no size number, no brush cursor, snap for rectangles only, grid + checker moiré on an empty
    canvas, width/height changes stretched the drawing."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=1024)
        canvas = page.locator(".ja-rc-canvas").first
        # An empty 1024 px canvas at node size is one flat colour inside its border: no checker, no dense grid.
        inner = [(0.05 + 0.9 * i / 12, 0.05 + 0.9 * j / 12) for i in range(13) for j in range(13)]
        assert len({tuple(p) for p in canvas_pixels(page, inner)}) == 1
        page.evaluate(f"""() => {{ const n = app.graph.getNodeById({node_id});
            for (const name of ['width', 'height']) {{ const w = n.widgets.find(w => w.name === name); w.value = 128; w.callback?.(128); }} }}""")
        page.wait_for_timeout(300)
        page.locator(".ja-rc-add").first.click()
        page.locator(".ja-rc-tool[data-tool=brush]").first.click()
        size = page.locator(".ja-rc-size-value").first
        assert size.inner_text() == "48 px"
        click_at(page, canvas, 0.02, 0.98)  # a dot in the corner gives the canvas the keyboard focus
        page.keyboard.press("]")
        assert size.inner_text() == "56 px"
        page.keyboard.press("[")
        page.keyboard.press("[")
        assert size.inner_text() == "40 px"
        # The brush cursor: a ring of the brush's size around the pointer.
        box = canvas.bounding_box()
        ring = (0.5 + 20 / 128, 0.5)  # radius 20 image px to the right of the centre
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(200)
        with_cursor = canvas_pixels(page, [ring])[0]
        page.mouse.move(box["x"] + box["width"] + 200, box["y"] + box["height"] / 2)
        page.wait_for_timeout(200)
        without = canvas_pixels(page, [ring])[0]
        assert with_cursor != without
        # Snapping (off by default, G turns it on) squares brush strokes to the 16 px token grid: every 2x2 block of
        # 8 px cells is all or nothing.
        page.keyboard.press("Control+z")  # the corner dot
        assert masks(canvas_value(page, node_id))[0].sum() == 0
        assert not page.locator(".ja-rc-snap-box").first.is_checked()
        page.keyboard.press("g")
        assert page.locator(".ja-rc-snap-box").first.is_checked()
        drag(page, canvas, 0.2, 0.3, 0.8, 0.55, steps=12)
        m = masks(canvas_value(page, node_id))[0]
        blocks = m.reshape(8, 2, 8, 2).sum(dim=(1, 3))
        assert m.sum() > 8 and bool(((blocks == 0) | (blocks == 4)).all()), m
        # A width change keeps the drawing's shape: a square stays square (scaled to fit, centred).
        page.keyboard.press("r")
        page.locator(".ja-rc-add").first.click()
        page.keyboard.press("r")
        drag(page, canvas, 0.25, 0.25, 0.75, 0.75)
        square = masks(canvas_value(page, node_id))[1]
        assert tuple(square.nonzero().amax(0) - square.nonzero().amin(0)) == (7, 7)
        page.evaluate(f"""() => {{ const w = app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'width');
            w.value = 256; w.callback?.(256); }}""")
        page.wait_for_timeout(300)
        value = canvas_value(page, node_id)
        assert json.loads(value)["width"] == 256
        wide = masks(value)[1]
        rows, cols = wide.nonzero().amax(0) - wide.nonzero().amin(0)
        assert int(rows) == int(cols) == 7  # not stretched to 15 x 7
        assert "scaled to fit" in page.locator(".ja-rc-notice").first.inner_text()


@MODES
def test_prompt_boxes_strength_label_no_silent_clamp_and_visible_help(comfy_server, vue):
    """Problem 9: monospace two-row prompt boxes, an unlabelled strength box that silently clamped, help only as a
    tooltip."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        page.locator(".ja-rc-add").first.click()
        prompt = page.locator(".ja-rc-prompt").first
        style = prompt.evaluate("e => { const s = getComputedStyle(e); return [s.fontFamily, e.rows, e.clientHeight, parseFloat(s.lineHeight) || 16]; }")
        assert "monospace" not in style[0].lower()
        assert style[0] == page.locator(".ja-rc").first.evaluate("e => getComputedStyle(e.parentElement).fontFamily")
        assert style[1] >= 2 and style[2] >= 2 * style[3]
        label = page.locator(".ja-rc-field", has=page.locator(".ja-rc-strength")).first
        assert label.inner_text().strip() == "strength"
        strength = page.locator(".ja-rc-strength").first
        strength.fill("7")
        note = page.locator(".ja-rc-row-note").first
        assert note.is_visible() and "between 0 and 4" in note.inner_text()
        assert json.loads(canvas_value(page, node_id))["regions"][0]["strength"] == 1
        strength.fill("2.5")
        assert json.loads(canvas_value(page, node_id))["regions"][0]["strength"] == 2.5
        assert not note.is_visible()
        page.locator(".ja-rc-toolbar button", has_text="?").first.click()
        help_box = page.locator(".ja-rc-help").first
        assert help_box.is_visible() and "Ctrl+Z" in help_box.inner_text() and "brush" in help_box.inner_text()


@MODES
def test_the_second_region_row_is_visible_at_the_default_size_and_the_list_grows_with_the_node(comfy_server, vue):
    """Problem 5 (inside the node): at the default node size the second row hid under "+ Add region"; the list was
    capped at 180 px while the node had room. Since issue 32 item 3 the drawing takes the room and "+ Add region"
    sits above the list: at the default size the first row shows whole and the list scrolls to the second."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=1024)
        for _ in range(2):
            page.locator(".ja-rc-add").first.click()
        page.wait_for_timeout(300)
        rows = page.locator(".ja-rc-region")
        add, root = page.locator(".ja-rc-add").first.bounding_box(), page.locator(".ja-rc").first.bounding_box()
        for i in range(2):
            rows.nth(i).evaluate("r => { const l = r.closest('.ja-rc-list'); l.scrollTop += (r.getBoundingClientRect().top - l.getBoundingClientRect().top) * l.offsetHeight / l.getBoundingClientRect().height; }")
            row = rows.nth(i).bounding_box()
            assert row["y"] >= add["y"] + add["height"] - 1, (i, row, add)  # never under the button
            assert row["y"] + row["height"] <= root["y"] + root["height"] + 1, (i, row, root)
        # Each row's head (colour, visibility, name, strength, feather and its buttons) is one line at this size.
        heads = page.locator(".ja-rc-region-head").evaluate_all("hs => hs.map(h => [...h.children].map(c => c.getBoundingClientRect().top))")
        assert all(max(tops) - min(tops) < 8 for tops in heads), heads
        canvas_box = page.locator(".ja-rc-canvas").first.bounding_box()
        for _ in range(5):  # the button may be below the window by now (Vue nodes grow): press it where it is
            page.locator(".ja-rc-add").first.evaluate("b => b.click()")
        assert page.locator(".ja-rc-canvas").first.bounding_box() == canvas_box  # adding regions never moves the canvas
        prompt = page.locator(".ja-rc-prompt").first
        small = prompt.bounding_box()
        if not vue:
            page.evaluate(f"() => {{ app.graph.getNodeById({node_id}).setSize([640, 1500]); app.canvas.setDirty(true, true); }}")
            page.wait_for_timeout(500)
            assert page.locator(".ja-rc-list").first.bounding_box()["height"] > 300
            # The prompt boxes grow with the node: wider, and taller where the list has room (7 rows in 1500 px).
            big = prompt.bounding_box()
            assert big["width"] > small["width"] + 100 and big["height"] > small["height"] + 10, (small, big)
        else:
            # Vue nodes grow with their content: the list shows every row, none is scrolled away.
            assert page.locator(".ja-rc-list").first.bounding_box()["height"] > 300
            assert page.locator(".ja-rc-list").first.evaluate("l => l.scrollHeight <= l.clientHeight + 1")


@MODES
def test_the_example_workflows_have_no_overlapping_nodes_and_the_canvas_its_default_size(comfy_server, vue):
    """Problem 5: the example workflow's canvas overlapped the prompt nodes (classic and Vue), and was loaded at a
    size that hid the second region row. Every example is checked: node rectangles as the frontend lays them out."""
    from ja_workflows import EXAMPLES, load

    with node_rendering(comfy_server, vue) as page:
        fresh = page.evaluate("() => { const n = LiteGraph.createNode('JointAttentionRegionCanvas'); return [...n.size]; }")
        for path in sorted(EXAMPLES.glob("*.json")):
            page.evaluate("async (wf) => { await app.loadGraphData(wf); }", load(path.name))
            page.wait_for_timeout(1500)  # Vue nodes measure their content after mounting
            rects = page.evaluate("""() => app.graph._nodes.map(n => {
                const b = n.getBounding(); return [n.id, n.type, b[0], b[1], b[2], b[3], n.size[0], n.size[1]]; })""")
            overlaps = [(a[:2], b[:2]) for i, a in enumerate(rects) for b in rects[i + 1:]
                        if a[2] < b[2] + b[4] and b[2] < a[2] + a[4] and a[3] < b[3] + b[5] and b[3] < a[3] + a[5]]
            assert overlaps == [], (path.name, overlaps)
            if path.name == "regional_canvas_flux.json":
                canvas = next(r for r in rects if r[1] == "JointAttentionRegionCanvas")
                # At least the size a new canvas node gets (the second region row and the list fit at that size).
                assert canvas[6] >= fresh[0] - 1 and canvas[7] >= fresh[1] - 1, (canvas, fresh)
                if not vue:
                    for _ in range(2):
                        page.locator(".ja-rc-add").first.evaluate("b => b.click()")
                    page.evaluate("app.canvas.setDirty(true, true)")
                    page.wait_for_timeout(300)
                    rows, add = page.locator(".ja-rc-region"), page.locator(".ja-rc-add").first.bounding_box()
                    root = page.locator(".ja-rc").first.bounding_box()
                    # The list scrolls to the second row, below "+ Add region" and inside the editor (issue 32 item 3).
                    rows.nth(1).evaluate("r => { const l = r.closest('.ja-rc-list'); "
                                         "l.scrollTop += (r.getBoundingClientRect().top - l.getBoundingClientRect().top) * l.offsetHeight / l.getBoundingClientRect().height; }")
                    second = rows.nth(1).bounding_box()
                    assert second["y"] >= add["y"] + add["height"] - 1, (second, add)
                    assert second["y"] + second["height"] <= root["y"] + root["height"] + 1, (second, root)
