"""Issue 32 item 3: a drawing area you can work in, notices that get out of the way, every control reachable.

In the default classic node (420 x 560 at 100 %, now 420 x 600) the drawing was about 160 px square; undo notices never went away
and stacked above the canvas with the background note, shrinking it further and pushing "+ Add region" below the
node's edge, where it could not be clicked.
"""
import pytest

from ja_browser import MODES, node_rendering

pytestmark = pytest.mark.browser

ADD_DEFAULT_NODE = """() => { const n = LiteGraph.createNode('JointAttentionRegionCanvas'); n.pos = [150, 220]; app.graph.add(n);
    app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); return n.id; }"""

# The node's body on screen: the Vue node's element, or the classic node's rectangle under the graph's transform.
NODE_RECT = """(id) => { const vue = document.querySelector(`[data-node-id="${id}"]`);
    if (vue) { const r = vue.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
    const n = app.graph.getNodeById(id); const c = app.canvas.canvas.getBoundingClientRect(); const ds = app.canvas.ds;
    const x = c.left + (n.pos[0] + ds.offset[0]) * ds.scale, y = c.top + (n.pos[1] + ds.offset[1]) * ds.scale;
    return [x, y, x + n.size[0] * ds.scale, y + n.size[1] * ds.scale]; }"""

# Every visible control of the editor: [description, inside the node, the topmost element at its centre is it].
CONTROLS = """([id, rect]) => { const root = app.graph.getNodeById(id).jaRegionEditor.root;
    return [...root.querySelectorAll('button, input, textarea:not(.ja-rc-keys), canvas')]
      .filter(e => e.offsetParent !== null && e.type !== 'file')
      .map(e => { const list = e.closest('.ja-rc-list'), row = e.closest('.ja-rc-region');
        if (list && row) list.scrollTop += (row.getBoundingClientRect().top - list.getBoundingClientRect().top)
          * list.offsetHeight / list.getBoundingClientRect().height;  // the list scrolls (in its unscaled pixels)
        const r = e.getBoundingClientRect(); const x = r.left + r.width / 2, y = r.top + r.height / 2;
        const hit = document.elementFromPoint(x, y);
        return [`${e.tagName.toLowerCase()}.${e.className} ${e.title || e.textContent || ''}`.slice(0, 80),
                x >= rect[0] && x <= rect[2] && y >= rect[1] && y <= rect[3], !!hit && (hit === e || e.contains(hit) || hit.contains(e))]; }); }"""


def canvas_box(page, node_id):
    return page.evaluate("(id) => { const r = app.graph.getNodeById(id).jaRegionEditor.canvas.getBoundingClientRect(); "
                         "return [r.width, r.height]; }", node_id)


def assert_every_control_reachable(page, node_id):
    page.evaluate("() => app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    rect = page.evaluate(NODE_RECT, node_id)
    controls = page.evaluate(CONTROLS, [node_id, rect])
    assert len(controls) > 15, controls
    unreachable = [name for name, inside, on_top in controls if not (inside and on_top)]
    assert not unreachable, unreachable


@MODES
def test_the_default_node_draws_large_and_keeps_every_control_reachable_with_notices(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        node_id = page.evaluate(ADD_DEFAULT_NODE)
        page.wait_for_function("(id) => (app.graph.getNodeById(id)?.jaRegionEditor?.canvas.getBoundingClientRect().width ?? 0) > 16",
                               arg=node_id, timeout=30000, polling=250)
        page.wait_for_timeout(500)
        if not vue:
            size = page.evaluate(f"Array.from(app.graph.getNodeById({node_id}).size)")
            assert 420 <= size[0] <= 520 and 560 <= size[1] <= 640, size  # the default node
        width, height = canvas_box(page, node_id)
        assert min(width, height) >= 240, (width, height)  # was about 160 in the classic node
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        # An undo offer, a background note and another undo offer: the drawing keeps its size, the controls their place.
        page.locator(".ja-rc button", has_text="Fill").first.click()
        page.evaluate(f"{editor}.setBackground({{filename: 'ja_not_there.png', subfolder: '', type: 'input'}})")
        page.locator(".ja-rc-bg-note").first.wait_for(state="visible", timeout=10000)
        page.locator(".ja-rc button", has_text="Clear").first.click()
        assert page.locator(".ja-rc-notice").first.is_visible()
        assert canvas_box(page, node_id) == [width, height]
        assert_every_control_reachable(page, node_id)
        page.locator(".ja-rc-add").first.click()
        assert page.locator(".ja-rc-region").count() == 2
        # The undo offer goes by itself (Ctrl+Z still undoes).
        page.mouse.move(1400, 1000)
        page.wait_for_timeout(9000)
        assert page.locator(".ja-rc-notice").first.is_hidden()
        # At the node's smallest size every control is still inside it and clickable (the region list scrolls).
        if not vue:
            page.evaluate(f"() => {{ const n = app.graph.getNodeById({node_id}); n.setSize(n.computeSize()); }}")
            size = page.evaluate(f"Array.from(app.graph.getNodeById({node_id}).size)")
            assert size[0] >= 400, size
            assert_every_control_reachable(page, node_id)
