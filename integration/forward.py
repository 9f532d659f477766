"""Each model forward described for the pack: the APPLY_MODEL wrapper.

Before the model runs, the wrapper builds the forward's `ForwardState` (token layout, rows, sigma, blocks) with the
model's family, lets the features set up the forward (region texts to append), lays out the context as the family
says, hands the state to the hooks below through `transformer_options`, and after the forward checks that every
feature that should have acted was reached.
"""
from __future__ import annotations

import torch

from ..attention.forward import COND, ForwardState
from ..attention.frame_masks import FrameCountMismatch
from ..attention.regional import MaskBatchMismatch
from ..families import RefusedForward, family_of_base
from . import override_slot, reach
from .options import FORWARD_KEY, OVERRIDE_KEY, RUN_KEY, find_dispatcher
from .region_lora import forward_context


def rows_of(options, batch: int) -> tuple:
    """(kind, item) of every batch row: ComfyUI stacks one chunk of the image batch per cond/uncond."""
    chunks = options.get("cond_or_uncond") or [COND]
    per = max(batch // len(chunks), 1)
    kinds = tuple(kind for kind in chunks for _ in range(per))[:batch]
    items = tuple(i for _ in chunks for i in range(per))[:batch]
    return kinds, items


def _nodes(dispatcher) -> str:
    return ", ".join(dict.fromkeys(reach.node_of(m) for m in dispatcher.modifiers))


def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                        **kwargs):
    transformer_options = transformer_options if transformer_options is not None else {}
    dispatcher = find_dispatcher(transformer_options)
    if dispatcher is None or not dispatcher.modifiers or c_crossattn is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    base = executor.class_obj
    family = family_of_base(base)
    if family is None:  # the model was swapped for another kind under the pack's patches
        raise reach.PackNotReached(reach.unknown_model(dispatcher.modifiers, base))
    refused = family.refused_inputs(kwargs) or family.refused_latent(tuple(x.shape))
    if refused:
        raise ValueError(f"[{_nodes(dispatcher)}] input 'model': {refused}")
    state = describe_forward(family, base, x, t, c_crossattn, transformer_options, kwargs)
    kwargs = family.forward_inputs(state, kwargs)
    try:
        c_crossattn = family.prompt_context(state, state.host_model, c_crossattn)
    except RefusedForward as exc:
        raise ValueError(f"[{_nodes(dispatcher)}] input 'model': {exc}") from None
    state.pooled = kwargs.get("y")  # FLUX.1 / SD3 pooled text vector (ConceptAttention's concept stream)
    try:
        extra = dispatcher.begin_forward(state)
    except (MaskBatchMismatch, FrameCountMismatch) as exc:
        raise ValueError(f"[Region (mask + prompt)] input 'mask': {exc}") from None
    if extra is not None:
        c_crossattn = with_region_texts(state, family, c_crossattn, extra, kwargs)
        kwargs = family.region_inputs(state, state.host_model, kwargs)
    options = {**transformer_options, FORWARD_KEY: state}
    found = transformer_options.get(OVERRIDE_KEY)
    if found is not dispatcher and override_slot.is_core_backend(found):
        # Core's Model Attention Backend was applied after the pack's nodes and took the slot: the pack goes back in
        # front of it for this forward (its kernel still runs every call the pack leaves alone). Any other override
        # that replaced the pack's is left in place, and the reach check stops the run if the pack's features lost.
        options[OVERRIDE_KEY] = dispatcher.in_front_of(found)
    for name, entries in family.forward_patches(state).items():
        patches = options.get("patches") or {}
        options["patches"] = {**patches, name: list(patches.get(name, ())) + list(entries)}
    options = family.forward_options(state, options)
    with forward_context(state):  # the layers region LoRAs wrap get no transformer_options
        output = executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
    try:
        reach.check(dispatcher.modifiers, state)  # a feature that should have acted but was never reached stops the run
    except reach.PackNotReached as exc:
        if found is None or found is dispatcher or options.get(OVERRIDE_KEY) is not found:
            raise
        raise reach.PackNotReached(f"{exc} The attention override in use is {override_slot.describe(found)}, "
                                   "applied after this pack's nodes.") from None
    return output


def describe_forward(family, base, x, t, c_crossattn, transformer_options, inputs=None) -> ForwardState:
    """The forward's state before any feature sees it: the prompt's text layout as the family lays it out, the image
    token grid, the rows and the step."""
    dm = base.diffusion_model
    patch = family.patch_size(dm)
    rows, cols = -(-x.shape[-2] // patch), -(-x.shape[-1] // patch)
    frames = family.token_frames(dm, x)
    n_double, n_single = family.block_counts(dm)
    sigmas = transformer_options.get("sigmas")
    sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float(t.max())
    kinds, items = rows_of(transformer_options, x.shape[0])
    state = ForwardState(
        family=family.name,
        n_context=c_crossattn.shape[1],
        n_txt=c_crossattn.shape[1],
        region_lens=(),
        n_img=frames * rows * cols,
        grid=(rows, cols),
        row_kinds=kinds,
        row_items=items,
        sigma=sigma,
        n_double=n_double,
        n_single=n_single,
        latent_hw=(x.shape[-2], x.shape[-1]),
        patch=patch,
        latent_px=family.latent_pixels(base),
        run=transformer_options.get(RUN_KEY),
        frames=frames,
        latent_frames=x.shape[family.frame_axis] if family.frame_axis is not None and x.ndim > 4 else 0,
        frame_stride=family.frame_stride(base),
    )
    state.device = x.device
    state.host_model = dm
    family.prompt_layout(state, dm)
    family.read_inputs(state, dm, inputs or {})
    return state


def with_region_texts(state: ForwardState, family, context: torch.Tensor, regions: torch.Tensor, kwargs) -> torch.Tensor:
    """The context with the features' region texts `regions` [T, C] laid out as the family places them."""
    if kwargs.get("attention_mask") is not None:
        # Qwen-Image on newer hosts passes a text padding mask when the prompt has padded tokens; region texts
        # appended after it would break the model's mask, and a masked call is one the pack leaves alone.
        raise ValueError(
            "[Apply Regional Attention] input 'model': the prompt's conditioning carries a text padding mask "
            "(attention_mask), which regional prompting cannot combine with; encode the prompt on its own "
            "(one text, no batched prompts of different lengths)")
    if regions.shape[-1] != context.shape[-1]:
        raise ValueError(
            f"[Apply Regional Attention] input 'regions': region conditioning has {regions.shape[-1]} features per "
            f"token but the model's text conditioning has {context.shape[-1]}: encode region prompts with the same "
            "text encoder (CLIP loader) as the main prompt")
    refused = family.refused_region_texts(state)
    if refused:
        raise ValueError(f"[Apply Regional Attention] input 'regions': {refused}")
    tokens = regions.to(device=context.device, dtype=context.dtype)
    return family.text_layout(state, state.host_model, context, tokens)
