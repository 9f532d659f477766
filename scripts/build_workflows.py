"""Regenerate example_workflows/*.json from the graphs below and the real server's /object_info.

Usage: .venv/bin/python scripts/build_workflows.py   (the test suite checks the files are current)

Run it with the pinned host's environment (.venv): the files are written from its /object_info. On another host
they differ only in what core owns (unlinked outputs of core nodes), which the freshness test leaves out
(scripts/workflow_json.py owned_view), so either host finds them current.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from workflow_json import Node, build_ui  # noqa: E402

OUT = ROOT / "example_workflows"


def flux_loaders():
    return [
        Node(1, "UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}),
        Node(2, "DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}),
        Node(3, "VAELoader", {"vae_name": "ae.safetensors"}),
    ]


def sd3_loaders():
    return [
        Node(1, "CheckpointLoaderSimple", {"ckpt_name": "sd3.5_medium.safetensors"}),
        Node(2, "TripleCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                                     "clip_name3": "t5xxl_fp16.safetensors"}),
    ]


def qwen_image_loaders():
    """Qwen-Image as ComfyUI's own example loads it (split files), with the usual AuraFlow shift."""
    return [
        Node(1, "UNETLoader", {"unet_name": "qwen_image_fp8_e4m3fn.safetensors", "weight_dtype": "default"}),
        Node(2, "CLIPLoader", {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors", "type": "qwen_image"}),
        Node(3, "VAELoader", {"vae_name": "qwen_image_vae.safetensors"}),
        Node(11, "ModelSamplingAuraFlow", {"shift": 3.1}, {"model": (1, 0)}),
    ]


def qwen_image_tail(model, positive_text, prefix, negative_text=""):
    return [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": negative_text}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 20, "cfg": 2.5, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
             {"model": model, "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def qwen_image_edit_graph(positive_text, prefix):
    """Qwen-Image-Edit-2509 as ComfyUI's official template loads it (split files, AuraFlow shift 3, 20 steps, CFG 2.5),
    in its "raw latent" form: the reference picture is scaled once, VAE-encoded once, and that latent is both the
    sampler's start and the reference (ReferenceLatent) beside TextEncodeQwenImageEditPlus, which sees the picture
    through the VL encoder. Region prompts are plain text (CLIPTextEncode); the picture reaches the model through
    the main prompt's reference."""
    return [
        Node(1, "UNETLoader", {"unet_name": "qwen_image_edit_2509_fp8_e4m3fn.safetensors", "weight_dtype": "default"}),
        Node(2, "CLIPLoader", {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors", "type": "qwen_image"}),
        Node(3, "VAELoader", {"vae_name": "qwen_image_vae.safetensors"}),
        Node(11, "ModelSamplingAuraFlow", {"shift": 3.0}, {"model": (1, 0)}),
        Node(12, "LoadImage", {"image": "example.png"}, title="Picture to edit"),
        Node(13, "ImageScale", {"upscale_method": "area", "width": 1024, "height": 1024, "crop": "center"},
             {"image": (12, 0)}, title="Output size (about 1 megapixel)"),
        Node(14, "VAEEncode", {}, {"pixels": (13, 0), "vae": (3, 0)}),
        Node(4, "TextEncodeQwenImageEditPlus", {"prompt": positive_text}, {"clip": (2, 0), "image1": (13, 0)},
             title="Edit instruction"),
        Node(5, "TextEncodeQwenImageEditPlus", {"prompt": ""}, {"clip": (2, 0), "image1": (13, 0)},
             title="Negative prompt"),
        Node(15, "ReferenceLatent", {}, {"conditioning": (4, 0), "latent": (14, 0)}),
        Node(16, "ReferenceLatent", {}, {"conditioning": (5, 0), "latent": (14, 0)}),
    ] + two_regions((2, 0), (11, 0)) + [
        Node(8, "KSampler", {"seed": 42, "steps": 20, "cfg": 2.5, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
             {"model": (28, 0), "positive": (15, 0), "negative": (16, 0), "latent_image": (14, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def soft_two_regions(clip, model, size=1024, texts=("a red vintage car", "a golden retriever sitting on the grass"),
                     overlap=256, base=20, **apply):
    """Two regions (left / right) whose masks cross over softly: a block feathered over `overlap` px on its left
    edge makes the right mask, its inverse the left one (they sum to 1 everywhere, 0.5 at the seam)."""
    half = size // 2
    return [
        Node(base + 0, "CLIPTextEncode", {"text": texts[0]}, {"clip": clip}, title="Region 1 prompt (left)"),
        Node(base + 1, "CLIPTextEncode", {"text": texts[1]}, {"clip": clip}, title="Region 2 prompt (right)"),
        Node(base + 2, "SolidMask", {"value": 0.0, "width": size, "height": size}, title="Empty canvas"),
        Node(base + 3, "SolidMask", {"value": 1.0, "width": half + overlap // 2, "height": size}, title="Right block"),
        Node(base + 4, "FeatherMask", {"left": overlap, "top": 0, "right": 0, "bottom": 0}, {"mask": (base + 3, 0)},
             title="Soft left edge"),
        Node(base + 5, "MaskComposite", {"x": half - overlap // 2, "y": 0, "operation": "add"},
             {"destination": (base + 2, 0), "source": (base + 4, 0)}, title="Right mask (soft)"),
        Node(base + 6, "InvertMask", {}, {"mask": (base + 5, 0)}, title="Left mask (soft)"),
        Node(base + 7, "JointAttentionRegion", {"strength": 1.0}, {"conditioning": (base, 0), "mask": (base + 6, 0)}),
        Node(base + 8, "JointAttentionRegion", {"strength": 1.0},
             {"conditioning": (base + 1, 0), "mask": (base + 5, 0), "regions": (base + 7, 0)}),
        Node(base + 9, "JointAttentionRegionalApply", dict(apply), {"model": model, "regions": (base + 8, 0)}),
    ]


def z_image_graph(positive_text, prefix):
    """Z-Image-Turbo as ComfyUI's official template loads it (split files, CLIPLoader type lumina2, AuraFlow shift 3,
    8 steps, CFG 1 with a zeroed negative, res_multistep), with two soft regions and open image attention."""
    return [
        Node(1, "UNETLoader", {"unet_name": "z_image_turbo_bf16.safetensors", "weight_dtype": "default"}),
        Node(2, "CLIPLoader", {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"}),
        Node(3, "VAELoader", {"vae_name": "ae.safetensors"}),
        Node(11, "ModelSamplingAuraFlow", {"shift": 3.0}, {"model": (1, 0)}),
    ] + soft_two_regions((2, 0), (11, 0), image_attention="open") + [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "ConditioningZeroOut", {}, {"conditioning": (4, 0)}, title="Negative (unused at CFG 1)"),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 8, "cfg": 1.0, "sampler_name": "res_multistep", "scheduler": "simple",
                             "denoise": 1.0},
             {"model": (29, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def hunyuan_image_graph(positive_text, prefix):
    """HunyuanImage 2.1 as ComfyUI's own example loads it (split files, DualCLIPLoader type hunyuan_image with
    Qwen2.5-VL and byT5, the 32x VAE, EmptyHunyuanImageLatent at 2048 px), with two regions."""
    return [
        Node(1, "UNETLoader", {"unet_name": "hunyuanimage2.1_bf16.safetensors", "weight_dtype": "default"}),
        Node(2, "DualCLIPLoader", {"clip_name1": "qwen_2.5_vl_7b.safetensors",
                                   "clip_name2": "byt5_small_glyphxl_fp16.safetensors", "type": "hunyuan_image"}),
        Node(3, "VAELoader", {"vae_name": "hunyuan_image_2.1_vae_fp16.safetensors"}),
    ] + two_regions((2, 0), (1, 0), size=2048) + [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": "blurry, low quality"}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(7, "EmptyHunyuanImageLatent", {"width": 2048, "height": 2048, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 20, "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 1.0},
             {"model": (28, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def hunyuan_video_graph(positive_text, prefix):
    """HunyuanVideo 1.0 T2V as ComfyUI's own example loads it (split files, DualCLIPLoader type hunyuan_video with
    CLIP-L and LLaVA-Llama-3, FluxGuidance 6, EmptyHunyuanLatentVideo 848 x 480 x 73 frames), two regions whose
    masks hold in every frame, saved as an animated WEBP."""
    return [
        Node(1, "UNETLoader", {"unet_name": "hunyuan_video_t2v_720p_bf16.safetensors", "weight_dtype": "default"}),
        Node(2, "DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "llava_llama3_fp8_scaled.safetensors",
                                   "type": "hunyuan_video"}),
        Node(3, "VAELoader", {"vae_name": "hunyuan_video_vae_bf16.safetensors"}),
    ] + two_regions((2, 0), (1, 0), texts=("a red vintage car driving along the road",
                                           "a golden retriever running on the grass")) + [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": ""}, {"clip": (2, 0)}, title="Negative prompt (unused at CFG 1)"),
        Node(6, "FluxGuidance", {"guidance": 6.0}, {"conditioning": (4, 0)}),
        Node(7, "EmptyHunyuanLatentVideo", {"width": 848, "height": 480, "length": 73, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 1.0},
             {"model": (28, 0), "positive": (6, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveAnimatedWEBP", {"filename_prefix": prefix, "fps": 24.0, "lossless": False, "quality": 90,
                                      "method": "default"}, {"images": (9, 0)}),
    ]


def hidream_graph(positive_text, prefix):
    """HiDream I1 Dev as ComfyUI's official template loads it (split files, QuadrupleCLIPLoader, ModelSamplingSD3
    shift 6, 28 steps, CFG 1, lcm / normal), with two regions."""
    return [
        Node(1, "UNETLoader", {"unet_name": "hidream_i1_dev_bf16.safetensors", "weight_dtype": "default"}),
        Node(2, "QuadrupleCLIPLoader", {"clip_name1": "clip_l_hidream.safetensors",
                                        "clip_name2": "clip_g_hidream.safetensors",
                                        "clip_name3": "t5xxl_fp8_e4m3fn_scaled.safetensors",
                                        "clip_name4": "llama_3.1_8b_instruct_fp8_scaled.safetensors"}),
        Node(3, "VAELoader", {"vae_name": "ae.safetensors"}),
        Node(11, "ModelSamplingSD3", {"shift": 6.0}, {"model": (1, 0)}),
    ] + two_regions((2, 0), (11, 0)) + [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": ""}, {"clip": (2, 0)}, title="Negative prompt (unused at CFG 1)"),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 28, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "normal",
                             "denoise": 1.0},
             {"model": (28, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def krea2_graph(positive_text, prefix):
    """Krea 2 (ComfyUI 0.33+): split files, its Qwen3-VL-4B encoder through CLIPLoader type krea2, the Wan 2.1 VAE
    (16-channel latents), two hard regions; the model's own sampling shift."""
    return [
        Node(1, "UNETLoader", {"unet_name": "krea2.safetensors", "weight_dtype": "default"}),
        Node(2, "CLIPLoader", {"clip_name": "qwen3_vl_4b.safetensors", "type": "krea2"}),
        Node(3, "VAELoader", {"vae_name": "wan_2.1_vae.safetensors"}),
    ] + two_regions((2, 0), (1, 0)) + [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": ""}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 28, "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                             "denoise": 1.0},
             {"model": (28, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def two_regions(clip, model, size=1024, texts=("a red vintage car", "a golden retriever sitting on the grass"),
                base=20):
    half = size // 2
    return [
        Node(base + 0, "CLIPTextEncode", {"text": texts[0]}, {"clip": clip}, title="Region 1 prompt (left)"),
        Node(base + 1, "CLIPTextEncode", {"text": texts[1]}, {"clip": clip}, title="Region 2 prompt (right)"),
        Node(base + 2, "SolidMask", {"value": 0.0, "width": size, "height": size}, title="Empty canvas"),
        Node(base + 3, "SolidMask", {"value": 1.0, "width": half, "height": size}, title="Half-width block"),
        Node(base + 4, "MaskComposite", {"x": 0, "y": 0, "operation": "add"},
             {"destination": (base + 2, 0), "source": (base + 3, 0)}, title="Left half mask"),
        Node(base + 5, "MaskComposite", {"x": half, "y": 0, "operation": "add"},
             {"destination": (base + 2, 0), "source": (base + 3, 0)}, title="Right half mask"),
        Node(base + 6, "JointAttentionRegion", {"strength": 1.0}, {"conditioning": (base, 0), "mask": (base + 4, 0)}),
        Node(base + 7, "JointAttentionRegion", {"strength": 1.0},
             {"conditioning": (base + 1, 0), "mask": (base + 5, 0), "regions": (base + 6, 0)}),
        Node(base + 8, "JointAttentionRegionalApply", {}, {"model": model, "regions": (base + 7, 0)}),
    ]


def flux_tail(model, positive_text, prefix, negative_text=""):
    return [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": negative_text}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(6, "FluxGuidance", {"guidance": 3.5}, {"conditioning": (4, 0)}),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
             {"model": model, "positive": (6, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def sd3_tail(model, positive_text, prefix, negative_text="blurry, low quality"):
    return [
        Node(4, "CLIPTextEncode", {"text": positive_text}, {"clip": (2, 0)}, title="Positive prompt"),
        Node(5, "CLIPTextEncode", {"text": negative_text}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(7, "EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(8, "KSampler", {"seed": 42, "steps": 28, "cfg": 4.5, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0},
             {"model": model, "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
        Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (1, 2)}),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}),
    ]


def latent_follows_canvas(nodes, canvas_id):
    """`nodes` with the empty latent's width and height linked to the Region Canvas's width and height outputs (slots 3
    and 4): the latent always has the canvas's size."""
    for n in nodes:
        if n.type in ("EmptySD3LatentImage", "EmptyLatentImage"):
            n.links.update({"width": (canvas_id, 3), "height": (canvas_id, 4)})
    return nodes


def canvas_default(size=1024, prompts=("a red vintage car", "a golden retriever sitting on the grass")):
    """Two regions drawn left and right, as the canvas widget stores them."""
    import importlib.util

    import torch

    # nodes/canvas_state.py is pure (no ComfyUI imports); load it by path under a private name.
    spec = importlib.util.spec_from_file_location("_ja_canvas_state", ROOT / "nodes" / "canvas_state.py")
    canvas_state = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = canvas_state  # dataclasses look their module up here
    spec.loader.exec_module(canvas_state)

    mw = mh = size // canvas_state.CELL
    left, right = torch.zeros(mh, mw), torch.zeros(mh, mw)
    left[:, : mw // 2] = 1
    right[:, mw // 2:] = 1
    return canvas_state.encode_value(size, size, [
        {"prompt": prompts[0], "mask": left},
        {"prompt": prompts[1], "mask": right},
    ])


NOTE_REGIONS = (
    "Regional prompting in one model pass. Change the two region prompts and the masks (any MASK works: "
    "draw them with the mask editor, load them from images, or chain more Region nodes for more regions). "
    "The main prompt describes the whole scene and drives the uncovered background. "
    "Apply Regional Attention: base_ratio 0.1-0.3 keeps the picture coherent; end_percent 0.3-0.5 sets the layout "
    "early and lets details settle freely; image_attention 'open' blends regions more."
)

CHARACTERS = ("character A, a woman in a red coat, full body", "character B, a man in a blue suit, full body")


def region_lora_two_characters_graph():
    """Two characters drawn on the Region Canvas, each with its own LoRA (Region LoRA index 1 and 2, chained)."""
    return flux_loaders() + [
        Node(20, "JointAttentionRegionCanvas", {"width": 1024, "height": 1024,
                                                "regions": canvas_default(prompts=CHARACTERS)}, {"clip": (2, 0)}),
        Node(23, "JointAttentionRegionLoRA", {"index": 1, "lora_name": "character_a.safetensors", "strength": 1.0,
                                              "start_percent": 0.0, "end_percent": 1.0},
             {"regions": (20, 0)}, title="LoRA of character A (region 1)"),
        Node(24, "JointAttentionRegionLoRA", {"index": 2, "lora_name": "character_b.safetensors", "strength": 1.0,
                                              "start_percent": 0.0, "end_percent": 1.0},
             {"regions": (23, 0)}, title="LoRA of character B (region 2)"),
        Node(21, "JointAttentionRegionalApply", {}, {"model": (1, 0), "regions": (24, 0)}),
        Node(22, "PreviewImage", {}, {"images": (20, 2)}, title="Regions preview"),
    ] + latent_follows_canvas(flux_tail((21, 0), "two people standing side by side in a city street, photo, detailed",
                                        "region_lora_two_characters_flux"), 20)


GRAPHS = {
    "regional_flux.json": (
        lambda: flux_loaders() + two_regions((2, 0), (1, 0)) + flux_tail((28, 0), "a sunny park, photo, detailed", "regional_flux"),
        [("How to use", NOTE_REGIONS + " FLUX.1-dev files: flux1-dev.safetensors (diffusion_models), clip_l + "
          "t5xxl_fp16 (text_encoders), ae.safetensors (vae).")],
    ),
    "regional_sd3.json": (
        lambda: sd3_loaders() + two_regions((2, 0), (1, 0)) + sd3_tail((28, 0), "a sunny park, photo, detailed", "regional_sd3"),
        [("How to use", NOTE_REGIONS + " SD3.5 files: sd3.5_medium.safetensors (checkpoints), clip_l, clip_g, "
          "t5xxl_fp16 (text_encoders). Negative prompts and CFG work as usual.")],
    ),
    "regional_qwen_image.json": (
        lambda: qwen_image_loaders() + two_regions((2, 0), (11, 0)) + qwen_image_tail(
            (28, 0), "a sunny park, photo, detailed", "regional_qwen_image"),
        [("How to use", NOTE_REGIONS + " Qwen-Image files: qwen_image_fp8_e4m3fn.safetensors (diffusion_models), "
          "qwen_2.5_vl_7b_fp8_scaled.safetensors (text_encoders), qwen_image_vae.safetensors (vae). Block numbers: "
          "double_blocks 0-59 (single_blocks does not apply). Region texts keep the positions they have as a prompt "
          "alone. For Qwen-Image-Edit, load qwen_image_edit_2509_fp8_e4m3fn.safetensors and encode the prompts with "
          "TextEncodeQwenImageEdit(Plus): the reference image's tokens stay visible to every image token.")],
    ),
    "regional_qwen_image_edit.json": (
        lambda: qwen_image_edit_graph("Put a red vintage car on the left and a golden retriever on the right, "
                                      "keep everything else as it is", "regional_qwen_image_edit"),
        [("How to use", "Regional edit with Qwen-Image-Edit-2509: the edit instruction and the picture go through "
          "TextEncodeQwenImageEditPlus as usual, and each region says what its mask's area should show. Load your "
          "picture in 'Picture to edit' and set 'Output size' to about 1 megapixel with its aspect ratio (the masks are "
          "stretched over whatever size it is). The scaled picture is VAE-encoded once: that latent starts the "
          "sampler and is the reference (ReferenceLatent), as in the official template's raw-latent variant; its "
          "tokens stay visible to every image token whatever the masks say. Region prompts are plain CLIPTextEncode "
          "text. Files: qwen_image_edit_2509_fp8_e4m3fn.safetensors (diffusion_models), "
          "qwen_2.5_vl_7b_fp8_scaled.safetensors (text_encoders), qwen_image_vae.safetensors (vae); the template's "
          "CFGNorm and Lightning LoRA can be added before Apply Regional Attention. Block numbers: double_blocks "
          "0-59. " + NOTE_REGIONS)],
    ),
    "regional_z_image.json": (
        lambda: z_image_graph("a sunny park, photo, detailed", "regional_z_image"),
        [("How to use", "Two regions on Z-Image-Turbo (8 steps, CFG 1, AuraFlow shift 3, as the official template). "
          "Z-Image runs image and text through the same single-stream layers, and restricting image self-attention "
          "to each region there tends to split the picture into separate images: this example uses image_attention "
          "'open' with soft masks (a 256 px cross-fade at the seam) so the regions blend into one scene; try "
          "'restricted' only with well-separated subjects. Files: z_image_turbo_bf16.safetensors (diffusion_models), "
          "qwen_3_4b.safetensors (text_encoders, CLIPLoader type lumina2), ae.safetensors (vae). Region texts are "
          "padded and refined alone, as the model does with a prompt. " + NOTE_REGIONS)],
    ),
    "regional_hunyuan_image.json": (
        lambda: hunyuan_image_graph('a sunny park with a wooden sign that reads "CITY PARK", photo, detailed',
                                    "regional_hunyuan_image"),
        [("How to use", NOTE_REGIONS + " HunyuanImage 2.1 files: hunyuanimage2.1_bf16.safetensors (diffusion_models), "
          "qwen_2.5_vl_7b.safetensors and byt5_small_glyphxl_fp16.safetensors (text_encoders, DualCLIPLoader type "
          "hunyuan_image), hunyuan_image_2.1_vae_fp16.safetensors (vae); 2048 px images. Quoted text (\"CITY PARK\") "
          "becomes byT5 glyph tokens: keep it in the main prompt, which carries it; a region prompt with quotes is "
          "refused. Each region text is refined alone, as the model refines a prompt. Block numbers: double, then "
          "single blocks.")],
    ),
    "regional_hunyuan_video.json": (
        lambda: hunyuan_video_graph("a sunny suburban street, cinematic video, detailed", "regional_hunyuan_video"),
        [("How to use", NOTE_REGIONS + " HunyuanVideo 1.0 files: hunyuan_video_t2v_720p_bf16.safetensors "
          "(diffusion_models), clip_l.safetensors and llava_llama3_fp8_scaled.safetensors (text_encoders, "
          "DualCLIPLoader type hunyuan_video), hunyuan_video_vae_bf16.safetensors (vae). One mask holds in every frame; "
          "for moving regions give each Region node a MASK batch: one mask per latent frame ((length - 1) / 4 + 1, "
          "19 here) or one per video frame (length, 73 here; each group of 4 frames after the first is averaged, as "
          "the VAE compresses them). HunyuanVideo 1.5 works the same way (its own loaders). Block numbers: double, "
          "then single blocks.")],
    ),
    "regional_hidream.json": (
        lambda: hidream_graph("a sunny park, photo, detailed", "regional_hidream"),
        [("How to use", "Two regions on HiDream I1 Dev (28 steps, CFG 1, lcm, shift 6, as the official template). "
          "Region prompts go through the same QuadrupleCLIPLoader as the main prompt: each region brings its T5 "
          "tokens and its Llama states of every layer, and reads in every block as its prompt would alone. Files: "
          "hidream_i1_dev_bf16.safetensors (diffusion_models), clip_l_hidream, clip_g_hidream, "
          "t5xxl_fp8_e4m3fn_scaled, llama_3.1_8b_instruct_fp8_scaled (text_encoders), ae.safetensors (vae). For "
          "HiDream I1 Full: shift 3, 50 steps, CFG 5, uni_pc / simple, and a negative prompt. Block numbers: "
          "double_blocks 0-15, single_blocks 0-31. " + NOTE_REGIONS)],
    ),
    "regional_krea2.json": (
        lambda: krea2_graph("a sunny park, photo, detailed", "regional_krea2"),
        [("How to use", "Two regions on Krea 2 (needs ComfyUI 0.33 or newer, which has the model). Krea 2 runs text "
          "and image through the same single-stream blocks, numbered as double_blocks from 0 (single_blocks does not "
          "apply). Each region text goes through the model's text adapter alone, as a prompt would, so it reads as "
          "the prompt alone. Files: your Krea 2 diffusion model (diffusion_models), the Qwen3-VL-4B text encoder "
          "(text_encoders, CLIPLoader type krea2) and the Wan 2.1 VAE (vae); steps and CFG are starting points, keep "
          "the ones your Krea 2 workflow uses. If the regions split the picture, try image_attention 'open' and soft "
          "masks. " + NOTE_REGIONS)],
    ),
    "regional_chroma_radiance.json": (
        lambda: [
            Node(1, "UNETLoader", {"unet_name": "chroma-radiance.safetensors", "weight_dtype": "default"}),
            Node(2, "CLIPLoader", {"clip_name": "t5xxl_fp16.safetensors", "type": "chroma"}),
            Node(3, "VAELoader", {"vae_name": "pixel_space"}),
        ] + two_regions((2, 0), (1, 0)) + [
            Node(4, "CLIPTextEncode", {"text": "a sunny park, photo, detailed"}, {"clip": (2, 0)}, title="Positive prompt"),
            Node(5, "CLIPTextEncode", {"text": "blurry, low quality"}, {"clip": (2, 0)}, title="Negative prompt"),
            Node(7, "EmptyChromaRadianceLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
            Node(8, "KSampler", {"seed": 42, "steps": 26, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple",
                                 "denoise": 1.0},
                 {"model": (28, 0), "positive": (4, 0), "negative": (5, 0), "latent_image": (7, 0)}),
            Node(9, "VAEDecode", {}, {"samples": (8, 0), "vae": (3, 0)}),
            Node(10, "SaveImage", {"filename_prefix": "regional_chroma_radiance"}, {"images": (9, 0)}),
        ],
        [("How to use", "Two regions on Chroma Radiance, Chroma's transformer over 16 x 16 pixel patches (no VAE: "
          "VAELoader 'pixel_space', EmptyChromaRadianceLatentImage). Checkpoints with sequential text positions work "
          "as the older ones: region texts keep the positions they have as the prompt alone. Files: "
          "chroma-radiance.safetensors (diffusion_models), t5xxl_fp16.safetensors (text_encoders, CLIPLoader type "
          "chroma). " + NOTE_REGIONS)],
    ),
    "taca_flux.json": (
        lambda: flux_loaders() + [
            Node(20, "JointAttentionTACA", {"gamma": 1.2, "sigma_threshold": 0.97}, {"model": (1, 0)}),
        ] + flux_tail((20, 0), "a blue cube on top of a red sphere, to the left of a green cone", "taca_flux"),
        [("How to use", "TACA multiplies the image-to-text attention logits by gamma in the first steps "
          "(sigma >= threshold), improving object counts, colours and spatial relations. gamma 1.2 and threshold 0.97 "
          "are the paper's settings; gamma 1 switches it off.")],
    ),
    "text_scale_sd3.json": (
        lambda: sd3_loaders() + [
            Node(20, "JointAttentionTextScale", {"blocks": "2,7,12,17,22", "scale": 1.5}, {"model": (1, 0)}),
        ] + sd3_tail((20, 0), "three red apples and two green pears on a wooden table", "text_scale_sd3"),
        [("How to use", "Scales the text stream before the chosen joint blocks (SD3.5-Medium has 24, numbered 0-23). "
          "Raise scale for stronger prompt following; mode 'empty' or 'skip' are for exploring what each block does.")],
    ),
    "regional_canvas_flux.json": (
        lambda: flux_loaders() + [
            Node(20, "JointAttentionRegionCanvas", {"width": 1024, "height": 1024, "regions": canvas_default()},
                 {"clip": (2, 0)}),
            Node(21, "JointAttentionRegionalApply", {}, {"model": (1, 0), "regions": (20, 0)}),
            Node(22, "PreviewImage", {}, {"images": (20, 2)}, title="Regions preview"),
        ] + latent_follows_canvas(flux_tail((21, 0), "a sunny park, photo, detailed", "regional_canvas_flux"), 20),
        [("How to use", "Draw regions on the canvas: R rectangle, B brush, E eraser, L lasso, K fill, G snaps to the 16 px "
          "token grid, Ctrl+Z undo, Ctrl+Y or Ctrl+Shift+Z redo. Add a region with '+ Add region', type its prompt and strength in the list, "
          "hide it with the checkbox. The latent's width and height are linked to the canvas's width and "
          "height outputs, so the two always match. Connect an image to "
          "'background' and run once to trace over it. Connect masks (Attention Maps' concept masks, a loaded mask) to "
          "'import_masks' and run once to add them as regions; the masks output has one mask per visible region, and "
          "the button on a region's row saves its mask as a PNG. " + NOTE_REGIONS)],
    ),
    "attention_maps_flux.json": (
        lambda: flux_loaders() + two_regions((2, 0), (1, 0)) + [
            Node(40, "JointAttentionCapture", {}, {"model": (28, 0)}),
        ] + flux_tail((40, 0), "a sunny park, photo, detailed", "attention_maps_flux") + [
            Node(41, "JointAttentionMaps", {"words": "", "filename_prefix": "attention_maps_flux/maps",
                                            "prompt": "a sunny park, photo, detailed"},
                 {"capture": (40, 1), "samples": (8, 0), "clip": (2, 0), "image": (9, 0)}),
            Node(42, "PreviewImage", {}, {"images": (41, 0)}, title="Attention heatmaps"),
        ],
        [("How to use", "Where does each word land? Attention Capture records, while the sampler runs, the exact share "
          "of attention every image token gives to every text token (regions and TACA included), averaged over heads, "
          "blocks and steps. Attention Maps turns it into one heatmap per word (labelled with the T5 tokenizer), "
          "masks you can reuse, the region leakage, and saves PNGs plus the raw maps as .safetensors. Type words in "
          "'words' to show only those; keep 'prompt' equal to the positive prompt.")],
    ),
    "concept_segmentation_flux.json": (
        lambda: flux_loaders() + [
            Node(40, "JointAttentionCapture", {"concepts": "dog, grass, sky, tree"}, {"model": (1, 0), "clip": (2, 0)}),
        ] + flux_tail((40, 0), "a dog running on the grass in a park, trees and a blue sky", "concept_segmentation_flux") + [
            Node(41, "JointAttentionMaps", {"words": "", "filename_prefix": "concept_segmentation_flux/concepts"},
                 {"capture": (40, 1), "samples": (8, 0), "image": (9, 0)}),
            Node(42, "PreviewImage", {}, {"images": (41, 0)}, title="Concept maps"),
            Node(43, "PreviewImage", {}, {"images": (41, 1)}, title="Concept masks (use them as MASK)"),
        ],
        [("How to use", "ConceptAttention (arXiv 2502.04320): type the concepts to segment in Attention Capture "
          "(comma-separated). Each concept is encoded alone and carried through the double blocks beside the model; "
          "the image never attends to it, so the generated image is exactly the same as without the capture. "
          "Attention Maps outputs one heatmap and one mask per concept (softmax over concepts of output-space "
          "similarities, averaged over the last 4 double blocks and all steps). Connect its masks to any node "
          "that takes a MASK.")],
    ),
    "region_lora_two_characters_flux.json": (
        region_lora_two_characters_graph,
        [("How to use", "Two characters, each from its own LoRA, in one picture and one model pass. Put your two "
          "character LoRAs (FLUX.1 LoRAs in any trainer's format: kohya, ai-toolkit / diffusers, ComfyUI) in "
          "ComfyUI/models/loras and pick them as character_a.safetensors and character_b.safetensors in the two "
          "Region LoRA nodes; FLUX.1-dev files: flux1-dev.safetensors (models/diffusion_models), clip_l + t5xxl_fp16 "
          "(models/text_encoders), ae.safetensors (models/vae). Region LoRA 'index' is the region's row in the "
          "canvas's list (1 = first visible region with a prompt): each LoRA acts only on its region's image tokens "
          "(weighted by the mask and strength) and on its prompt's tokens, so the characters' features do not bleed "
          "into each other. Draw each character's area on the canvas and write its trigger words in its prompt; the "
          "main prompt describes the whole scene. Load a LoRA globally (LoraLoaderModelOnly before Apply Regional "
          "Attention) for a style shared by the whole picture. " + NOTE_REGIONS)],
    ),
    "regional_taca_flux.json": (
        lambda: flux_loaders() + two_regions((2, 0), (1, 0)) + [
            Node(40, "JointAttentionTACA", {"gamma": 1.2, "sigma_threshold": 0.97}, {"model": (28, 0)}),
        ] + flux_tail((40, 0), "a sunny park, photo, detailed", "regional_taca_flux"),
        [("How to use", "Regions and TACA together: TACA also sharpens the image's attention to the region prompts.")],
    ),
}


def render(object_info: dict) -> dict:
    """File name -> workflow JSON text, from the graphs above."""
    return {name: json.dumps(build_ui(graph(), object_info, notes), indent=1) + "\n" for name, (graph, notes) in GRAPHS.items()}


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from ja_server import ComfyServer

    OUT.mkdir(exist_ok=True)
    with ComfyServer() as server:
        info = server.object_info()
    for name, text in render(info).items():
        (OUT / name).write_text(text)
        print(f"[build_workflows] wrote example_workflows/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
