"""Mage-Flow: Qwen-Image's dual-stream blocks at patch 1 over FLUX.2's 128-channel latent (16 image pixels per
token), with text from Qwen3-VL-4B.

The model's own class is built on Qwen-Image's (`MageFlow(QwenImage)`), but it is its own family here: its forward is
its own (`MageFlowTransformer2DModel`), text tokens carry no rope positions (zero text ids: every region text already
reads as the prompt alone), and its latent cells are FLUX.2's. Its text encoder wraps the prompt in Qwen-Image's chat
template and cuts the context to start at the user's text.
"""
from __future__ import annotations

from ..attention.token_weights import IMAGE, SHARED, TEXT
from .base import Family


class MageFlow(Family):
    name = "mage_flow"
    models = "Mage-Flow"
    table_order = 4.5
    blocks_doc = "double_blocks (all dual-stream)"
    references_doc = "always visible"
    classes = ("MageFlow",)
    diffusion_classes = ("MageFlowTransformer2DModel",)
    # Region LoRAs: Qwen-Image's block layout (attn.to_* / img_mlp image, attn.add_* / to_add_out / txt_mlp text).
    adapter_roles = (
        (r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0)|img_mlp\.net\.(0\.proj|2))", IMAGE),
        (r"transformer_blocks\.\d+\.(attn\.(add_[qkv]_proj|to_add_out)|txt_mlp\.net\.(0\.proj|2))", TEXT),
        (r"transformer_blocks\.\d+\.(img|txt)_mod\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input, text_norm = "transformer_blocks", "", "txt_in", "txt_norm"
    latent_px = 16
    context_encoders = ("qwen3vl_4b",)
    chat_template = True
    cuts_to_user_text = True
    blocks_help = "dual-stream blocks, numbered from 0"
