"""Example workflows on the tiny models: swap only the model loaders, keep everything else."""
from __future__ import annotations

import json
import sys

from ja_host import ROOT

sys.path.insert(0, str(ROOT / "scripts")) if str(ROOT / "scripts") not in sys.path else None
import workflow_json as wf  # noqa: E402  (scripts/, by path: ComfyUI owns generic top-level names)

EXAMPLES = ROOT / "example_workflows"


def family_of(name: str) -> str:
    if "chroma_radiance" in name:
        return "chroma_radiance"
    if "qwen_image" in name:
        return "qwen_image"
    if "z_image" in name:
        return "z_image"
    if "hunyuan_image" in name:
        return "hunyuan_image"
    if "hunyuan_video" in name:
        return "hunyuan_video"
    if "hidream" in name:
        return "hidream"
    if "krea2" in name:
        return "krea2"
    return "sd3" if "sd3" in name else "flux"


def loader_swaps(family: str) -> dict:
    return {
        "UNETLoader": ("JATestTinyModel", {"family": family, "seed": 0, "full_depth": True}),
        "DualCLIPLoader": ("JATestTinyCLIP", {"seed": 0}),
        "TripleCLIPLoader": ("JATestTinyCLIP", {"seed": 0}),
        "VAELoader": ("JATestTinyVAE", {"family": family}),
        "CheckpointLoaderSimple": ("JATestTinyCheckpoint", {"family": family}),
        # Z-Image's CLIPLoader file is Qwen3-4B: the tiny one keeps its tokenizer and chat template.
        "CLIPLoader": ("JATestTinyCLIP", {"seed": 0, "encoder": "qwen3_4b"} if family == "z_image" else {"seed": 0}),
        # HiDream's four files: the tiny HiDream encoder (T5 tokens and Llama states of every layer).
        "QuadrupleCLIPLoader": ("JATestTinyCLIP", {"seed": 0, "encoder": "hidream"}),
    }


LOADERS = ("UNETLoader", "CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader", "VAELoader",
           "CheckpointLoaderSimple")


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def tiny_prompt(name: str, object_info: dict, size: int = 128, steps: int = 3, prefix: str | None = None) -> dict:
    """The example as an API prompt on the tiny models, at a small image size."""
    prompt = wf.to_api(load(name), object_info, loader_swaps(family_of(name)))
    return shrink(prompt, size, steps, prefix)


def swap_loaders_api(prompt: dict, family: str) -> dict:
    """An API prompt (for example the frontend's `graphToPrompt` output) with its loaders swapped for tiny ones."""
    prompt = json.loads(json.dumps(prompt))
    swaps = loader_swaps(family)
    for node in prompt.values():
        if node["class_type"] in swaps:
            node["class_type"], inputs = swaps[node["class_type"]]
            node["inputs"] = dict(inputs)
    return prompt


def shrink(prompt: dict, size: int = 128, steps: int = 3, prefix: str | None = None) -> dict:
    """Image sizes, masks and steps of a 1024 px workflow scaled down for the tiny models (in place): sizes, mask
    offsets and feathering in pixels in proportion."""
    def scaled(value):
        return value * size // 1024

    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in ("EmptySD3LatentImage", "EmptyLatentImage", "EmptyChromaRadianceLatentImage",
                                  "EmptyHunyuanImageLatent", "EmptyHunyuanLatentVideo",
                                  "JointAttentionRegionCanvas", "ImageScale"):
            for side in ("width", "height"):
                if not isinstance(inputs.get(side), list):  # a linked size follows its source (the canvas's outputs)
                    inputs[side] = size
        if node["class_type"] == "EmptyHunyuanLatentVideo":
            inputs["length"] = 5  # 2 latent frames
        if node["class_type"] == "SolidMask":
            inputs["width"], inputs["height"] = scaled(inputs["width"]), scaled(inputs["height"])
        if node["class_type"] == "MaskComposite":
            inputs["x"], inputs["y"] = scaled(inputs["x"]), scaled(inputs["y"])
        if node["class_type"] == "FeatherMask":
            for side in ("left", "top", "right", "bottom"):
                inputs[side] = scaled(inputs[side])
        if node["class_type"] == "KSampler":
            inputs["steps"] = steps
        if node["class_type"] in ("SaveImage", "SaveAnimatedWEBP") and prefix:
            inputs["filename_prefix"] = prefix
    return prompt


def swap_loaders_ui(workflow: dict, object_info: dict) -> dict:
    """The UI-format workflow with its loader nodes replaced by the tiny test loaders (same sockets)."""
    workflow = json.loads(json.dumps(workflow))
    loaded = json.dumps([n.get("widgets_values") for n in workflow["nodes"] if n["type"] in LOADERS])
    family = family_of(loaded) if any(f in loaded for f in ("qwen_image", "z_image", "hidream", "krea2")) else \
        family_of(json.dumps([n["type"] for n in workflow["nodes"]]))
    swaps = loader_swaps(family)
    for node in workflow["nodes"]:
        if node["type"] in swaps:
            new_type, inputs = swaps[node["type"]]
            order = [name for group in ("required", "optional") for name in object_info[new_type]["input"].get(group, {})]
            node["type"] = new_type
            node["properties"] = {"Node name for S&R": new_type}
            node["widgets_values"] = [inputs[name] for name in order if name in inputs]
    return workflow
