"""FLUX.2 dev / Klein: double and single blocks numbered per kind; 16 image pixels per latent cell.

FLUX.2 numbers text tokens along a rope axis (0..T-1): region texts get the prompt-alone positions through the
`post_input` patch on the text ids (the default rule). No pooled vector.
"""
from __future__ import annotations

from ..attention.token_weights import IMAGE, JOINT, TEXT
from .base import Family


class Flux2(Family):
    name = "flux2"
    models = "FLUX.2 dev / Klein"
    table_order = 1
    blocks_doc = "double and single, numbered per kind"
    references_doc = "always visible"
    classes = ("Flux2",)
    # Region LoRAs: FLUX's blocks; the modulation layers are outside the blocks (shared by all of them).
    adapter_roles = (
        (r"double_blocks\.\d+\.img_(attn\.(qkv|proj)|mlp\.\d+)", IMAGE),
        (r"double_blocks\.\d+\.txt_(attn\.(qkv|proj)|mlp\.\d+)", TEXT),
        (r"single_blocks\.\d+\.linear[12]", JOINT),
    )
    latent_px = 16
