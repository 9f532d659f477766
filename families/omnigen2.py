"""OmniGen2 (`comfy/ldm/omnigen/omnigen2.py`): its layer hooks and region texts as the prompt alone.

OmniGen2 runs context-refiner layers over the caption alone, noise-refiner layers over the image alone (and
reference-image refiners over the reference latents), then joint layers over [caption ; reference images ; image].
Text tokens take rope position p on all three axes (p = 0..n-1, n = the conditioning's `num_tokens`); the image's
axis-0 position is n, its axes 1 and 2 its token row and column. The host offers no block patches for these layers,
only the attention override, so the pack wraps the model's layer lists through ComfyUI's object patches, as it does
for NextDiT (families/z_image.py): the very same layer modules under the same names.

Region texts are appended after the prompt (`num_tokens` stays the prompt's, so the prompt and the image keep the
rope rows they have without regions, bit for bit):
- every caption-refiner layer gets a block-diagonal mask (each text is refined alone) and each region text's rope
  rows are those of positions 0..T_r-1, as the prompt alone;
- in the joint layers, where the host's rope table has no rows for region texts, each region text gets the rows of
  axis-0 positions n - T_r .. n - 1 and axis-1/2 positions 0..T_r-1: as the prompt alone, it ends on axis 0 where
  the image starts, so its offsets to every image token on every axis are those it has as the prompt alone (rope
  depends on those offsets only).
OmniGen2's reference images sit between the text and the image, a layout the pack's features do not place; they
are refused with a message.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch

from ..attention.forward import BlockRef, ForwardState, TextStream
from ..attention.token_weights import JOINT as JOINT_SEQUENCE
from ..attention.token_weights import SHARED
from .base import Family
from .z_image import HookedLayer, HookedLayers, caption_mask, rebind_layer_lists, wrap_layer_lists

CAPTION_REFINER, JOINT = "context_refiner", "layers"
LAYER_LISTS = (CAPTION_REFINER, "noise_refiner", "ref_image_refiner", JOINT)


class OmniGen2(Family):
    name = "omnigen2"
    models = "OmniGen2"
    table_order = 6
    blocks_doc = "double_blocks = joint layers from 0 (OmniGen2: 0-31)"
    references_doc = "reference images refused with a message"
    classes = ("Omnigen2",)  # Boogu, built on it in 0.33, is not this model: it is not named here
    diffusion_classes = ("OmniGen2Transformer2DModel",)
    # Region LoRAs: the joint layers run [text ; image]; the refiners (each text, the image, the reference images
    # alone) are outside the numbered blocks.
    adapter_roles = (
        (r"layers\.\d+\.(attn\.(to_[qkv]|to_out\.0)|feed_forward\.linear_[123])", JOINT_SEQUENCE),
        (r"layers\.\d+\.norm1\.linear", SHARED),
    )
    double_blocks, single_blocks, text_input = "layers", "", "time_caption_embed"
    context_encoders = ("qwen25_3b",)
    chat_template = True
    concepts = False
    reference_images = False
    blocks_help = ("double_blocks are the joint layers (OmniGen2: 0-31); the context, noise and reference refiners "
                   "are not numbered")

    def hook_blocks(self, m, hooks) -> None:
        """OmniGen2 offers no block patches: wrap the model's layer lists on the clone `m` (object patches)."""
        wrap_layer_lists(m, LAYER_LISTS, OmniGen2Layers, hooks)

    def rebind(self, clone) -> None:
        rebind_layer_lists(clone, LAYER_LISTS, OmniGen2Layers)

    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        if kwargs.get("ref_latents"):
            return ("the conditioning carries reference images for OmniGen2 (reference latents, placed between the "
                    "text and the image), which this pack's nodes do not support on OmniGen2; remove the reference "
                    "latents from the conditioning, or sample without this pack's nodes")
        return None

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # text positions are set in the layer hooks' rope tables

    def text_features(self, dm):
        embed = getattr(dm, self.text_input, None)
        layer = getattr(embed, "caption_embedder", (None, None))[1]
        return getattr(layer, "in_features", None)


class OmniGen2Layers(HookedLayers):
    @property
    def layer_class(self):
        return OmniGen2Layer


