"""Krea 2 (ComfyUI's `Krea2`, `comfy/ldm/krea2`): one stream of single-stream blocks over [text ; image ; reference].

The text encoder (Qwen3-VL-4B) hands the model a stack of 12 hidden layers per token; the model's own `txtfusion`
adapter mixes the layers of each token, then refines the whole text with attention across its tokens, before the
blocks run over `[text ; image ; reference images]` (text first: the blocks' text is the first `n_context` tokens of
the stream, the default `block_text` rule). Text positions are all zero, so region texts need no renumbering (the
default `post_input` patch is a no-op here).

The host offers no block patches for these blocks (its hooks are `attn1_patch` / `attn1_output_patch` inside the
attention, `post_input` and the wrappers), and the pack must name each block for the attention calls below it and
edit the text stream before it (Text Scale per Block): the pack wraps the model's `blocks` list through ComfyUI's
object patches (`ModelPatcher.add_object_patch`, on the pack's clone), as it does NextDiT's layers. The wrapped list
holds the very same block modules under the same names; iterating it, which is how the model runs its blocks, yields
callables that enter the block for the pack and then call it with the host's arguments.

Region texts, each as the prompt alone: the refiner attention of `txtfusion` runs across the whole text, so region
texts appended to the prompt would read the prompt (and the prompt them). The pack wraps `txtfusion` too (an object
patch holding the same layers under the same names) and, in a forward with region texts, runs the model's own
`txtfusion` on the prompt and on each region text alone, then joins them: each text's features are those it has
as the prompt (the per-token text MLP after it runs over all rows at once: equal up to float rounding). Its attention calls run outside the numbered blocks and are left alone by design.
"""
from __future__ import annotations

from functools import partial

import torch

from ..attention.forward import BlockRef, ForwardState
from ..attention.token_weights import JOINT
from .base import Family

BLOCKS, TEXT_FUSION = "blocks", "txtfusion"


class Krea2(Family):
    name = "krea2"
    models = "Krea 2"
    table_order = 6
    blocks_doc = "double_blocks = single-stream blocks from 0 (0-27 at the model's default size)"
    references_doc = "always visible"
    classes = ("Krea2",)
    diffusion_classes = ("SingleStreamDiT",)
    # Region LoRAs: the single-stream blocks run [text ; image]; the text fusion layers run before them.
    adapter_roles = (
        (r"blocks\.\d+\.(attn\.(w[qkvo]|gate)|mlp\.(up|gate|down))", JOINT),
    )
    double_blocks, single_blocks, text_input = BLOCKS, "", "txtmlp"
    context_encoders = ("qwen3vl_4b",)
    chat_template = True
    cuts_to_user_text = True  # Krea2TEModel cuts from the second <|im_start|>, past `user\n`, as Qwen-Image's
    concepts = False  # one stream: no text stream of its own to carry the concepts through
    blocks_help = ("double_blocks are Krea 2's single-stream blocks (0-27 at the model's default size); single_blocks "
                   "does not apply")

    def patch_size(self, dm) -> int:
        return int(getattr(dm, "patch", 2))

    def text_features(self, dm):
        """Features per context token: the encoder's 12 hidden layers side by side (txtlayers x txtdim)."""
        layers, width = getattr(dm, "txtlayers", None), getattr(dm, "txtdim", None)
        return layers * width if isinstance(layers, int) and isinstance(width, int) else None

    def hook_blocks(self, m, hooks) -> None:
        """Wrap the model's block list and its text adapter on the clone `m` (object patches; nothing if already
        wrapped): Krea 2 offers no block patches."""
        for name, wrapper in ((BLOCKS, HookedBlocks), (TEXT_FUSION, FusedAlone)):
            key = f"diffusion_model.{name}"
            current = m.get_model_object(key)
            if not isinstance(current, wrapper):
                m.add_object_patch(key, wrapper(current, hooks))

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: its object patches must wrap its own layers."""
        dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
        if dm is None:
            return
        for name, wrapper in ((BLOCKS, HookedBlocks), (TEXT_FUSION, FusedAlone)):
            key = f"diffusion_model.{name}"
            found = clone.object_patches.get(key)
            if isinstance(found, wrapper):
                clone.object_patches = {**clone.object_patches, key: wrapper(unwrapped(getattr(dm, name)), found.hooks)}


def unwrapped(module):
    """The model's own module behind one of the pack's wrappers (a copy made while the patches were applied)."""
    if isinstance(module, HookedBlocks):
        return torch.nn.ModuleList(list(torch.nn.ModuleList.__iter__(module)))
    if isinstance(module, FusedAlone):
        return module.inner
    return module


class HookedBlocks(torch.nn.ModuleList):
    """Krea 2's block list, as an object patch: the same modules under the same names; iterating yields
    `HookedBlock`s, which enter the block for the pack and pass the host's arguments on."""

    def __init__(self, blocks, hooks):
        super().__init__(list(blocks))
        self.hooks = hooks  # the integration layer's block hooks (integration/blocks.py)

    def __iter__(self):
        for index, block in enumerate(super().__iter__()):
            yield HookedBlock(block, index, self.hooks)


