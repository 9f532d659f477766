"""Ernie-Image (`comfy/ldm/ernie`, ComfyUI 0.33): refused by name.

Read in the host's model code: a single-stream transformer over [image ; text] (joint attention, image first), but
its attention calls `optimized_attention(q, k, v, heads, mask=...)` without `transformer_options`, and its layers
are called with neither `transformer_options` nor block patches (`layer(hidden_states, rotary_pos_emb, temb)`).
The attention override the pack works through is read from `transformer_options`, so it never reaches this
model's attention; making it reach would mean replacing the model's own attention code, which the pack never does.
"""
from __future__ import annotations

from .base import Family


class ErnieImage(Family):
    name = "ernie_image"
    models = "Ernie-Image"
    table_order = 111
    classes = ("ErnieImage",)
    refused = ("its joint attention is called without transformer_options (and its layers take no block patches), so "
               "no attention override can reach it through ComfyUI's hooks")
