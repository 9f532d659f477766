"""Example workflows: current, valid for the real server, and runnable with only the loaders swapped."""
import json
import sys
from pathlib import Path

import pytest

from ja_host import ROOT, load_pack
from ja_workflows import EXAMPLES, load, tiny_prompt, wf

pytestmark = pytest.mark.server


def _pack_nodes():
    load_pack()
    from joint_attention_pack.nodes import node_info

    return node_info()

NAMES = ["regional_flux.json", "regional_sd3.json", "taca_flux.json", "text_scale_sd3.json", "regional_taca_flux.json",
         "regional_canvas_flux.json", "attention_maps_flux.json", "concept_segmentation_flux.json",
         "regional_qwen_image.json", "regional_qwen_image_edit.json", "regional_z_image.json",
         "regional_chroma_radiance.json", "regional_hunyuan_image.json", "regional_hidream.json",
         "regional_krea2.json", "regional_hunyuan_video.json"]
# Examples of a model only some hosts have: the model's `comfy.model_base` class (their core nodes' options, e.g.
# CLIPLoader type krea2, are on those hosts only).
NEEDS_MODEL = {"regional_krea2.json": "Krea2"}


def _skip_without_model(name):
    import comfy.model_base

    needed = NEEDS_MODEL.get(name)
    if needed and not hasattr(comfy.model_base, needed):
        pytest.skip(f"this host has no {needed}")


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def test_every_example_is_listed_and_current(object_info):
    """The checked-in files are what scripts/build_workflows.py renders on this host, in everything the pack owns:
    its graphs and its own nodes' definitions. Unlinked outputs of core nodes are the host's (0.29's SaveImage
    gained an IMAGE output), so they are left out of the comparison; the files are written on the pinned host."""
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(NAMES)
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_workflows

    owned = set(_pack_nodes())
    assert {n["type"] for name in NAMES for n in load(name)["nodes"]} & owned  # the view keeps the pack's nodes whole
    rendered = build_workflows.render(object_info)
    for name in NAMES:
        text = (EXAMPLES / name).read_text()
        assert text == json.dumps(json.loads(text), indent=1) + "\n", f"{name} is not formatted as the script writes"
        assert wf.owned_view(json.loads(text), owned) == wf.owned_view(json.loads(rendered[name]), owned), \
            f"{name} is stale: run scripts/build_workflows.py"


def test_owned_view_ignores_core_outputs_only():
    """A core node gaining an unlinked output is the host's change; a pack node's changed outputs, a core node's
    changed widget values or links are the file's."""
    owned = set(_pack_nodes())
    base = load("regional_canvas_flux.json")
    view = wf.owned_view(base, owned)

    def changed(edit):
        other = json.loads(json.dumps(base))
        edit(other)
        return wf.owned_view(other, owned) != view

    def node(workflow, node_type):
        return next(n for n in workflow["nodes"] if n["type"] == node_type)

    extra = {"name": "images", "type": "IMAGE", "links": [], "slot_index": 0}
    assert not changed(lambda w: node(w, "SaveImage")["outputs"].append(dict(extra)))
    assert not changed(lambda w: node(w, "PreviewImage")["outputs"].append(dict(extra)))
    assert changed(lambda w: node(w, "JointAttentionRegionCanvas")["outputs"].append(dict(extra)))
    assert changed(lambda w: node(w, "JointAttentionRegionCanvas")["outputs"][0].update(name="renamed"))
    assert changed(lambda w: node(w, "KSampler")["widgets_values"].__setitem__(0, 7))
    assert changed(lambda w: node(w, "VAEDecode")["outputs"][0].update(type="LATENT"))
    assert changed(lambda w: w["links"].pop())


def test_the_canvas_example_links_the_latent_size_to_the_canvas(object_info):
    """Issue 32, item 5: the empty latent's width and height are widget inputs linked to the Region Canvas's width and
    height outputs (saved as the frontend saves a linked widget), so the API prompt takes them from the canvas."""
    workflow = load("regional_canvas_flux.json")
    canvas = next(n for n in workflow["nodes"] if n["type"] == "JointAttentionRegionCanvas")
    latent = next(n for n in workflow["nodes"] if n["type"] == "EmptySD3LatentImage")
    links = {link[0]: link for link in workflow["links"]}
    for side in ("width", "height"):
        entry = next(i for i in latent["inputs"] if i["name"] == side)
        assert entry["widget"] == {"name": side} and entry["type"] == "INT"
        link = links[entry["link"]]
        slot = next(k for k, out in enumerate(canvas["outputs"]) if out["name"] == side)
        assert link[1:4] == [canvas["id"], slot, latent["id"]] and latent["inputs"][link[4]] is entry
        assert entry["link"] in canvas["outputs"][slot]["links"]
    prompt = wf.to_api(workflow, object_info)
    inputs = prompt[str(latent["id"])]["inputs"]
    assert [inputs["width"], inputs["height"]] == [[str(canvas["id"]), 3], [str(canvas["id"]), 4]]


@pytest.mark.parametrize("name", NAMES)
def test_example_loads_without_missing_nodes_or_widget_errors(object_info, name):
    _skip_without_model(name)
    workflow = load(name)
    assert wf.validate(workflow, object_info) == []
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert notes and len(notes[0]["widgets_values"][0]) > 80  # explains what to change
    types = {n["type"] for n in workflow["nodes"]}
    assert not {t for t in types if t.startswith("JATest")}  # only stock and pack nodes ship


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_on_tiny_models_with_only_loaders_swapped(comfy_server, object_info, name):
    _skip_without_model(name)
    prompt = tiny_prompt(name, object_info, prefix=f"example_{Path(name).stem}")
    entry = comfy_server.wait(comfy_server.queue(prompt), timeout=300)
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])
              if img["type"] == "output" and img["filename"].startswith(f"example_{Path(name).stem}")]
    assert images
    assert (comfy_server.output_dir / images[0].get("subfolder", "") / images[0]["filename"]).is_file()
