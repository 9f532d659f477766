"""Test-only ComfyUI nodes (never shipped): tiny real models and deterministic conditioning.

Loaded by the test server and `make demo` through an extra_model_paths `custom_nodes` entry.
"""
import sys
from pathlib import Path

import torch

_SUPPORT = Path(__file__).resolve().parents[2]
if str(_SUPPORT) not in sys.path:
    sys.path.insert(0, str(_SUPPORT))

import ja_compose  # noqa: E402
import ja_tiny  # noqa: E402

FAMILIES = list(ja_tiny.BUILDERS)
FULL_DEPTH = {"flux": {"depth": 19, "depth_single": 38}, "flux2": {"depth": 8, "depth_single": 24},
              "chroma": {"depth": 19, "depth_single": 38}, "sd3": {"num_blocks": 24},
              "qwen_image": {"depth": 60}, "hidream": {"depth": 16, "depth_single": 32}}


class JATestTinyModel:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    DESCRIPTION = "A tiny randomly initialised instance of ComfyUI's real model class (tests and demo only)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (FAMILIES, {"default": "flux"}), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})},
                "optional": {"full_depth": ("BOOLEAN", {"default": False, "tooltip": "As many blocks as the real model "
                                                        "(FLUX 19+38, SD3.5-M 24), so example block lists are valid."})}}

    def load(self, family, seed, full_depth=False):
        return (ja_tiny.build(family, seed=seed, **(FULL_DEPTH.get(family, {}) if full_depth else {})).patcher,)


class JATestEncode:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    DESCRIPTION = "Deterministic stand-in text embedding for the tiny models: same text, same tensor."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "family": (FAMILIES, {"default": "flux"}),
            "text": ("STRING", {"multiline": True, "default": ""}),
            "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
        }}

    def encode(self, family, text, tokens):
        dims = ja_tiny.TinyModel(None, family, ja_tiny.CONTEXT_DIM, ja_tiny.POOLED_DIM, 0, 0, 0)
        if family == "hidream":  # its pooled vector and the Llama states of every layer
            dims = ja_tiny.TinyModel(None, family, ja_tiny.CONTEXT_DIM, ja_tiny.HIDREAM_POOLED_DIM, 0, 0, 0,
                                     ja_tiny.HIDREAM_LLAMA_LAYERS)
        return (ja_tiny.make_cond(dims, seed=ja_tiny.text_seed(text), n_tokens=tokens),)


class JATestLatentToImage:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "convert"
    DESCRIPTION = "Latent to RGB by a fixed projection (like latent previews), so tests can save images without a VAE."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",)}}

    def convert(self, samples):
        x = samples["samples"].float()
        g = torch.Generator().manual_seed(1234)
        proj = torch.randn(3, x.shape[1], generator=g) / x.shape[1] ** 0.5
        rgb = torch.einsum("bchw,oc->bhwo", x, proj)
        rgb = torch.sigmoid(rgb * 2.0)
        rgb = rgb.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
        return (rgb.contiguous(),)


class JATestLatentStats:
    CATEGORY = "ja_test"
    RETURN_TYPES = ()
    FUNCTION = "stats"
    OUTPUT_NODE = True
    DESCRIPTION = "Reports whether a latent is finite (tests read it from /history)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",)}}

    def stats(self, samples):
        x = samples["samples"]
        return {"ui": {"ja_latent": [{"finite": bool(torch.isfinite(x).all()), "shape": list(x.shape)}]}}


class JATestTinyCLIP:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    DESCRIPTION = ("A tiny real text encoder (CLIP-L architecture, the host's Z-Image Qwen3 encoder with its "
                   "tokenizer and chat template, or the host's HiDream encoder (T5 and Llama); random weights); "
                   "replaces CLIP loaders in tests.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})},
                "optional": {"encoder": (["clip_l", "qwen3_4b", "hidream"], {"default": "clip_l"})}}

    def load(self, seed, encoder="clip_l"):
        if encoder == "hidream":
            return (ja_tiny.tiny_hidream_clip(seed),)
        if encoder == "qwen3_4b":
            return (ja_tiny.tiny_llm_clip("qwen3_4b", seed),)
        return (ja_tiny.tiny_clip(seed),)


class JATestTinyVAE:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    DESCRIPTION = "A tiny real VAE (TAESD architecture, random weights); replaces VAE loaders in tests."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (FAMILIES, {"default": "flux"})}}

    def load(self, family):
        # Wan 2.1 latents (16 channels, a frame axis); HunyuanVideo 1.0's are 16 channels with frames 4 to 1 too
        if family in ("qwen_image", "krea2", "hunyuan_video"):
            return (ja_tiny.tiny_wan_vae(),)
        if family == "chroma_radiance":  # pixel space: the host's own pass-through VAE (VAELoader "pixel_space")
            import comfy.sd

            return (comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)}),)
        return (ja_tiny.tiny_vae({"flux2": 128, "hunyuan_image": 64}.get(family, 16)),)


class JATestTinyCheckpoint:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    DESCRIPTION = "Tiny model, text encoder and VAE together; replaces CheckpointLoaderSimple in tests."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (FAMILIES, {"default": "sd3"})}}

    def load(self, family):
        model = ja_tiny.build(family, **FULL_DEPTH.get(family, {})).patcher
        return (model, ja_tiny.tiny_clip(), ja_tiny.tiny_vae(128 if family == "flux2" else 16))


class JATestBypassAttention:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    DESCRIPTION = ("The model with its forward swapped for one that runs without ComfyUI's attention override "
                   "('attention') or without any of its patch points ('forward'), as packs with their own model "
                   "implementation do (tests of the pack's no-silent-no-op check).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "mode": (list(ja_compose.BYPASS_MODES), {"default": "attention"})}}

    def apply(self, model, mode):
        return (ja_compose.bypass(model, mode),)


NODE_CLASS_MAPPINGS = {
    "JATestBypassAttention": JATestBypassAttention,
    "JATestTinyCLIP": JATestTinyCLIP,
    "JATestTinyVAE": JATestTinyVAE,
    "JATestTinyCheckpoint": JATestTinyCheckpoint,
    "JATestTinyModel": JATestTinyModel,
    "JATestEncode": JATestEncode,
    "JATestLatentToImage": JATestLatentToImage,
    "JATestLatentStats": JATestLatentStats,
}
