"""API prompts for the server tests, built from the test nodes and ComfyUI's stock nodes."""
from __future__ import annotations


def regional_prompt(family="flux", seed=0, steps=3, cfg=3.0, width=96, height=64, split=48, strengths=(1.0, 1.0),
                    base_ratio=0.2, prefix="", save=True):
    """Tiny model -> two regions (left/right of `split` px, stock mask nodes) -> Apply -> KSampler (cfg, negative)."""
    p = {
        "model": {"class_type": "JATestTinyModel", "inputs": {"family": family, "seed": 0}},
        "pos": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "a landscape", "tokens": 6}},
        "neg": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "blurry", "tokens": 6}},
        "r1_text": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "a red house", "tokens": 5}},
        "r2_text": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "a blue lake", "tokens": 7}},
        "canvas": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": width, "height": height}},
        "left_src": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": split, "height": height}},
        "right_src": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width - split, "height": height}},
        "left": {"class_type": "MaskComposite", "inputs": {"destination": ["canvas", 0], "source": ["left_src", 0],
                                                           "x": 0, "y": 0, "operation": "add"}},
        "right": {"class_type": "MaskComposite", "inputs": {"destination": ["canvas", 0], "source": ["right_src", 0],
                                                            "x": split, "y": 0, "operation": "add"}},
        "region1": {"class_type": "JointAttentionRegion", "inputs": {"conditioning": ["r1_text", 0], "mask": ["left", 0],
                                                                     "strength": strengths[0]}},
        "region2": {"class_type": "JointAttentionRegion", "inputs": {"conditioning": ["r2_text", 0], "mask": ["right", 0],
                                                                     "strength": strengths[1], "regions": ["region1", 0]}},
        "apply": {"class_type": "JointAttentionRegionalApply", "inputs": {
            "model": ["model", 0], "regions": ["region2", 0], "base_ratio": base_ratio, "start_percent": 0.0,
            "end_percent": 0.5, "double_blocks": "all", "single_blocks": "all" if family.startswith("flux") else "none",
            "image_attention": "restricted", "global_prompt": "background"}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["apply", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "image": {"class_type": "JATestLatentToImage", "inputs": {"samples": ["sampler", 0]}},
    }
    if save:
        p["save"] = {"class_type": "SaveImage", "inputs": {"images": ["image", 0], "filename_prefix": prefix or "ja_test"}}
    else:
        p["preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["image", 0]}}
    return p


def memory_prompt(free_caches=False):
    return {"mem": {"class_type": "JointAttentionMemory", "inputs": {"free_caches": free_caches}}}


def captured_prompt(prefix="", seed=0, split=48, words=""):
    """The regional prompt with an Attention Capture on the model and Attention Maps after sampling."""
    p = regional_prompt(seed=seed, split=split, save=False)
    p["capture"] = {"class_type": "JointAttentionCapture", "inputs": {
        "model": ["apply", 0], "double_blocks": "all", "single_blocks": "all", "start_percent": 0.0, "end_percent": 1.0}}
    p["sampler"]["inputs"]["model"] = ["capture", 0]
    p["maps"] = {"class_type": "JointAttentionMaps", "inputs": {
        "capture": ["capture", 1], "samples": ["sampler", 0], "words": words, "filename_prefix": prefix}}
    return p
