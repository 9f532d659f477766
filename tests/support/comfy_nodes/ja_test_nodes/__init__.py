"""Test-only ComfyUI nodes (never shipped): tiny real models and deterministic conditioning.

Loaded by the test server and `make demo` through an extra_model_paths `custom_nodes` entry.
"""
import sys
from pathlib import Path

import torch

_SUPPORT = Path(__file__).resolve().parents[2]
if str(_SUPPORT) not in sys.path:
    sys.path.insert(0, str(_SUPPORT))

import ja_tiny  # noqa: E402

FAMILIES = list(ja_tiny.BUILDERS)


class JATestTinyModel:
    CATEGORY = "ja_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    DESCRIPTION = "A tiny randomly initialised instance of ComfyUI's real model class (tests and demo only)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (FAMILIES, {"default": "flux"}), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def load(self, family, seed):
        return (ja_tiny.build(family, seed=seed).patcher,)


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


NODE_CLASS_MAPPINGS = {
    "JATestTinyModel": JATestTinyModel,
    "JATestEncode": JATestEncode,
    "JATestLatentToImage": JATestLatentToImage,
}
