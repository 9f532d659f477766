"""FLUX.2 dev / Klein: double and single blocks numbered per kind; 16 image pixels per latent cell.

FLUX.2 numbers text tokens along a rope axis (0..T-1): region texts get the prompt-alone positions through the
`post_input` patch on the text ids (the default rule). No pooled vector.
"""
from __future__ import annotations

from .base import Family


class Flux2(Family):
    name = "flux2"
    models = "FLUX.2 dev / Klein"
    table_order = 1
    blocks_doc = "double and single, numbered per kind"
    references_doc = "always visible"
    classes = ("Flux2",)
    latent_px = 16
