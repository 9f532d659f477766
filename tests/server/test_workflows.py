"""Example workflows: current, valid for the real server, and runnable with only the loaders swapped."""
import json
import sys
from pathlib import Path

import pytest

from ja_host import ROOT, load_pack
from ja_workflows import EXAMPLES, load, loader_swaps, tiny_prompt, wf

pytestmark = pytest.mark.server


def _pack_nodes():
    load_pack()
    from joint_attention_pack.nodes import node_info

    return node_info()

NAMES = ["regional_flux.json", "regional_sd3.json", "taca_flux.json", "text_scale_sd3.json", "regional_taca_flux.json",
         "regional_canvas_flux.json", "attention_maps_flux.json", "concept_segmentation_flux.json",
         "regional_qwen_image.json", "regional_qwen_image_edit.json", "regional_z_image.json",
         "regional_chroma_radiance.json", "regional_hunyuan_image.json", "regional_hidream.json",
         "regional_krea2.json", "regional_hunyuan_video.json", "region_lora_two_characters_flux.json"]
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


# The LoRA files the examples pick, as the trainers users train them with write them (ja_lora.FORMATS): one kohya
# sd-scripts file, one diffusers / peft file (ai-toolkit), for the tiny model the server swaps in.
EXAMPLE_LORAS = {"character_a.safetensors": ("kohya", 31), "character_b.safetensors": ("diffusers", 32)}


@pytest.fixture(scope="module")
def example_loras(comfy_server):
    """The examples' LoRA files, written into the test server's loras folder (built for the very model the example
    runs on: the server's tiny-model loader, called here)."""
    import importlib.util

    from ja_lora import write_lora
    from ja_server import TEST_NODES

    spec = importlib.util.spec_from_file_location("_ja_test_nodes_here", TEST_NODES / "ja_test_nodes" / "__init__.py")
    test_nodes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_nodes)
    model = test_nodes.JATestTinyModel().load(**loader_swaps("flux")["UNETLoader"][1])[0]
    for name, (fmt, seed) in EXAMPLE_LORAS.items():
        write_lora(model, name, fmt, folder=comfy_server.loras_dir, seed=seed, scale=0.5)
    return sorted(EXAMPLE_LORAS)


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


def _saved(comfy_server, entry, kind, prefix):
    """The path of the file of `kind` ("images", "latents") a finished prompt saved under `prefix`."""
    files = [f for out in entry["outputs"].values() for f in out.get(kind, [])
             if f["type"] == "output" and f["filename"].startswith(prefix)]
    assert files
    return comfy_server.output_dir / files[0].get("subfolder", "") / files[0]["filename"]


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_on_tiny_models_with_only_loaders_swapped(comfy_server, object_info, example_loras, name):
    _skip_without_model(name)
    prefix = f"example_{Path(name).stem}"
    entry = comfy_server.wait(comfy_server.queue(tiny_prompt(name, object_info, prefix=prefix)), timeout=300)
    assert _saved(comfy_server, entry, "images", prefix).is_file()


def test_the_region_lora_example_runs_the_two_loras_on_their_characters(comfy_server, object_info, example_loras):
    """Issue 31's example: the two character LoRAs (a kohya and a diffusers file, written by the test) change the
    sampled latent, each on its own, against the same workflow with the LoRA strengths at 0. The latent is compared
    (a core SaveLatent node added to the prompt): the tiny VAE's pictures are nearly saturated."""
    import safetensors.torch

    name = "region_lora_two_characters_flux.json"
    loras = {n["widgets_values"][1]: str(n["id"]) for n in load(name)["nodes"] if n["type"] == "JointAttentionRegionLoRA"}
    assert sorted(loras) == example_loras  # the example picks the files the note names

    def latent(strengths):
        prefix = "lora_example_" + "_".join(f"{s:g}" for s in strengths)
        prompt = tiny_prompt(name, object_info, prefix=prefix)
        for node_id, strength in zip(loras.values(), strengths):
            assert prompt[node_id]["inputs"]["strength"] == 1.0
            prompt[node_id]["inputs"]["strength"] = strength
        sampler = next(k for k, n in prompt.items() if n["class_type"] == "KSampler")
        prompt["ja_latent"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": prefix}}
        entry = comfy_server.wait(comfy_server.queue(prompt), timeout=300)
        assert _saved(comfy_server, entry, "images", prefix).is_file()
        return safetensors.torch.load_file(str(_saved(comfy_server, entry, "latents", prefix)))["latent_tensor"]

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    plain, both = latent((0.0, 0.0)), latent((1.0, 1.0))
    only_a, only_b = latent((1.0, 0.0)), latent((0.0, 1.0))
    for with_lora in (both, only_a, only_b):
        assert rel(with_lora, plain) > 1e-2
    assert rel(both, only_a) > 1e-2 and rel(both, only_b) > 1e-2  # each LoRA acts in the two-LoRA run
