"""What a feature sees of a model forward: its state, the running block, the block's text.

Plain data and the `Modifier` base class; the host adapter (nodes/) fills them in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .layout import TokenLayout

COND, UNCOND = 0, 1
# Hooks a modifier may need to reach it in a forward (Modifier.expects).
ATTENTION, BLOCKS = "attention", "blocks"


@dataclass(frozen=True)
class BlockRef:
    """A block of the model: kind "double" (FLUX double / SD3 joint) or "single", its index
    within the kind, and `number`, the model-wide numbering (FLUX: singles follow doubles)."""

    kind: str
    index: int
    number: int


@dataclass
class ForwardState:
    """What the dispatcher knows about one model forward."""

    family: str
    n_context: int  # text-stream tokens, region texts included
    n_txt: int  # base text tokens (T0)
    region_lens: tuple
    n_img: int
    grid: tuple
    row_kinds: tuple  # per batch row: COND or UNCOND
    sigma: float
    n_double: int
    n_single: int
    latent_hw: tuple = (0, 0)  # latent rows/cols before patch padding
    patch: int = 2  # latent cells per token side
    latent_px: int = 8  # image pixels per latent cell side (FLUX.2: 16)
    # Video: the image tokens are `frames` x grid, frame by frame; `latent_frames` latent frames made them (0: an
    # image model, whose MASK batches are images), each standing for `frame_stride` pixel frames after the first.
    frames: int = 1
    latent_frames: int = 0
    frame_stride: int = 1
    row_items: tuple = ()  # per batch row: which image of the batch it is (0 when unknown)
    run: Any = None  # per-sampling-run state (captures), if the host gives one
    device: Optional[torch.device] = None
    call_layout: Optional[TokenLayout] = None  # layout of the attention call being planned
    # Slots of this forward, each written by one party and read by the others (named here, never string keys):
    # what regional prompting publishes: its plan per batch item (the regions' token masks); capture reads it.
    regions: Optional[list] = None
    # ... and each region text's conditioning options (opaque here: what the text encoder gave beside the tokens,
    # which the model family lays out with them, e.g. HiDream's per-layer Llama states).
    region_inputs: tuple = ()
    # hook (ATTENTION, BLOCKS, ...) -> calls that reached the pack; and the blocks those calls named. The host adapter
    # counts them, and stops a forward in which a feature's hook was never reached (`Modifier.expects`).
    reached: dict = field(default_factory=dict)
    reached_blocks: dict = field(default_factory=dict)
    # Host-side slots, set and read by the host adapter and model families only: the model running this
    # forward (with MultiGPU work units, each device's own copy), the forward's pooled text vector (None when the
    # model takes none), whether the host's text ids were renumbered for region texts before it built its rope
    # table, and the tables made once per forward and shared by every block (rope tables, caption masks).
    host_model: Any = None
    pooled: Optional[torch.Tensor] = None
    text_ids_renumbered: bool = False
    tables: dict = field(default_factory=dict)
    _layouts: dict = field(default_factory=dict)
    _owned: dict = field(default_factory=dict)

    def owned(self, owner, make):
        """`owner`'s own data for this forward (a feature's private per-forward record), made by `make()` on first
        use. Keyed by the owner object: two modifiers never share it, and no one else reads it."""
        found = self._owned.get(id(owner))
        if found is None:
            found = self._owned[id(owner)] = make()
        return found

    def layout_for(self, total: int) -> Optional[TokenLayout]:
        """Layout of a joint sequence of `total` tokens, None for image-only calls (SD3.5 attn2)."""
        if total in self._layouts:
            return self._layouts[total]
        n_ref = total - self.n_context - self.n_img
        layout = None
        if n_ref >= 0:
            layout = TokenLayout(self.n_txt, self.n_img, n_ref, tuple(self.region_lens), tuple(self.grid))
        self._layouts[total] = layout
        return layout


@dataclass
class TextStream:
    """The text of a block's input: `tensor[:, start:stop]` ([B, tokens, C]). A modifier may put a
    new tensor in `tensor`; the host adapter passes it on to the block."""

    tensor: torch.Tensor
    start: int
    stop: int


class Modifier:
    """Base class of features. Settings are fixed at construction; hooks default to no-ops."""

    key = "modifier"
    # Whether a second modifier of the same key acts besides this one (two nodes of a kind in a row, each edit
    # applied in turn), instead of replacing it.
    stacks = False

    def begin_forward(self, state: ForwardState) -> Optional[torch.Tensor]:
        """Called once per forward before the model runs. May return text tokens
        `[T, C]` to append to the context of every row (region texts)."""
        return None

    def contribute(self, state: ForwardState, block: BlockRef, row_kind: int, spec, item: int = 0) -> None:
        """Adjust `spec` (a `joint.CallSpec`: structure, logit modifiers, observers) for rows of `row_kind`
        (COND/UNCOND) that hold image `item` of the batch."""

    def edit_text(self, state: ForwardState, block: BlockRef, text: TextStream) -> Optional[str]:
        """Before a block: edit its text stream; return "skip" to skip the block."""
        return None

    def expects(self, state: ForwardState) -> tuple:
        """Which of the host's hooks must reach this modifier during `state`'s forward for it to act:
        ATTENTION (attention calls of the model's blocks) and / or BLOCKS (the blocks themselves).
        Empty when the modifier would not act in this forward (outside its window, nothing selected,
        no rows it applies to). The host adapter stops a forward in which an expected hook was never
        reached (the model's attention or blocks were replaced), instead of sampling on without the feature."""
        return ()

    # Hooks for modifiers that live on the host side (nodes/) and work on the host's own block
    # inputs; the pure features above never need them.
    def before_block(self, state: ForwardState, block: BlockRef, inputs: dict) -> None:
        return None

    def after_block(self, state: ForwardState, block: BlockRef, inputs: dict, run_block, output: dict) -> None:
        return None

    def tensors(self) -> list:
        return []