class OmniGen2Layer(HookedLayer):
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        if self.role == JOINT:
            return self.joint(BlockRef("double", self.index, self.index), args, kwargs)
        return self.refiner(args, kwargs)

    def joint(self, ref: BlockRef, args, kwargs):
        """A joint layer over [text ; reference images ; image]: (hidden states, mask, rope table, ...)."""
        block = self.hooks.enter(kwargs.get("transformer_options") or {}, ref)
        if block is None or not args:
            return self.layer(*args, **kwargs)
        state = block.state
        text = TextStream(args[0], 0, state.n_context)
        if block.edit_text(text):
            return args[0]  # skipped
        args = (text.tensor,) + tuple(args[1:])
        if state.region_lens and len(args) > 2:
            args = (args[0], args[1], joint_rope(state, args[2])) + tuple(args[3:])
        return self.layer(*args, **{**kwargs, "transformer_options": block.options})

    def refiner(self, args, kwargs):
        """A refiner layer (caption alone, image alone, reference images alone), outside the numbered blocks."""
        options = kwargs.get("transformer_options") or {}
        entered = self.hooks.outside_blocks(options, self.role)
        if entered is None:
            return self.layer(*args, **kwargs)
        state, options = entered
        kwargs = {**kwargs, "transformer_options": options}
        if self.role == CAPTION_REFINER and state.region_lens and len(args) > 2:
            x, mask, rope = args[0], args[1], args[2]
            # A caption padding mask never comes with regions: the forward refuses that combination first.
            mask = caption_mask(state, x) if mask is None else mask
            args = (x, mask, caption_rope(state, rope)) + tuple(args[3:])
        return self.layer(*args, **kwargs)


def _text_rows(state: ForwardState, table: torch.Tensor, axis0_start: int, length: int) -> torch.Tensor:
    """Rope rows of text positions p = 0..length-1, at axis-0 position axis0_start + p and axis-1/2 position p,
    from the model's own rope embedder (as the host builds its table: int32 ids, rows [B, L, 1, D/2, 2, 2])."""
    ids = torch.arange(length, dtype=torch.int32, device=table.device).reshape(1, length, 1).repeat(1, 1, 3)
    ids[..., 0] += axis0_start
    rows = state.host_model.rope_embedder.rope_embedder(ids).movedim(1, 2)
    return rows.to(dtype=table.dtype).expand(table.shape[0], *rows.shape[1:])


def caption_rope(state: ForwardState, table: torch.Tensor) -> torch.Tensor:
    """The caption refiners' rope table with each region text's rows those of positions 0..T_r-1 (the host leaves
    rows past the prompt's `num_tokens` zero). Made once per forward."""
    if not torch.is_tensor(table) or table.ndim < 4 or table.shape[1] != state.n_context:
        return table
    cached = state.tables.get(("omnigen2", "caption rope"))
    if cached is not None and cached[0] is table:
        return cached[1]
    fixed, start = table.clone(), state.n_txt
    for length in state.region_lens:
        fixed[:, start:start + length] = _text_rows(state, table, 0, length)
        start += length
    state.tables[("omnigen2", "caption rope")] = (table, fixed)
    return fixed


def joint_rope(state: ForwardState, table: torch.Tensor) -> torch.Tensor:
    """The joint layers' rope table with rows for the region texts inserted after the prompt's: region text r at
    axis-0 positions n - T_r .. n - 1 (it ends where the image starts, as the prompt alone does), axes 1 and 2 at
    0..T_r-1. The host's table holds rows for the prompt, the reference images and the image only. Made once per
    forward: every layer gets the same table."""
    if not torch.is_tensor(table) or table.ndim < 4:
        return table
    cached = state.tables.get(("omnigen2", "joint rope"))
    if cached is not None and cached[0] is table:
        return cached[1]
    n = state.n_txt
    parts = [table[:, :n]] + [_text_rows(state, table, n - length, length) for length in state.region_lens]
    fixed = torch.cat(parts + [table[:, n:]], dim=1)
    state.tables[("omnigen2", "joint rope")] = (table, fixed)
    return fixed
