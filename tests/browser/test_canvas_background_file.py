"""Issue 32, item 6: a background from a file ("Background…") or dropped on the drawing, inside the editor, with no
wired image and no run; kept with the workflow as the background of a run is.

Each test runs with classic and with Vue node rendering.
"""
import base64
import io
import json

import pytest

from ja_browser import MODES, add_canvas, node_rendering

pytestmark = pytest.mark.browser


def picture(tmp_path, colour, name):
    from PIL import Image

    path = tmp_path / name
    Image.new("RGB", (64, 64), colour).save(path)
    return path


def centre_colour(page):
    return page.evaluate("""() => { const c = document.querySelector('.ja-rc-canvas');
        return [...c.getContext('2d').getImageData(Math.floor(c.width / 2), Math.floor(c.height / 2), 1, 1).data].slice(0, 3); }""")


def wait_for_background(page, node_id, filename_part):
    page.wait_for_function("""([id, part]) => { const n = app.graph.getNodeById(id);
        return n.jaRegionEditor.background?.complete && n.properties?.ja_background?.filename.includes(part); }""",
                           arg=[node_id, filename_part], timeout=20000)
    page.wait_for_timeout(300)


@MODES
def test_a_background_chosen_or_dropped_in_the_editor_shows_and_is_saved_with_the_workflow(comfy_server, vue, tmp_path):
    green = picture(tmp_path, (20, 200, 40), "green field.png")
    blue = picture(tmp_path, (30, 60, 220), "blue.png")
    with node_rendering(comfy_server, vue) as page:
        node_id = add_canvas(page, size=128)
        nodes = page.evaluate("app.graph._nodes.length")
        # From a file, with the toolbar's button.
        with page.expect_file_chooser() as chooser:
            page.locator(".ja-rc-toolbar button[title^='Background']").first.click()
        chooser.value.set_files(str(green))
        wait_for_background(page, node_id, "green_field")
        ref = page.evaluate(f"app.graph.getNodeById({node_id}).properties.ja_background")
        assert ref["type"] == "input" and ref["subfolder"] == "joint_attention_canvas"
        r, g, b = centre_colour(page)
        assert g > r + 60 and g > b + 60, (r, g, b)
        # Dropped on the drawing: it replaces the first, and the page does not take the file as a workflow.
        data = base64.b64encode(blue.read_bytes()).decode()
        page.evaluate("""(data) => { const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const dt = new DataTransfer(); dt.items.add(new File([bytes], 'blue.png', {type: 'image/png'}));
            const canvas = document.querySelector('.ja-rc-canvas');
            for (const type of ['dragenter', 'dragover', 'drop'])
              canvas.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true})); }""", data)
        wait_for_background(page, node_id, "blue")
        r, g, b = centre_colour(page)
        assert b > r + 60 and b > g + 60, (r, g, b)
        assert page.evaluate("app.graph._nodes.length") == nodes
        assert page.evaluate(f"!!app.graph.getNodeById({node_id})")
        # Saved with the workflow: loading it again shows the picture without a run.
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        node = next(n for n in json.loads(saved)["nodes"] if n["type"] == "JointAttentionRegionCanvas")
        assert "blue" in node["properties"]["ja_background"]["filename"]
        page.evaluate("() => app.graph.clear()")
        page.evaluate("async (wf) => { await app.loadGraphData(JSON.parse(wf)); }", saved)
        page.evaluate("() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }")
        wait_for_background(page, node_id, "blue")
        # A file that is not a picture is refused with a message.
        with page.expect_file_chooser() as chooser:
            page.locator(".ja-rc-toolbar button[title^='Background']").first.click()
        chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": io.BytesIO(b"hello").getvalue()}])
        page.wait_for_timeout(300)
        assert "not a picture" in page.locator(".ja-rc-status").first.inner_text()
        assert not page.errors, page.errors
