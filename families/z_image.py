"""Z-Image / Lumina-2 (NextDiT): its block hooks and region texts in a padded caption.

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
- the image rows' axis-0 section is that of position `base length + 1`, where the image sits without
  regions; in the caption refiner each region part has the rope rows of positions 1..n, those it has as the
  prompt alone (rope tables hold one row per position: copied rows equal the host's own); in the joint
  layers it ends where the base text ends (positions `base + 1 - n .. base`), so every image token sees it
  at the distance it has from the text alone, whatever the two padded lengths.
So base text and image have, bit for bit, the rope rows they have without regions.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch

from ..attention.forward import BlockRef, ForwardState, TextStream
from ..attention.layout import as_prompt_alone
from ..attention.token_weights import JOINT as JOINT_SEQUENCE
from ..attention.token_weights import SHARED
from .base import Family

CAPTION_REFINER, NOISE_REFINER, JOINT = "context_refiner", "noise_refiner", "layers"
LAYER_LISTS = (CAPTION_REFINER, NOISE_REFINER, JOINT)
PAD_SLOTS = ("z_image", "pad slots")  # ForwardState.tables entry: [(start, stop)] caption rows to fill with pads


class ZImage(Family):
    name = "z_image"
    models = "Z-Image / Lumina-2 (NextDiT)"
    table_order = 5
    blocks_doc = "double_blocks = joint layers from 0 (Z-Image-Turbo: 0-29)"
    references_doc = "omni references refused with a message"
    classes = ("Lumina2",)
    # 0.29's pixel-space variant runs a forward of its own, which the layer hooks are not written for.
    diffusion_classes = ("NextDiT",)
    # Region LoRAs: the joint layers run [caption ; image]; the refiners run each text or the image alone before them
    # (outside the numbered blocks: refused, as the embedders are).
    adapter_roles = (
        (r"layers\.\d+\.(attention\.(qkv|out)|feed_forward\.w[123])", JOINT_SEQUENCE),
        (r"layers\.\d+\.adaLN_modulation\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input = "layers", "", "cap_embedder"
    context_encoders = ("qwen3_4b", "gemma2_2b")
    chat_template = True
    concepts = False
    reference_images = False
    blocks_help = ("double_blocks are the joint layers (Z-Image-Turbo: 0-29); the caption and noise refiners are "
                   "not numbered")

    def hook_blocks(self, m, hooks) -> None:
        """NextDiT offers no block patches (0.3.75 none at all; 0.29 only post-block callbacks): wrap the model's
        layer lists on the clone `m` (object patches; nothing if already wrapped)."""
        wrap_layer_lists(m, LAYER_LISTS, HookedLayers, hooks)

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: its object patches must wrap its own layers,
        not the main model's."""
        rebind_layer_lists(clone, LAYER_LISTS, HookedLayers)

    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        if kwargs.get("ref_latents"):
            return ("the conditioning carries reference images for Z-Image (omni reference latents), which this "
                    "pack's nodes do not support on Z-Image; remove the reference latents from the conditioning, or "
                    "sample without this pack's nodes")
        return None

    def prompt_layout(self, state: ForwardState, dm) -> None:
        # The model pads the caption itself: the prompt's tokens count its pads.
        state.n_txt = state.n_context = padded(state.n_txt, pad_multiple(dm))

    def text_layout(self, state: ForwardState, dm, context, regions):
        return layout_context(state, context, regions, pad_multiple(dm))

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # text positions are fixed in the layer hooks' rope tables (`fixed_rope`)


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
    state.tables[PAD_SLOTS] = slots
    return torch.cat(parts, dim=1)


def wrap_layer_lists(m, names, wrapper, hooks) -> None:
    """Wrap the diffusion model's layer lists `names` on the clone `m` in `wrapper` (a `HookedLayers` kind) through
    object patches; a list already wrapped is left as it is."""
    for name in names:
        key = f"diffusion_model.{name}"
        current = m.get_model_object(key)
        if not isinstance(current, wrapper):
            m.add_object_patch(key, wrapper(current, name, hooks))


def rebind_layer_lists(clone, names, wrapper) -> None:
    """A device clone's object patches wrapping its own layer lists (see `ZImage.rebind`)."""
    dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
    if dm is None:
        return
    for name in names:
        key = f"diffusion_model.{name}"
        found = clone.object_patches.get(key)
        if isinstance(found, wrapper):
            own = getattr(dm, name)
            if isinstance(own, HookedLayers):  # copied while the patches were applied
                own = torch.nn.ModuleList(list(torch.nn.ModuleList.__iter__(own)))
            clone.object_patches = {**clone.object_patches, key: wrapper(own, name, found.hooks)}


class HookedLayers(torch.nn.ModuleList):
    """One of NextDiT's layer lists, as an object patch: the same modules under the same names; iterating
    yields `HookedLayer`s, which name the layer for the pack and pass the host's arguments on."""

    def __init__(self, layers, role: str, hooks):
        super().__init__(list(layers))
        self.role = role
        self.hooks = hooks  # the integration layer's block hooks (integration/blocks.py)

    @property
    def layer_class(self):
        return HookedLayer

    def __iter__(self):
        for index, layer in enumerate(super().__iter__()):
            yield self.layer_class(layer, self.role, index, self.hooks)


