"""Joint-attention models in current ComfyUI that the pack has not been proven on yet, each refused by name.

These run text and image (or video) tokens through joint attention, so the pack's features could reach them; none
has a family module with the proofs every supported family has (the full-region identity, the half-image mask, the
bit-identities, the dense references through the real sampler). Until one does, a node given one of these models
stops with what it is and why, instead of taking it for another family. When a family module proves one, its class
moves there.
"""
from __future__ import annotations

from .base import Family

_NOT_YET = "joint attention, but the pack has not been proven on it yet"


class PixelDiT(Family):
    name = "pixeldit"
    models = "PixelDiT / PiD (pixel space)"
    table_order = 202
    classes = ("PixelDiTT2I", "PiD")
    refused = _NOT_YET


class ZImagePixelSpace(Family):
    name = "z_image_pixel_space"
    models = "Z-Image pixel space"
    table_order = 203
    classes = ("ZImagePixelSpace",)
    refused = f"{_NOT_YET} (it is built on Lumina-2's class, which is not taken for it)"


class VideoJointModels(Family):
    name = "joint_video"
    models = "CogVideoX, Mochi, SeedVR2, MiniMax-H3 (video)"
    table_order = 204
    classes = ("CogVideoX", "GenmoMochi", "SeedVR2", "MiniMaxH3")
    refused = (f"{_NOT_YET}: the frame masks the pack reads for HunyuanVideo are not checked against this model's own "
               "video token layout")