class HookedBlock:
    def __init__(self, block, index: int, hooks):
        self.block, self.index, self.hooks = block, index, hooks

    # As the other families' block hooks: under torch.compile this frame runs eagerly (it reads per-step Python
    # state), the block it calls is compiled as usual.
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        entered = self.hooks.enter(options, BlockRef("double", self.index, self.index))
        if entered is None or not args:
            return self.block(*args, **kwargs)
        state = entered.state
        family = _family_of(state)
        # The host calls block(x, vec, freqs, mask, timestep_zero_index=..., transformer_options=...); x is the one
        # stream [text ; image ; reference].
        key, text = family.block_text(state, {"img": args[0]})
        if entered.edit_text(text):
            return args[0]  # skipped: the stream passes on as it came
        inputs = {key: text.tensor, "vec": args[1] if len(args) > 1 else None,
                  "pe": args[2] if len(args) > 2 else None, "transformer_options": entered.options}
        entered.before(inputs)
        rest = tuple(args[3:])

        def run(given):
            kw = {**kwargs, "transformer_options": given["transformer_options"]}
            return {"img": self.block(given["img"], given["vec"], given["pe"], *rest, **kw)}

        output = run(inputs)
        entered.after(inputs, run, output)
        return output["img"]


def _family_of(state: ForwardState) -> Family:
    from . import named  # the registry imports this module: look the family up when a block runs

    return named(state.family)


class FusedAlone(torch.nn.Module):
    """Krea 2's text adapter (`txtfusion`), as an object patch: the same layers under the same names (its parameter,
    buffer and child dictionaries are the model's own), calling the model's module. In a forward with region texts
    it runs on the prompt and on each region text alone, and the results are joined in the context's order."""

    def __init__(self, inner, hooks):
        super().__init__()
        object.__setattr__(self, "inner", inner)  # not a child: its layers are this module's children already
        self._parameters, self._buffers, self._modules = inner._parameters, inner._buffers, inner._modules
        self.hooks = hooks

    def forward(self, x, mask=None, transformer_options=None):
        options = transformer_options or {}
        entered = self.hooks.outside_blocks(options, TEXT_FUSION)
        if entered is None:
            return self.inner(x, mask=mask, transformer_options=options)
        state, options = entered
        lengths = (state.n_txt,) + tuple(state.region_lens)
        if not state.region_lens or x.shape[1] != sum(lengths):
            return self.inner(x, mask=mask, transformer_options=options)
        if mask is not None:
            # The host passes none; a text mask over the joined context cannot be split per text here.
            raise RuntimeError("[joint_attention] Krea 2's text adapter got a text mask beside region texts, which "
                               "this pack cannot split per text; sample without region texts")
        return torch.cat([self.inner(part, mask=None, transformer_options=options)
                          for part in torch.split(x, lengths, dim=1)], dim=1)

