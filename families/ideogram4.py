"""Ideogram 4 (ComfyUI's `Ideogram4`, `comfy/ldm/ideogram4`): one stream of layers over [text ; image].

The text encoder (Qwen3-VL-8B) hands the model 13 of its hidden layers per token side by side; the model normalises
and projects them per token (no attention across the text before the layers), so region texts appended to the prompt
get the features they have as the prompt. Text tokens take positions 0, 1, ... on all three rope axes, counted along
the whole context; image tokens sit at a fixed offset (65536) whatever the text length. The latent is already
patchified: one latent cell (16 image pixels) is one token.

The host offers no block patches and no `post_input` patch for this model: the pack wraps its `layers` list through
ComfyUI's object patches (`ModelPatcher.add_object_patch`, on the pack's clone), as it does NextDiT's and Krea 2's. A
wrapped layer enters the block for the pack, lets the features edit the text rows of the stream (or skip the layer),
and gives each region text the rope rows of positions 0..T_r-1 (`as_prompt_alone` on the table the layers get), the
rows it has as the prompt alone; the prompt's and the image's rows are the host's own.
"""
from __future__ import annotations

from functools import partial

import torch

from ..attention.forward import BlockRef, ForwardState
from ..attention.layout import as_prompt_alone
from ..attention.token_weights import JOINT, SHARED
from .base import Family

LAYERS = "layers"
ROPE = ("ideogram4", "rope")  # ForwardState.tables entry: (the host's table, the table with region rows renumbered)


class Ideogram4(Family):
    name = "ideogram4"
    models = "Ideogram 4"
    table_order = 7
    blocks_doc = "double_blocks = its layers from 0 (0-33 at the model's default size)"
    classes = ("Ideogram4",)
    diffusion_classes = ("Ideogram4Transformer2DModel",)
    # Region LoRAs: the layers run one joint sequence, text first.
    adapter_roles = (
        (r"layers\.\d+\.(attention\.(qkv|o)|feed_forward\.w[123])", JOINT),
        (r"layers\.\d+\.adaln_modulation", SHARED),
    )
    double_blocks, single_blocks, text_input, text_norm = LAYERS, "", "llm_cond_proj", "llm_cond_norm"
    context_encoders = ("qwen3vl_8b",)
    chat_template = True  # the encoder keeps the whole user turn (`<|im_start|>user\n{}<|im_end|>...`)
    latent_px = 16
    concepts = False  # one stream: no text stream of its own to carry the concepts through
    reference_images = False  # the model takes no reference images
    blocks_help = "double_blocks are Ideogram 4's layers (0-33 at the model's default size); single_blocks does not apply"

    def patch_size(self, dm) -> int:
        return 1  # the latent comes patchified: a latent cell is a token

    def hook_blocks(self, m, hooks) -> None:
        key = f"diffusion_model.{LAYERS}"
        current = m.get_model_object(key)
        if not isinstance(current, HookedLayers):
            m.add_object_patch(key, HookedLayers(current, hooks))

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: its object patch must wrap its own layers."""
        dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
        key = f"diffusion_model.{LAYERS}"
        found = clone.object_patches.get(key)
        if dm is None or not isinstance(found, HookedLayers):
            return
        own = getattr(dm, LAYERS)
        if isinstance(own, HookedLayers):  # copied while the patches were applied
            own = torch.nn.ModuleList(list(torch.nn.ModuleList.__iter__(own)))
        clone.object_patches = {**clone.object_patches, key: HookedLayers(own, found.hooks)}

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # the forward runs no `post_input` patch; region rows are renumbered in the layers' rope table


class HookedLayers(torch.nn.ModuleList):
    """Ideogram 4's layer list, as an object patch: the same modules under the same names; iterating yields
    `HookedLayer`s."""

    def __init__(self, layers, hooks):
        super().__init__(list(layers))
        self.hooks = hooks  # the integration layer's block hooks (integration/blocks.py)

    def __iter__(self):
        for index, layer in enumerate(super().__iter__()):
            yield HookedLayer(layer, index, self.hooks)


class HookedLayer:
    def __init__(self, layer, index: int, hooks):
        self.layer, self.index, self.hooks = layer, index, hooks

    # Under torch.compile this frame runs eagerly (it reads per-step Python state); the layer is compiled as usual.
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        entered = self.hooks.enter(options, BlockRef("double", self.index, self.index))
        if entered is None or len(args) < 3:
            return self.layer(*args, **kwargs)
        # The host calls layer(h, attn_mask, freqs_cis, adaln_input, transformer_options=...).
        state = entered.state
        key, text = _family_of(state).block_text(state, {"img": args[0]})
        if entered.edit_text(text):
            return args[0]
        inputs = {key: text.tensor, "attn_mask": args[1], "pe": prompt_alone_rope(state, args[2]),
                  "vec": args[3] if len(args) > 3 else None, "transformer_options": entered.options}
        entered.before(inputs)
        rest = tuple(args[4:])

        def run(given):
            kw = {**kwargs, "transformer_options": given["transformer_options"]}
            extra = (given["vec"],) if len(args) > 3 else ()
            return {"img": self.layer(given["img"], given["attn_mask"], given["pe"], *extra, *rest, **kw)}

        output = run(inputs)
        entered.after(inputs, run, output)
        return output["img"]


def _family_of(state: ForwardState) -> Family:
    from . import named  # the registry imports this module: look the family up when a layer runs

    return named(state.family)


def prompt_alone_rope(state: ForwardState, table):
    """The layers' rope table ([1, L, 1, D/2, 2, 2], sequence on dim 1) with each region text's rows those of
    positions 0..T_r-1 (text positions count from 0 on every axis). Made once per forward: every layer gets the same
    table."""
    if not state.region_lens or not torch.is_tensor(table) or table.ndim < 2 or table.shape[1] < state.n_context:
        return table
    cached = state.tables.get(ROPE)
    if cached is None or cached[0] is not table:
        cached = state.tables[ROPE] = (table, as_prompt_alone(table, 1, state.n_txt, state.region_lens))
    return cached[1]
