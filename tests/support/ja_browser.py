"""Debian's Chromium driven by Playwright against the real ComfyUI frontend (no browser download)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest

# Browser tests run in both node renderings of the frontend: the classic canvas and the Vue nodes.
MODES = pytest.mark.parametrize("vue", [False, True], ids=["classic", "vue"])
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")


@contextmanager
def frontend(server, viewport=(1500, 1100)):
    """A page with ComfyUI's frontend loaded and its first-run dialogs switched off."""
    from playwright.sync_api import sync_playwright

    for setting, value in (("Comfy.TutorialCompleted", True), ("Comfy.Workflow.ShowMissingNodesWarning", True)):
        server.post(f"/settings/{setting}", value)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.errors = []
            page.on("pageerror", lambda err: page.errors.append(str(err)))
            open_app(page, server)
            yield page
        finally:
            browser.close()


def open_app(page, server):
    page.goto(server.base)
    page.wait_for_function("window.app && window.app.graph && window.app.extensions?.some(e => e.name === "
                           "'joint_attention.region_canvas')", timeout=90000)
    page.keyboard.press("Escape")  # any dialog left open


# -- Region Canvas helpers (public frontend APIs only: app, LiteGraph, node.widgets, app.extensionManager) --------
@contextmanager
def node_rendering(server, vue: bool):
    """The frontend with Vue node rendering on or off (the setting `Comfy.VueNodes.Enabled`)."""
    server.post("/settings/Comfy.VueNodes.Enabled", bool(vue))
    try:
        with frontend(server) as page:
            assert page.evaluate("app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled')") is bool(vue)
            page.evaluate("app.graph.clear()")  # not the default workflow
            yield page
    finally:
        server.post("/settings/Comfy.VueNodes.Enabled", False)


ADD_CANVAS = """([size, x, y]) => { const n = LiteGraph.createNode('JointAttentionRegionCanvas'); n.pos = [x, y]; app.graph.add(n);
  for (const name of ['width', 'height']) { const w = n.widgets.find(w => w.name === name); w.value = size; w.callback?.(size); }
  app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); return n.id; }"""


def add_canvas(page, size=128, pos=(120, 80)):
    node_id = page.evaluate(ADD_CANVAS, [size, pos[0], pos[1]])
    # The classic canvas positions DOM widgets when it draws a frame: ask for frames until the editor shows.
    page.wait_for_function("""(id) => { app.canvas.setDirty(true, true);
        const r = app.graph.getNodeById(id)?.jaRegionEditor?.canvas?.getBoundingClientRect();
        return !!r && r.width > 16 && r.height > 16; }""", arg=node_id, timeout=30000, polling=250)
    page.wait_for_timeout(400)
    return node_id


def canvas_value(page, node_id) -> str:
    return page.evaluate("(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'regions').value", node_id)


def set_canvas_value(page, node_id, value: str):
    page.evaluate("([id, v]) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'regions').value = v; }", [node_id, value])
    page.wait_for_timeout(300)


def canvas_pixels(page, points, node_id=None) -> list:
    """[r, g, b, a] the region editor's canvas shows at each (fx, fy), fractions of its size: what the user sees, not
    the value. The first editor on the page, or node `node_id`'s."""
    return page.evaluate("""([points, id]) => {
        const c = id === null ? document.querySelector('.ja-rc-canvas') : app.graph.getNodeById(id).jaRegionEditor.canvas;
        const ctx = c.getContext('2d');
        return points.map(([fx, fy]) => [...ctx.getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height), 1, 1).data]); }""",
                         [[list(p) for p in points], node_id])


def drawn_cells(value) -> list:
    """Each region's drawn cells ([mh, mw] booleans) in a canvas value, as the backend reads it."""
    from joint_attention_pack.nodes import canvas_state

    _, _, regions = canvas_state.parse(value)
    return [r.mask > 0 for r in regions]


def drag(page, canvas, fx0, fy0, fx1, fy1, steps=5, hold=False):
    """A mouse drag between two points given as fractions of the canvas element; `hold` leaves the button down."""
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"], steps=steps)
    if not hold:
        page.mouse.up()


def click_at(page, canvas, fx, fy):
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def record_graph_state(page):
    """Let ComfyUI's change tracker take its snapshot now (what it does after every mouse-up on the graph)."""
    page.evaluate("() => { app.canvas.emitBeforeChange(); app.canvas.emitAfterChange(); }")
    let_history_settle(page)


def let_history_settle(page):
    """Wait out the change tracker's squash: frontend 1.49 re-reads the graph 50 ms after a recorded step and folds
    any change made meanwhile into that step (a node moved by script right after a stroke became part of the
    stroke's step, so one graph undo took both back). A person's next action comes later than that."""
    page.wait_for_timeout(250)


def graph_undo(page, redo=False):
    """ComfyUI's own undo / redo command (the toolbar and menu call it), with the focus on the graph."""
    page.evaluate("(redo) => app.extensionManager.command.execute(redo ? 'Comfy.Redo' : 'Comfy.Undo')", redo)
    page.wait_for_timeout(1200)
    # The restored workflow brings its saved view along; put the graph back where the test's coordinates expect it.
    page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
    page.wait_for_timeout(300)


def wait_for_history(server, before: set, timeout=300):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        done = {pid: e for pid, e in (server.get("/history") or {}).items()
                if pid not in before and e.get("status", {}).get("completed") is not None}
        if done:
            return next(iter(done.values()))
        time.sleep(0.3)
    raise AssertionError("the queued prompt did not finish")


def readme_images():
    """scripts/readme_images.py (loaded by path: ComfyUI owns generic top-level names)."""
    import importlib.util
    import sys

    from ja_host import ROOT

    name = "_ja_readme_images"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "readme_images.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
