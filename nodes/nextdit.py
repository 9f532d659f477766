"""Z-Image / Lumina-2 (NextDiT) on the host: the pack's block hooks and region texts in a padded caption.

NextDiT runs caption-refiner layers over the caption alone, noise-refiner layers over the image alone,
then single-stream joint layers over [caption ; image]. The caption is padded to a multiple of 32 with a
learned pad token, the image tokens too; every image token sits at rope axis-0 position
`caption length + 1`. The host offers no block patches for these layers (0.3.75 has none at all; 0.29
only post-block callbacks), so the pack wraps the model's three layer lists through ComfyUI's object
patches (`ModelPatcher.add_object_patch`, on the pack's clone, restored by ComfyUI when the model
unloads). A wrapped list holds the very same layer modules under the same names (weights, LoRA keys
and offloading are untouched); only iterating it, which is how the model runs its layers, yields
callables that name the layer for the pack and then call it with the arguments the host gave.

Region texts, each as the prompt alone:
- the context the model gets is `[base text ; pad slots ; region 1 ; pad slots ; ...]`, every part
  filled up to the model's multiple with placeholder rows, so the model itself adds no pads
  (the base text's pads are placeholders too, which keeps base text and region texts contiguous);
- before the first caption-refiner layer the placeholder rows become the model's learned pad token,
  and every caption-refiner layer gets a block-diagonal mask: each part is refined alone;
- each region part's rope rows are the rows of positions 1..n, those it has as the prompt alone (rope
  tables hold one row per position: copied rows equal the host's own); the image rows' axis-0 section
  is that of position `base length + 1`, where the image sits without regions.
So base text and image have, bit for bit, the rope rows they have without regions.
"""
from __future__ import annotations

from functools import partial

import torch

from ..attention.forward import BLOCKS, BlockRef, ForwardState, TextStream
from . import reach
from .options import BLOCK_KEY, DIFFUSION_MODEL_KEY, FORWARD_KEY, REFINER_KEY, find_dispatcher

CAPTION_REFINER, NOISE_REFINER, JOINT = "context_refiner", "noise_refiner", "layers"
LAYER_LISTS = (CAPTION_REFINER, NOISE_REFINER, JOINT)
PLACEHOLDERS_KEY = "joint_attention_pad_slots"  # ForwardState.data: [(start, stop)] caption rows to fill with pads
ROPE_KEY = "joint_attention_nextdit_rope"  # ForwardState.data: {role: (host table, fixed table)}


def pad_multiple(dm) -> int:
    """The multiple the model pads caption and image tokens to (Z-Image: 32; Lumina-2: none)."""
    multiple = getattr(dm, "pad_tokens_multiple", None)
    return int(multiple) if isinstance(multiple, int) and multiple > 0 else 1


def padded(length: int, multiple: int) -> int:
    return length + (-length) % multiple


def layout_context(state: ForwardState, context: torch.Tensor, regions: torch.Tensor | None, multiple: int):
    """The context the model gets and the state's text layout: base text and each region text padded to
    `multiple` with zero placeholder rows (filled with the learned pad token inside the model). Without
    regions the context stays as it is and the model pads it; the base text then counts its pads."""
    n_base = padded(context.shape[1], multiple)
    state.n_txt = state.n_context = n_base
    if regions is None:
        return context
    lens = tuple(state.region_lens)
    if sum(lens) != regions.shape[0]:
        raise RuntimeError(f"[joint_attention] region texts of {sum(lens)} tokens expected, got {regions.shape[0]}")
    parts, slots, row = [context], [], context.shape[1]

    def pad_slots(length):
        nonlocal row
        if length:
            parts.append(context.new_zeros(context.shape[0], length, context.shape[2]))
            slots.append((row, row + length))
            row += length

    pad_slots(n_base - context.shape[1])  # the base text's pads, right after it
    offset = 0
    for length in lens:
        parts.append(regions[offset:offset + length].unsqueeze(0).expand(context.shape[0], -1, -1))
        offset += length
        row += length
        pad_slots(padded(length, multiple) - length)
    state.region_lens = tuple(padded(n, multiple) for n in lens)
    state.n_context = n_base + sum(state.region_lens)
    state.data[PLACEHOLDERS_KEY] = slots
    return torch.cat(parts, dim=1)


class HookedLayers(torch.nn.ModuleList):
    """One of NextDiT's layer lists, as an object patch: the same modules under the same names; iterating
    yields `HookedLayer`s, which name the layer for the pack and pass the host's arguments on."""

    def __init__(self, layers, role: str):
        super().__init__(list(layers))
        self.role = role

    def __iter__(self):
        for index, layer in enumerate(super().__iter__()):
            yield HookedLayer(layer, self.role, index)


