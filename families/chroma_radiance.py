"""Chroma Radiance: Chroma's blocks over pixel-space patches (16 x 16 pixels per token, no VAE), decoded by a NeRF
head from the blocks' image tokens.

Newer checkpoints number text positions along rope axis 0 (`use_sequential_txt_ids`), computed inside the model's own
forward, which offers no `post_input` patch: region texts get their prompt-alone positions in the rope table the
blocks receive (the rule Qwen-Image uses before 0.29). With zero text ids (older checkpoints) every text row of the
table is the same and the rule changes nothing.
"""
from __future__ import annotations

from ..attention.forward import ForwardState
from ..attention.token_weights import IMAGE, JOINT, TEXT
from .base import Family, rope_rows_as_prompt_alone


class ChromaRadiance(Family):
    name = "chroma_radiance"
    models = "Chroma Radiance"
    table_order = 2.5
    blocks_doc = "double 0-18, single 0-37"
    classes = ("ChromaRadiance",)
    # Region LoRAs: Chroma's blocks; the NeRF head and the distilled guidance layer are outside the blocks.
    adapter_roles = (
        (r"double_blocks\.\d+\.img_(attn\.(qkv|proj)|mlp\.\d+)", IMAGE),
        (r"double_blocks\.\d+\.txt_(attn\.(qkv|proj)|mlp\.\d+)", TEXT),
        (r"single_blocks\.\d+\.linear[12]", JOINT),
    )
    latent_px = 1  # pixel space: a latent cell is a pixel

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # the model's forward runs no `post_input` patch; the rope table is fixed in the blocks

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        return rope_rows_as_prompt_alone(state, args)
