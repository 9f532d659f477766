"""Boogu (`comfy/ldm/boogu`, ComfyUI 0.33): OmniGen2's refiners and rope, then double-stream layers, then OmniGen2's
single-stream joint layers.

A model of its own, built on OmniGen2's classes in the host (`Boogu(Omnigen2)`), named here after being proven on its
own tiny model. Its double-stream layers attend jointly over [text ; image] with separate projections per stream
(`img_instruct_attn`, text first), then run an image-only self-attention (`img_self_attn`, which the pack leaves
alone: no text enters it); its single-stream layers are OmniGen2's joint layers over [text ; image]. Like OmniGen2
it offers no block patches, so the pack wraps its layer lists through ComfyUI's object patches (families/omnigen2.py,
families/z_image.py), and region texts follow OmniGen2's rule: refined alone, with the rope positions they have as
the prompt alone towards the image.

The host takes the double-stream layers' image rope rows from the joint table past the text (`rotary_emb[:,
L_text:]`), which counts the region texts' rows the host's table does not have: the hooks give those layers the
host's own image rows (the rows past the prompt).
"""
from __future__ import annotations

from functools import partial

import torch

from ..attention.forward import BlockRef, TextStream
from ..attention.token_weights import IMAGE, JOINT, SHARED, TEXT
from .omnigen2 import CAPTION_REFINER, OmniGen2, OmniGen2Layer, joint_rope
from .z_image import HookedLayers, rebind_layer_lists, wrap_layer_lists

DOUBLE, SINGLE = "double_stream_layers", "single_stream_layers"
LAYER_LISTS = (CAPTION_REFINER, "noise_refiner", "ref_image_refiner", DOUBLE, SINGLE)


class Boogu(OmniGen2):
    name = "boogu"
    models = "Boogu"
    table_order = 6.5
    blocks_doc = "double-stream layers as double_blocks, single-stream layers as single_blocks, each from 0"
    classes = ("Boogu",)
    diffusion_classes = ("BooguTransformer2DModel",)
    # The host's Boogu encoder (Qwen3-VL-8B, BooguTokenizer): it keeps its whole chat template (system turn, user
    # turn) in the context, as OmniGen2's does, so the shared chat-template rule places the words.
    context_encoders = ("qwen3vl_8b",)
    # Region LoRAs: double-stream layers keep the instruction (text) and image streams apart except the joint attention's
    # shared output projection over [text ; image]; single-stream layers run [text ; image]; refiners are outside.
    adapter_roles = (
        (r"double_stream_layers\.\d+\.(img_instruct_attn\.processor\.img_(to_[qkv]|out)|img_self_attn\.(to_[qkv]|to_out\.0)"
         r"|img_feed_forward\.linear_[123])", IMAGE),
        (r"double_stream_layers\.\d+\.(img_instruct_attn\.processor\.instruct_(to_[qkv]|out)"
         r"|instruct_feed_forward\.linear_[123])", TEXT),
        (r"double_stream_layers\.\d+\.img_instruct_attn\.to_out\.0", JOINT),
        (r"single_stream_layers\.\d+\.(attn\.(to_[qkv]|to_out\.0)|feed_forward\.linear_[123])", JOINT),
        (r"(double_stream_layers\.\d+\.(img|instruct)_norm\d|single_stream_layers\.\d+\.norm1)\.linear", SHARED),
    )
    double_blocks, single_blocks = DOUBLE, SINGLE
    blocks_help = ("double_blocks are the double-stream layers, single_blocks the single-stream joint layers, each "
                   "numbered from 0; the refiners are not numbered")

    def hook_blocks(self, m, hooks) -> None:
        wrap_layer_lists(m, LAYER_LISTS, BooguLayers, hooks)

    def rebind(self, clone) -> None:
        rebind_layer_lists(clone, LAYER_LISTS, BooguLayers)

    def refused_inputs(self, kwargs: dict):
        refused = super().refused_inputs(kwargs)
        return refused.replace("OmniGen2", "Boogu") if refused else None


class BooguLayers(HookedLayers):
    @property
    def layer_class(self):
        return BooguLayer


class BooguLayer(OmniGen2Layer):
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        if self.role == SINGLE:  # numbered on after the double-stream layers
            state = self.hooks.forward_state(kwargs.get("transformer_options") or {})
            n_double = state.n_double if state is not None else 0
            return self.joint(BlockRef("single", self.index, n_double + self.index), args, kwargs)
        if self.role == DOUBLE:
            return self.double(args, kwargs)
        return self.refiner(args, kwargs)

    def double(self, args, kwargs):
        """A double-stream layer: (image, text, joint rope table, image rope table, temb, ...) -> (image, text)."""
        block = self.hooks.enter(kwargs.get("transformer_options") or {}, BlockRef("double", self.index, self.index))
        if block is None or len(args) < 4:
            return self.layer(*args, **kwargs)
        state = block.state
        text = TextStream(args[1], 0, state.n_context)
        if block.edit_text(text):
            return args[0], args[1]  # skipped
        args = (args[0], text.tensor) + tuple(args[2:])
        if state.region_lens:
            joint = args[2]
            args = (args[0], args[1], joint_rope(state, joint), joint[:, state.n_txt:]) + tuple(args[4:])
        return self.layer(*args, **{**kwargs, "transformer_options": block.options})