class HookedLayer:
    """One layer of a wrapped list, as the model iterates it: names the layer for the pack and calls it."""

    def __init__(self, layer, role: str, index: int, hooks):
        self.layer, self.role, self.index, self.hooks = layer, role, index, hooks

    # As the other families' block patches: under torch.compile this frame runs eagerly (it reads per-step Python
    # state), the layer it calls is compiled as usual.
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        if self.role == JOINT:
            block = self.hooks.enter(options, BlockRef("double", self.index, self.index))
            if block is None or not args:
                return self.layer(*args, **kwargs)
            return self._joint(block, args, {**kwargs, "transformer_options": block.options})
        entered = self.hooks.outside_blocks(options, self.role)
        if entered is None:
            return self.layer(*args, **kwargs)
        state, options = entered
        kwargs = {**kwargs, "transformer_options": options}
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

    def _joint(self, block, args, kwargs):
        state = block.state
        text = TextStream(args[0], 0, state.n_context)
        if block.edit_text(text):
            return args[0]  # skipped
        args = (text.tensor,) + tuple(args[1:])
        if state.region_lens and len(args) > 2:
            args = (args[0], args[1], fixed_rope(state, args[2], JOINT)) + tuple(args[3:])
        return self.layer(*args, **kwargs)


def fill_pad_slots(state: ForwardState, x: torch.Tensor) -> torch.Tensor:
    """The caption entering the first caption-refiner layer with its placeholder rows set to the model's
    learned pad token (the row the model itself appends as padding)."""
    slots = state.tables.get(PAD_SLOTS) or ()
    if not slots:
        return x
    pad = state.host_model.cap_pad_token.to(device=x.device, dtype=x.dtype)
    x = x.clone()
    for start, stop in slots:
        x[:, start:stop] = pad
    return x


def caption_mask(state: ForwardState, x: torch.Tensor) -> torch.Tensor:
    """Additive [L, L] mask of the caption refiner: each part (base text, every region text, each with its
    pads) attends only to itself."""
    key = ("z_image", "caption mask", x.device, x.dtype, x.shape[1])
    cached = state.tables.get(key)
    if cached is not None:
        return cached
    parts = torch.zeros(x.shape[1], dtype=torch.long, device=x.device)
    start = state.n_txt
    for number, length in enumerate(state.region_lens, start=1):
        parts[start:start + length] = number
        start += length
    same = parts[:, None] == parts[None, :]
    mask = torch.zeros(same.shape, dtype=x.dtype, device=x.device).masked_fill(~same, -torch.finfo(x.dtype).max)
    state.tables[key] = mask
    return mask


def fixed_rope(state: ForwardState, table: torch.Tensor, role: str) -> torch.Tensor:
    """The layer's rope table ([B, L, 1, D/2, 2, 2], sequence on dim 1) with region text rows taken from
    rows 0..n-1 (positions 1..n) and the image rows' axis-0 section at position `base text + 1`.
    Made once per forward and role: every layer of a list gets the same table."""
    if not torch.is_tensor(table) or table.ndim < 4:
        return table
    key = ("z_image", "rope", role)
    cached = state.tables.get(key)
    if cached is not None and cached[0] is table:
        return cached[1]
    if role in (CAPTION_REFINER, JOINT):
        fixed = as_prompt_alone(table, 1, state.n_txt, state.region_lens)
        if role == JOINT:
            _region_texts_before_image(state, fixed)
    else:
        fixed = table.clone()
    if role in (NOISE_REFINER, JOINT):
        first = state.n_context if role == JOINT else 0
        section = _image_axis0(state, table)
        fixed[:, first:first + state.n_img, ..., :section.shape[-3], :, :] = section
    state.tables[key] = (table, fixed)
    return fixed


def _region_texts_before_image(state: ForwardState, fixed: torch.Tensor) -> None:
    """In the joint layers, each region text ends where the prompt ends, at the position right before the image.

    As the prompt alone, a text of padded length n sits at positions 1..n and the image at n + 1. With regions the
    image sits at `base text + 1`, so a region text of another padded length than the base text gets positions
    `base + 1 - n .. base` (rows from the model's own rope embedder; they may be zero or negative): every image token
    then sees it at the distance it has from the text alone. In the caption refiner a text sees only itself, so its
    rows there stay 1..n (rope depends only on distances)."""
    start = state.n_txt
    for length in state.region_lens:
        if length != state.n_txt:
            positions = torch.arange(state.n_txt + 1 - length, state.n_txt + 1, dtype=torch.float32)
            fixed[:, start:start + length] = _text_rows(state, positions, fixed)
        start += length


def _text_rows(state: ForwardState, positions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rope rows of text tokens at axis-0 `positions` (the other axes 0, as the model numbers text)."""
    dm = state.host_model
    ids = torch.zeros(1, positions.shape[0], len(dm.axes_dims), dtype=torch.float32, device=table.device)
    ids[..., 0] = positions.to(table.device)
    return dm.rope_embedder(ids).movedim(1, 2).to(device=table.device, dtype=table.dtype)


def _image_axis0(state: ForwardState, table: torch.Tensor) -> torch.Tensor:
    """The axis-0 section of the rope row of position `n_txt + 1`, from the model's own rope embedder."""
    dm = state.host_model
    ids = torch.zeros(1, 1, len(dm.axes_dims), dtype=torch.float32, device=table.device)
    ids[..., 0] = state.n_txt + 1
    row = dm.rope_embedder(ids).movedim(1, 2).to(device=table.device, dtype=table.dtype)
    return row[..., : dm.axes_dims[0] // 2, :, :]
