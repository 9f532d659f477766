"""Qwen-Image / Qwen-Image-Edit: 60 dual-stream blocks over [text ; image ; reference images].

Text rope positions are numbered from `txt_start` along the whole context, in the rope table the blocks get. Where
the host has a `post_input` patch for this model (0.29 on), the text ids are renumbered there (the default rule) and
the host builds the table from them; before that, the table's region-text rows are renumbered in the block patches.
The text encoder (Qwen2.5-VL) wraps the prompt in a chat template and cuts the context to start at the user's text.
"""
from __future__ import annotations

from ..attention.forward import ForwardState
from ..attention.token_weights import IMAGE, SHARED, TEXT
from .base import Family, rope_rows_as_prompt_alone


class QwenImage(Family):
    name = "qwen_image"
    models = "Qwen-Image / Qwen-Image-Edit"
    table_order = 4
    blocks_doc = "double_blocks 0-59"
    references_doc = "Edit: always visible"
    classes = ("QwenImage",)
    # Region LoRAs: attn.to_* and img_mlp act on the image stream, attn.add_*_proj / to_add_out and txt_mlp on the text.
    adapter_roles = (
        (r"transformer_blocks\.\d+\.(attn\.(to_[qkv]|to_out\.0)|img_mlp\.net\.(0\.proj|2))", IMAGE),
        (r"transformer_blocks\.\d+\.(attn\.(add_[qkv]_proj|to_add_out)|txt_mlp\.net\.(0\.proj|2))", TEXT),
        (r"transformer_blocks\.\d+\.(img|txt)_mod\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input, text_norm = "transformer_blocks", "", "txt_in", "txt_norm"
    context_encoders = ("qwen25_7b",)
    chat_template = True
    cuts_to_user_text = True
    blocks_help = "60 dual-stream blocks 0-59"

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        return rope_rows_as_prompt_alone(state, args)
