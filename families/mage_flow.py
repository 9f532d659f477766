"""Mage-Flow: Qwen-Image's dual-stream blocks at patch 1 over FLUX.2's 128-channel latent (16 image pixels per
token), with text from Qwen3-VL-4B.

The model's own class is built on Qwen-Image's (`MageFlow(QwenImage)`), but it is its own family here: its forward is
its own (`MageFlowTransformer2DModel`), text tokens carry no rope positions (zero text ids: every region text already
reads as the prompt alone), and its latent cells are FLUX.2's. Its text encoder wraps the prompt in Qwen-Image's chat
template and cuts the context to start at the user's text.
"""
from __future__ import annotations

from .base import Family


class MageFlow(Family):
    name = "mage_flow"
    models = "Mage-Flow"
    table_order = 4.5
    blocks_doc = "double_blocks (all dual-stream)"
    references_doc = "always visible"
    classes = ("MageFlow",)
    diffusion_classes = ("MageFlowTransformer2DModel",)
    double_blocks, single_blocks, text_input, text_norm = "transformer_blocks", "", "txt_in", "txt_norm"
    latent_px = 16
    context_encoders = ("qwen3vl_4b",)
    chat_template = True
    cuts_to_user_text = True
    blocks_help = "dual-stream blocks, numbered from 0"