class HookedLayer:
    def __init__(self, layer, role: str, index: int):
        self.layer, self.role, self.index = layer, role, index

    # As the other families' block patches: under torch.compile this frame runs eagerly (it reads per-step Python
    # state), the layer it calls is compiled as usual.
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        state = options.get(FORWARD_KEY)
        dispatcher = find_dispatcher(options)
        if state is None or dispatcher is None or not args:
            return self.layer(*args, **kwargs)
        if self.role == JOINT:
            ref = BlockRef("double", self.index, self.index)
            return self._joint(state, dispatcher, ref, args, {**kwargs, "transformer_options": {**options, BLOCK_KEY: ref}})
        kwargs = {**kwargs, "transformer_options": {**options, REFINER_KEY: self.role}}
        if not state.region_lens or len(args) < 3:
            return self.layer(*args, **kwargs)
        x, mask, rope = args[0], args[1], args[2]
        if self.role == CAPTION_REFINER:
            if self.index == 0:
                x = fill_pad_slots(state, x)
            # A caption padding mask of the model's own (Lumina-2) never comes with regions: the host adapter refuses
            # that combination before the forward.
            mask = caption_mask(state, x) if mask is None else mask
            rope = fixed_rope(state, rope, CAPTION_REFINER)
        else:
            rope = fixed_rope(state, rope, NOISE_REFINER)
        return self.layer(x, mask, rope, *args[3:], **kwargs)

    def _joint(self, state, dispatcher, ref, args, kwargs):
        reach.reached(state, BLOCKS, ref)
        text = TextStream(args[0], 0, state.n_context)
        if dispatcher.edit_text(state, ref, text) == "skip":
            reach.reached(state, reach.SKIPPED, ref)
            return args[0]
        args = (text.tensor,) + tuple(args[1:])
        if state.region_lens and len(args) > 2:
            args = (args[0], args[1], fixed_rope(state, args[2], JOINT)) + tuple(args[3:])
        return self.layer(*args, **kwargs)


def fill_pad_slots(state: ForwardState, x: torch.Tensor) -> torch.Tensor:
    """The caption entering the first caption-refiner layer with its placeholder rows set to the model's
    learned pad token (the row the model itself appends as padding)."""
    slots = state.data.get(PLACEHOLDERS_KEY) or ()
    if not slots:
        return x
    pad = state.data[DIFFUSION_MODEL_KEY].cap_pad_token.to(device=x.device, dtype=x.dtype)
    x = x.clone()
    for start, stop in slots:
        x[:, start:stop] = pad
    return x


def caption_mask(state: ForwardState, x: torch.Tensor) -> torch.Tensor:
    """Additive [L, L] mask of the caption refiner: each part (base text, every region text, each with its
    pads) attends only to itself."""
    key = ("caption_mask", x.device, x.dtype, x.shape[1])
    cached = state.data.get(key)
    if cached is not None:
        return cached
    parts = torch.zeros(x.shape[1], dtype=torch.long, device=x.device)
    start = state.n_txt
    for number, length in enumerate(state.region_lens, start=1):
        parts[start:start + length] = number
        start += length
    same = parts[:, None] == parts[None, :]
    mask = torch.zeros(same.shape, dtype=x.dtype, device=x.device).masked_fill(~same, -torch.finfo(x.dtype).max)
    state.data[key] = mask
    return mask


def fixed_rope(state: ForwardState, table: torch.Tensor, role: str) -> torch.Tensor:
    """The layer's rope table ([B, L, 1, D/2, 2, 2], sequence on dim 1) with region text rows taken from
    rows 0..n-1 (positions 1..n) and the image rows' axis-0 section at position `base text + 1`.
    Made once per forward and role: every layer of a list gets the same table."""
    if not torch.is_tensor(table) or table.ndim < 4:
        return table
    cache = state.data.setdefault(ROPE_KEY, {})
    cached = cache.get(role)
    if cached is not None and cached[0] is table:
        return cached[1]
    fixed = table.clone()
    if role in (CAPTION_REFINER, JOINT):
        start = state.n_txt
        for length in state.region_lens:
            fixed[:, start:start + length] = table[:, :length]
            start += length
    if role in (NOISE_REFINER, JOINT):
        first = state.n_context if role == JOINT else 0
        section = _image_axis0(state, table)
        fixed[:, first:first + state.n_img, ..., :section.shape[-3], :, :] = section
    cache[role] = (table, fixed)
    return fixed


def _image_axis0(state: ForwardState, table: torch.Tensor) -> torch.Tensor:
    """The axis-0 section of the rope row of position `n_txt + 1`, from the model's own rope embedder."""
    dm = state.data[DIFFUSION_MODEL_KEY]
    ids = torch.zeros(1, 1, len(dm.axes_dims), dtype=torch.float32, device=table.device)
    ids[..., 0] = state.n_txt + 1
    row = dm.rope_embedder(ids).movedim(1, 2).to(device=table.device, dtype=table.dtype)
    return row[..., : dm.axes_dims[0] // 2, :, :]


def install(m, dm) -> None:
    """Wrap the model's layer lists on the clone `m` (object patches; nothing if already wrapped)."""
    for name in LAYER_LISTS:
        key = f"diffusion_model.{name}"
        current = m.get_model_object(key)
        if not isinstance(current, HookedLayers):
            m.add_object_patch(key, HookedLayers(current, name))


def rebind(clone) -> None:
    """A MultiGPU device clone runs its own copy of the weights: its object patches must wrap its own
    layers, not the main model's."""
    dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
    if dm is None:
        return
    for name in LAYER_LISTS:
        key = f"diffusion_model.{name}"
        if isinstance(clone.object_patches.get(key), HookedLayers):
            own = getattr(dm, name)
            if isinstance(own, HookedLayers):  # copied while the patches were applied
                own = torch.nn.ModuleList(list(torch.nn.ModuleList.__iter__(own)))
            clone.object_patches = {**clone.object_patches, key: HookedLayers(own, name)}
