"""Qwen-Image / Qwen-Image-Edit: 60 dual-stream blocks over [text ; image ; reference images].

Text rope positions are numbered from `txt_start` along the whole context, in the rope table the blocks get. Where
the host has a `post_input` patch for this model (0.29 on), the text ids are renumbered there (the default rule) and
the host builds the table from them; before that, the table's region-text rows are renumbered in the block patches.
The text encoder (Qwen2.5-VL) wraps the prompt in a chat template and cuts the context to start at the user's text.
"""
from __future__ import annotations

import torch

from ..attention.forward import ForwardState
from ..attention.layout import as_prompt_alone
from .base import Family


class QwenImage(Family):
    name = "qwen_image"
    models = "Qwen-Image / Qwen-Image-Edit"
    table_order = 4
    blocks_doc = "double_blocks 0-59"
    references_doc = "Edit: always visible"
    classes = ("QwenImage",)
    double_blocks, single_blocks, text_input, text_norm = "transformer_blocks", "", "txt_in", "txt_norm"
    context_encoders = ("qwen25_7b",)
    chat_template = True
    cuts_to_user_text = True
    blocks_help = "60 dual-stream blocks 0-59"

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        pe = args.get("pe")
        if not state.region_lens or not torch.is_tensor(pe):
            return args
        return {**args, "pe": region_rope_rows(state, pe)}


def region_rope_rows(state: ForwardState, pe: torch.Tensor) -> torch.Tensor:
    """The block's rope table (sequence on dim 2: [B, 1, L, ...]) with each region text's rows those of the
    prompt-alone positions; the host's own table when the text ids were already renumbered (`post_input`). Made once
    per forward: every block gets the same table."""
    if pe.ndim < 3 or pe.shape[2] < state.n_context or state.text_ids_renumbered:
        return pe
    cached = state.tables.get(("qwen_image", "rope"))
    if cached is not None and cached[0] is pe:
        return cached[1]
    fixed = as_prompt_alone(pe, 2, state.n_txt, state.region_lens)
    state.tables[("qwen_image", "rope")] = (pe, fixed)
    return fixed
