"""HiDream-O1-Image: refused by name.

HiDream-O1 is one Qwen-VL language model over `[prompt token ids ; image patches]` in pixel space. Its prompt is
the autoregressive prefix of that sequence: token ids embedded inside the model (with the reference images' vision
tokens spliced in and multi-axis rope positions built by its conditioning), not text features beside the image.
Every layer's attention is split in two (`comfy.ldm.hidream_o1.attention.make_two_pass_attention`): the prefix
attends causally through PyTorch's SDPA directly, never through ComfyUI's attention override, and only the image
half's queries reach the override, against the whole sequence's keys. So a region text could neither be kept apart
from the prompt (in the prefix every token sees all tokens before it, outside any hook) nor read as the prompt
alone, and the override never sees the text rows TACA, the maps and the regional plan are written for.
"""
from __future__ import annotations

from .base import Family


class HiDreamO1(Family):
    name = "hidream_o1"
    models = "HiDream-O1-Image"
    table_order = 7
    classes = ("HiDreamO1",)
    refused = ("its prompt is the causal prefix of one language-model sequence, whose attention runs through PyTorch's "
               "SDPA directly, outside ComfyUI's attention override (only the image half's queries reach it), so "
               "region texts cannot be kept apart or read as the prompt alone and TACA and the maps cannot reach "
               "its text rows; sample HiDream-O1 without this pack's nodes")
