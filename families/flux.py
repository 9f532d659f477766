"""FLUX.1 dev / schnell / Kontext: 19 double-stream then 38 single-stream blocks over [text ; image ; reference].

Text ids are all zero, so region texts need no renumbering (the `post_input` patch is a no-op); the pooled CLIP
vector enters the blocks' modulation through `vector_in` (ConceptAttention zeroes it for the concepts). Kontext's
reference-image tokens follow the image and stay visible to every token. Ovis-Image loads as this class: its text
ids count along two rope axes (renumbered by the same `post_input` rule) and its text features pass `txt_norm`.
"""
from __future__ import annotations

from ..attention.token_weights import IMAGE, JOINT, SHARED, TEXT
from .base import Family


class Flux(Family):
    name = "flux"
    models = "FLUX.1 dev / schnell / Kontext"
    table_order = 0
    blocks_doc = "double 0-18, single 0-37 (text scale: 0-56)"
    references_doc = "Kontext: always visible"
    classes = ("Flux",)
    # Region LoRAs: double blocks keep image and text streams apart; single blocks run [text ; image ; references].
    adapter_roles = (
        (r"double_blocks\.\d+\.img_(attn\.(qkv|proj)|mlp\.\d+)", IMAGE),
        (r"double_blocks\.\d+\.txt_(attn\.(qkv|proj)|mlp\.\d+)", TEXT),
        (r"single_blocks\.\d+\.linear[12]", JOINT),
        (r"double_blocks\.\d+\.(img|txt)_mod\.lin|single_blocks\.\d+\.modulation\.lin", SHARED),
    )
    pooled_input = "vector_in"
    # Ovis-Image (a FLUX model on 0.33, detected by its weights) normalises text features before `txt_in`; plain FLUX
    # has none (the layer is absent or None), and ConceptAttention's concepts then go through `txt_in` alone.
    text_norm = "txt_norm"
    context_encoders = ("t5xxl", "qwen3_2b")  # FLUX.1's T5; Ovis-Image's Qwen3 encoder (Ovis 2.5 2B)

    def context_template(self, key, ids):
        """Ovis-Image's encoder (ComfyUI's OvisTEModel) wraps the prompt in "<|im_start|>user\nDescribe the image by
        ... and background: {}<|im_end|>\n<|im_start|>assistant\n<think>..." and keeps the context from its first
        " background" token (id 4004), or from the ":" (id 25) right after it: the user's text follows, up to the
        first <|im_end|> (id 151645)."""
        if key != "qwen3_2b" or 4004 not in ids:
            return None
        begin = ids.index(4004)
        if begin + 1 < len(ids) and ids[begin + 1] == 25:
            begin += 1
        text = begin + 1
        stop = next((i for i in range(text, len(ids)) if ids[i] == 151645), len(ids))
        return begin, text, stop
