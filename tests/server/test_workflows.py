"""Example workflows: current, valid for the real server, and runnable with only the loaders swapped."""
import sys
from pathlib import Path

import pytest

from ja_host import ROOT
from ja_workflows import EXAMPLES, load, tiny_prompt, wf

pytestmark = pytest.mark.server

NAMES = ["regional_flux.json", "regional_sd3.json", "taca_flux.json", "text_scale_sd3.json", "regional_taca_flux.json",
         "regional_canvas_flux.json", "attention_maps_flux.json", "concept_segmentation_flux.json"]


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def test_every_example_is_listed_and_current(object_info):
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(NAMES)
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_workflows

    rendered = build_workflows.render(object_info)
    for name in NAMES:
        assert (EXAMPLES / name).read_text() == rendered[name], f"{name} is stale: run scripts/build_workflows.py"


@pytest.mark.parametrize("name", NAMES)
def test_example_loads_without_missing_nodes_or_widget_errors(object_info, name):
    workflow = load(name)
    assert wf.validate(workflow, object_info) == []
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert notes and len(notes[0]["widgets_values"][0]) > 80  # explains what to change
    types = {n["type"] for n in workflow["nodes"]}
    assert not {t for t in types if t.startswith("JATest")}  # only stock and pack nodes ship


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_on_tiny_models_with_only_loaders_swapped(comfy_server, object_info, name):
    prompt = tiny_prompt(name, object_info, prefix=f"example_{Path(name).stem}")
    entry = comfy_server.wait(comfy_server.queue(prompt), timeout=300)
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])
              if img["type"] == "output" and img["filename"].startswith(f"example_{Path(name).stem}")]
    assert images
    assert (comfy_server.output_dir / images[0].get("subfolder", "") / images[0]["filename"]).is_file()
