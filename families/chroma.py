"""Chroma: FLUX.1's block layout with modulation from an approximator instead of a pooled vector; zero text ids."""
from __future__ import annotations

from ..attention.token_weights import IMAGE, JOINT, TEXT
from .base import Family


class Chroma(Family):
    name = "chroma"
    models = "Chroma"
    table_order = 2
    blocks_doc = "double 0-18, single 0-37"
    references_doc = "-"
    classes = ("Chroma",)
    # Region LoRAs: FLUX's blocks; modulation comes from the distilled guidance layer, outside the blocks.
    adapter_roles = (
        (r"double_blocks\.\d+\.img_(attn\.(qkv|proj)|mlp\.\d+)", IMAGE),
        (r"double_blocks\.\d+\.txt_(attn\.(qkv|proj)|mlp\.\d+)", TEXT),
        (r"single_blocks\.\d+\.linear[12]", JOINT),
    )
