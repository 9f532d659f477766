"""Issue 20, problems 1-4: undo that belongs to the canvas, edits committed as they happen, no lost drawings.

Each test runs with classic and with Vue node rendering, drives the editor with the mouse and keyboard and checks
the widget value (what a queued prompt sends) or what the backend received.
"""
import json

import pytest

from ja_browser import (
    MODES,
    add_canvas,
    canvas_pixels,
    canvas_value,
    drag,
    graph_undo,
    let_history_settle,
    node_rendering,
    record_graph_state,
    set_canvas_value,
    wait_for_history,
)

pytestmark = pytest.mark.browser


def covered(value):
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [int((r.mask > 0).sum().item()) for r in regions]


def node_count(page):
    return page.evaluate("app.graph._nodes.length")


@MODES
def test_ctrl_z_in_the_canvas_undoes_the_drawing_and_graph_undo_restores_the_previous_drawing(comfy_server, vue):
    """Problem 1: Ctrl+Z / Ctrl+Y / Ctrl+Shift+Z with the canvas focused act on the drawing and stop there; each
    finished stroke is one step of ComfyUI's own history, so its undo restores the previous drawing."""
    with node_rendering(comfy_server, vue) as page:
        other = page.evaluate("() => { const n = LiteGraph.createNode('EmptyImage'); n.pos = [700, 80]; app.graph.add(n); return n.id; }")
        node_id = add_canvas(page)
        record_graph_state(page)
        canvas = page.locator(".ja-rc-canvas").first
        page.locator(".ja-rc-tool[data-tool=brush]").first.click()
        page.locator(".ja-rc-size").first.fill("64")  # a brush size of its own: a graph undo must not reset it
        page.locator(".ja-rc-tool[data-tool=rect]").first.click()
        drag(page, canvas, 0.1, 0.1, 0.4, 0.4)
        one = canvas_value(page, node_id)
        page.keyboard.down("Shift")  # the second box goes into region 1
        drag(page, canvas, 0.5, 0.5, 0.9, 0.9)
        page.keyboard.up("Shift")
        two = canvas_value(page, node_id)
        assert covered(two)[0] > covered(one)[0]
        page.keyboard.press("Control+z")
        page.wait_for_timeout(800)  # the frontend's change tracker acts a frame later
        assert canvas_value(page, node_id) == one
        assert node_count(page) == 2 and page.evaluate(f"!!app.graph.getNodeById({other})")
        assert page.evaluate(f"app.graph.getNodeById({node_id}).jaRegionEditor.tool") == "rect"  # tool not reset
        page.keyboard.press("Control+y")
        page.wait_for_timeout(800)
        assert canvas_value(page, node_id) == two
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+Shift+z")
        page.wait_for_timeout(800)
        assert canvas_value(page, node_id) == two
        # ComfyUI's undo (toolbar / menu / Ctrl+Z on the graph) steps back through the drawing too.
        page.locator(".ja-rc-tool[data-tool=brush]").first.click()  # a tool of its own: a graph undo keeps it
        page.mouse.click(1300, 900)  # the empty graph takes the focus
        graph_undo(page)
        assert canvas_value(page, node_id) == one
        assert node_count(page) == 2
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        assert page.evaluate(f"[{editor}.tool, {editor}.brush]") == ["brush", 64]  # tool and brush size kept
        assert page.locator(".ja-rc-size-value").first.inner_text() == "64 px"
        assert page.locator(".ja-rc-tool.active").first.get_attribute("data-tool") == "brush"
        graph_undo(page, redo=True)
        assert canvas_value(page, node_id) == two


def drawn_colour_at(page, node_id, fx, fy):
    """The RGB the editor shows at a point given as fractions of its canvas (what the user sees, not the value)."""
    return canvas_pixels(page, [(fx, fy)], node_id)[0][:3]


def shows_region_colour(rgb):
    # Region 1 is #e6194b (red) over the grey canvas #3a3a3a: red stands out only where the region is drawn.
    return rgb[0] - rgb[1] > 40


