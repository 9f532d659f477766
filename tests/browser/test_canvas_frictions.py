"""Issue 32 item 8: the small frictions.

The brush-size slider had no label and its readout wrapped; "all" (the eraser on every region) was cryptic; the
full-window editor had no zoom level or buttons and zoomed 1.4x per wheel tick; the frontend's banner showed through
its overlay; tool and brush size went back to their defaults on a reload.
"""
import pytest

from ja_browser import MODES, add_canvas, node_rendering, open_app

pytestmark = pytest.mark.browser


@MODES
def test_labelled_controls_a_zoom_you_can_see_and_choices_that_outlive_a_reload(comfy_server, vue):
    with node_rendering(comfy_server, vue) as page:
        add_canvas(page)
        size = page.locator(".ja-rc-size").first
        label = size.evaluate("e => e.closest('label')?.innerText.trim() ?? ''")
        assert label.startswith("size"), label
        out = page.locator(".ja-rc-size-value").first.bounding_box()
        slider = size.bounding_box()
        assert abs((out["y"] + out["height"] / 2) - (slider["y"] + slider["height"] / 2)) < 6  # on the slider's line
        assert page.locator(".ja-rc-erase-all").first.evaluate("e => e.closest('label').innerText.trim()") == "erase all"

        page.locator(".ja-rc-tool[data-tool=brush]").first.click()
        size.fill("96")
        page.locator(".ja-rc button[title^='Full-window']").first.click()
        page.wait_for_timeout(300)
        zoom = page.locator(".ja-rc-overlay .ja-rc-zoom-value")
        assert zoom.is_visible() and zoom.inner_text() == "100%"
        # Nothing of the page shows through the overlay, the frontend's top bar and banner included.
        for x, y in ((750, 5), (750, 20), (5, 5), (1490, 1090)):
            assert page.evaluate(f"!!document.elementFromPoint({x}, {y})?.closest('.ja-rc-overlay')"), (x, y)
        page.locator(".ja-rc-overlay button[title^='Zoom in']").click()
        assert zoom.inner_text() == "115%"
        page.keyboard.press("-")
        assert zoom.inner_text() == "100%"
        box = page.locator(".ja-rc-overlay .ja-rc-canvas").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -400)  # one coarse tick
        page.wait_for_timeout(300)
        assert zoom.inner_text() == "115%"
        zoom.click()  # back to fit
        assert zoom.inner_text() == "100%"
        page.keyboard.press("Escape")
        assert not page.locator(".ja-rc-zoom").first.is_visible()  # only in the full-window editor

        # A reload: a new canvas starts with the tool and brush size chosen last.
        page.reload()
        open_app(page, comfy_server)
        page.evaluate("app.graph.clear()")
        node_id = add_canvas(page)
        editor = f"app.graph.getNodeById({node_id}).jaRegionEditor"
        assert page.evaluate(f"[{editor}.tool, {editor}.brush]") == ["brush", 96]
        assert page.locator(".ja-rc-size-value").first.inner_text() == "96 px"
        assert page.locator(".ja-rc-tool.active").first.get_attribute("data-tool") == "brush"
