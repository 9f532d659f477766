"""Issue 32: a region's LoRA chosen in its Region Canvas row. The row's L button opens a picker listing the server's
loras folder; the choice is saved in the canvas value (only when set), survives saving and reloading the workflow, and
keeps the row's head one line, with classic and Vue nodes."""
import json

import pytest

from ja_browser import MODES, add_canvas, canvas_value, drag, node_rendering

pytestmark = pytest.mark.browser
LORAS = ("fox_style.safetensors", "bird_style.safetensors")


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory):
    """The real server with a loras folder holding two files (only listed here: nothing runs them)."""
    from ja_server import ComfyServer

    folder = tmp_path_factory.mktemp("loras")
    for name in LORAS:
        (folder / name).write_bytes(b"{}")
    config = tmp_path_factory.mktemp("config") / "loras.yaml"
    config.write_text(f"ja_canvas_lora:\n    loras: {folder}\n")
    with ComfyServer(output_dir=tmp_path_factory.mktemp("out"), extra_args=["--extra-model-paths-config", str(config)]) as server:
        yield server


def _head_lines(page):
    tops = page.locator(".ja-rc-region-head").first.evaluate("h => [...h.children].map(c => c.getBoundingClientRect().top)")
    return max(tops) - min(tops)


@MODES
def test_a_lora_picked_in_a_row_is_saved_and_holds_after_reloading_the_workflow(lora_server, vue):
    with node_rendering(lora_server, vue) as page:
        node_id = add_canvas(page)
        drag(page, page.locator(".ja-rc-canvas").first, 0.1, 0.1, 0.6, 0.6)
        page.locator(".ja-rc-prompt").first.fill("a fox")
        plain = canvas_value(page, node_id)
        assert "lora" not in plain
        button = page.locator(".ja-rc-lora").first
        assert _head_lines(page) < 8  # the L button keeps the head one line in the default node
        button.click()
        picker = page.locator(".ja-rc-lora-picker").first
        picker.wait_for(state="visible", timeout=5000)
        page.wait_for_function("() => document.querySelectorAll('.ja-rc-lora-name option').length === 3", timeout=10000)
        assert picker.locator("option").all_inner_texts() == ["no LoRA", *sorted(LORAS)]
        picker.locator(".ja-rc-lora-name").select_option(LORAS[0])
        strength = picker.locator(".ja-rc-lora-strength")
        strength.fill("0.65")
        strength.press("Tab")
        value = json.loads(canvas_value(page, node_id))
        assert value["regions"][0]["lora"] == {"name": LORAS[0], "strength": 0.65}
        assert "on" in button.get_attribute("class").split() and LORAS[0] in button.get_attribute("title")
        picker.locator("button").click()  # closed: the row is its one-line head and prompt again
        assert page.locator(".ja-rc-lora-picker").count() == 0 and _head_lines(page) < 8

        saved = page.evaluate("() => JSON.stringify(app.graph.serialize())")
        page.evaluate("async (wf) => { app.graph.clear(); await app.loadGraphData(JSON.parse(wf)); }", saved)
        page.wait_for_function("(id) => !!app.graph.getNodeById(id)?.jaRegionEditor", arg=node_id, timeout=30000)
        page.wait_for_timeout(500)
        reloaded = json.loads(canvas_value(page, node_id))
        assert reloaded == value
        button = page.locator(".ja-rc-lora").first
        assert "on" in button.get_attribute("class").split()
        button.click()
        picker = page.locator(".ja-rc-lora-picker").first
        page.wait_for_function("() => document.querySelectorAll('.ja-rc-lora-name option').length === 3", timeout=10000)
        assert picker.locator(".ja-rc-lora-name").input_value() == LORAS[0]
        assert picker.locator(".ja-rc-lora-strength").input_value() == "0.65"
        # "no LoRA" clears it: the value is again what it was before any LoRA was chosen.
        picker.locator(".ja-rc-lora-name").select_option("")
        assert canvas_value(page, node_id) == plain
        assert not [e for e in page.errors if "ja-rc" in e or "region" in e.lower()], page.errors