@MODES
def test_the_editor_survives_a_graph_undo(comfy_server, vue):
    """Problem 2: with Vue node rendering the editor vanished after a graph undo (only width/height were left).
    Issue 27: on frontend 1.49.6 the editor rebuilt by the undo must show and hold the drawing of the restored step."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        record_graph_state(page)
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.1, 0.1, 0.5, 0.5)
        let_history_settle(page)
        drawn = canvas_value(page, node_id)
        assert covered(drawn) and covered(drawn)[0] > 0
        page.evaluate(f"() => {{ app.graph.getNodeById({node_id}).pos = [160, 100]; }}")
        record_graph_state(page)
        page.mouse.click(1300, 900)
        graph_undo(page)
        assert [round(v) for v in page.evaluate(f"Array.from(app.graph.getNodeById({node_id}).pos)")] == [120, 80]  # the move was undone, only it
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        page.wait_for_function(f"{editor}.root.isConnected", timeout=5000)
        canvas = page.locator(".ja-rc-canvas").first
        canvas.wait_for(state="visible", timeout=5000)
        assert page.locator(".ja-rc").count() == 1
        assert canvas.bounding_box()["width"] > 100
        # The rebuilt editor holds the drawing (its value and its regions) and draws it where it was drawn.
        assert canvas_value(page, node_id) == drawn
        assert page.evaluate(f"{editor}.state.regions.map(r => r.bits.reduce((a, b) => a + b, 0))") == covered(drawn)
        page.wait_for_timeout(300)  # one animation frame draws it
        assert shows_region_colour(drawn_colour_at(page, node_id, 0.3, 0.3))
        assert not shows_region_colour(drawn_colour_at(page, node_id, 0.8, 0.8))
        drag(page, canvas, 0.6, 0.6, 0.9, 0.9)  # and it still draws
        assert sum(covered(canvas_value(page, node_id))) > sum(covered(drawn))


@MODES
def test_ctrl_enter_while_typing_a_prompt_queues_the_typed_text(comfy_server, vue):
    """Problem 3: prompts were saved only on blur, so Ctrl+Enter in the box queued the previous text."""
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        page.evaluate(f"""() => {{
            const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 80]; app.graph.add(clip);
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [700, 300]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0); canvasNode.connect(2, preview, 0); }}""")
        drag(page, page.locator(".ja-rc-canvas").first, 0.1, 0.1, 0.6, 0.6)
        prompt = page.locator(".ja-rc-prompt").first
        prompt.click()
        page.keyboard.type("a red barn")
        before = set(comfy_server.get("/history") or {})
        page.keyboard.press("Control+Enter")  # still typing: no blur, no change event
        entry = wait_for_history(comfy_server, before)
        received = json.loads(entry["prompt"][2][str(node_id)]["inputs"]["regions"])
        assert [r["prompt"] for r in received["regions"]] == ["a red barn"]
        assert prompt.evaluate("e => e === document.activeElement")  # the focus stayed in the box


@MODES
def test_an_over_long_prompt_is_refused_in_the_box_and_a_bad_field_never_costs_the_drawing(comfy_server, vue):
    """Problem 4: a 4,000+ character prompt was accepted in the box, then the whole drawing was discarded on reload."""
    from joint_attention_pack.nodes import canvas_state

    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page)
        canvas = page.locator(".ja-rc-canvas").first
        drag(page, canvas, 0.1, 0.1, 0.5, 0.9)
        prompt = page.locator(".ja-rc-prompt").first
        prompt.fill("x" * (canvas_state.MAX_PROMPT + 300))
        assert len(json.loads(canvas_value(page, node_id))["regions"][0]["prompt"]) <= canvas_state.MAX_PROMPT
        assert page.locator(".ja-rc-counter").first.inner_text() == f"{canvas_state.MAX_PROMPT} / {canvas_state.MAX_PROMPT}"
        assert page.locator(".ja-rc-status").first.inner_text().startswith("1 / 32 regions")

        # A saved value whose second region has a prompt over the limit: both regions load, the bad one is marked.
        mask = [1] * 8 + [0] * 248
        saved = json.loads(canvas_state.encode_value(128, 128, [
            {"prompt": "a red house", "mask": __import__("torch").tensor(mask)},
            {"prompt": "y" * 5000, "mask": __import__("torch").tensor(mask[::-1])}]))
        saved["regions"][0]["color"], saved["regions"][1]["color"] = "#e6194b", "#3cb44b"
        text = json.dumps(saved)
        set_canvas_value(page, node_id, text)
        assert page.locator(".ja-rc-region").count() == 2
        assert "prompt has 5000 characters" in page.locator(".ja-rc-problem").first.inner_text()
        assert page.locator(".ja-rc-region").nth(1).evaluate("e => e.classList.contains('ja-rc-bad-row')")
        assert "cannot be queued yet" in page.locator(".ja-rc-status").first.inner_text()
        value = json.loads(canvas_value(page, node_id))
        assert [r["mask"] for r in value["regions"]] == [r["mask"] for r in saved["regions"]]
        assert [r["prompt"] for r in value["regions"]] == ["a red house", "y" * 5000]  # kept for the user to shorten
        # Queueing it anyway gets one error naming the node, the input, the region and the limit (not the same
        # error over and over), and the drawing is still there afterwards.
        page.evaluate(f"""() => {{ const canvasNode = app.graph.getNodeById({node_id});
            const clip = LiteGraph.createNode('JATestTinyCLIP'); clip.pos = [700, 80]; app.graph.add(clip);
            const preview = LiteGraph.createNode('PreviewImage'); preview.pos = [700, 300]; app.graph.add(preview);
            clip.connect(0, canvasNode, 0); canvasNode.connect(2, preview, 0); }}""")
        answer = page.evaluate("""async () => { const p = await app.graphToPrompt();
            const r = await fetch('/prompt', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                body: JSON.stringify({ prompt: p.output }) });
            return [r.status, await r.json()]; }""")
        assert answer[0] == 400, answer
        errors = answer[1]["node_errors"][str(node_id)]["errors"]
        assert len(errors) == 1, errors
        assert "[Region Canvas] input 'regions': region 2" in errors[0]["details"] and "4000" in errors[0]["details"], errors
        assert [r["prompt"] for r in json.loads(canvas_value(page, node_id))["regions"]] == ["a red house", "y" * 5000]

        # A value that is not a drawing at all is kept as it is (not replaced) until the user starts anew.
        set_canvas_value(page, node_id, "{not json")
        assert canvas_value(page, node_id) == "{not json"
        assert "not JSON" in page.locator(".ja-rc-error").first.inner_text()
        drag(page, canvas, 0.1, 0.1, 0.5, 0.5)
        assert canvas_value(page, node_id) == "{not json"
        page.locator(".ja-rc-error button").first.click()
        assert json.loads(canvas_value(page, node_id))["regions"] == []
