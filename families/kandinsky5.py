"""Kandinsky 5 (video Lite / Pro and Kandinsky 5 Image, `comfy/ldm/kandinsky5`, ComfyUI 0.33): refused by name.

Read in the host's model code: the text runs through text-only encoder blocks (self-attention over the text alone);
every visual block then runs a self-attention over the image / video tokens alone and a separate cross-attention
from the visual tokens to the text (`TransformerDecoderBlock`: `self_attention`, then `cross_attention`). No
attention call holds text and image tokens as one sequence, and that joint [text ; image] attention is what every
feature of the pack reshapes (region masks over it, TACA's image-query x text-key logits, the text stream per block,
maps read from its probabilities). Its attention does receive `transformer_options`, so it is not out of reach; it
is another kind of model, the kind regional packs for UNets and cross-attention DiTs handle.
"""
from __future__ import annotations

from .base import Family


class Kandinsky5(Family):
    name = "kandinsky5"
    models = "Kandinsky 5 (video, Image)"
    table_order = 110
    classes = ("Kandinsky5", "Kandinsky5Image")
    refused = ("cross-attention, no joint text-image attention: its image / video tokens attend to the text through a "
               "separate cross-attention layer, never in one joint attention with it, which is the attention every "
               "feature of this pack works on")
