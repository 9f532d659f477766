"""The one attention override per patched model; features plug in as modifiers.

ComfyUI calls `dispatcher(func, *args, **kwargs)` for every attention call (the
`optimized_attention_override` slot). The host adapter (nodes/) puts two things into
`transformer_options` before that happens:

- `FORWARD_KEY`: a `ForwardState` for the current model forward (layout, row kinds,
  sigma, per-modifier data), set by the apply-model wrapper;
- `BLOCK_KEY`: a `BlockRef` naming the block being run, set by the block patch.

With no modifier active for a call, the call goes to the host's function (through a
previously installed override, if any) untouched, so results are bit-identical.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

import torch

from .joint import RowSpec, joint_attention
from .kernels import KernelSelector
from .layout import TokenLayout

log = logging.getLogger("joint_attention")

FORWARD_KEY = "joint_attention_forward"
BLOCK_KEY = "joint_attention_block"
RECORD_KEY = "joint_attention_record"  # callable(output) that reads an attention call's output
COND, UNCOND = 0, 1


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
    row_items: tuple = ()  # per batch row: which image of the batch it is (0 when unknown)
    data: dict = field(default_factory=dict)  # per-modifier data for this forward
    run: Any = None  # per-sampling-run state (captures), if a run wrapper is installed
    call_layout: Optional[TokenLayout] = None  # layout of the attention call being planned
    _layouts: dict = field(default_factory=dict)

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


class Modifier:
    """Base class of features. Immutable after construction; hooks default to no-ops."""

    key = "modifier"

    def begin_forward(self, state: ForwardState) -> Optional[torch.Tensor]:
        """Called once per forward before the model runs. May return text tokens
        `[T, C]` to append to the context of every row (region texts)."""
        return None

    def contribute(self, state: ForwardState, block: BlockRef, row_kind: int, spec: RowSpec, item: int = 0) -> None:
        """Adjust `spec` for rows of `row_kind` (COND/UNCOND) that hold image `item` of the batch."""

    def before_block(self, state: ForwardState, block: BlockRef, stream: dict) -> Optional[str]:
        """Edit the block's inputs (`stream` holds "txt"/"img"); return "skip" to skip the block."""
        return None

    def after_block(self, state: ForwardState, block: BlockRef, stream: dict, run_block, output: dict) -> None:
        """Called after the block ran; `run_block(args)` runs the host's block again on other inputs."""

    def to(self, device) -> "Modifier":
        return self

    def tensors(self) -> list:
        return []

    def describe(self) -> str:
        return self.key


def normalise_qkv(args, kwargs):
    """q, k, v as [B,H,L,D] whatever the caller's convention; also heads and layout flags."""
    q, k, v = args[0], args[1], args[2]
    heads = args[3] if len(args) > 3 else kwargs.get("heads")
    if kwargs.get("skip_reshape", False):
        return q, k, v, q.shape[1]
    b = q.shape[0]
    q = q.reshape(b, q.shape[1], heads, -1).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, -1).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, -1).transpose(1, 2)
    return q, k, v, heads


class JointAttentionDispatcher:
    """Holds the modifiers of one patched model and evaluates attention with them.

    Immutable: `with_modifier` returns a new dispatcher, so a node never edits the
    patch it found on its input model. Deep copies (ComfyUI 0.3.75 deep-copies
    model_options on every clone) return the same object, so tensors are never
    duplicated.
    """

    def __init__(self, modifiers=(), previous=None, kernels: Optional[KernelSelector] = None):
        self.modifiers = tuple(modifiers)
        self.previous = previous
        self.kernels = kernels or KernelSelector()

    # -- composition -------------------------------------------------------
    def with_modifier(self, modifier: Modifier) -> "JointAttentionDispatcher":
        kept = [m for m in self.modifiers if m.key != modifier.key]
        return JointAttentionDispatcher(kept + [modifier], self.previous, self.kernels)

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def to(self, device):
        self.modifiers = tuple(m.to(device) for m in self.modifiers)
        return self

    def models(self):
        return []

    def tensors(self) -> list:
        return [t for m in self.modifiers for t in m.tensors()]

    # -- per forward ---------------------------------------------------------
    def begin_forward(self, state: ForwardState):
        """Let modifiers set up the forward; returns extra context tokens [T, C] or None."""
        extra = []
        for m in self.modifiers:
            tokens = m.begin_forward(state)
            if tokens is not None:
                extra.append(tokens)
        return torch.cat(extra, dim=0) if extra else None

    def before_block(self, state: ForwardState, block: BlockRef, stream: dict) -> Optional[str]:
        action = None
        for m in self.modifiers:
            action = m.before_block(state, block, stream) or action
        return action

    def after_block(self, state: ForwardState, block: BlockRef, stream: dict, run_block, output: dict) -> None:
        for m in self.modifiers:
            m.after_block(state, block, stream, run_block, output)

    # -- per attention call ----------------------------------------------------
    def __call__(self, func, *args, **kwargs):
        impl = func
        options = kwargs.get("transformer_options") or {}
        state = options.get(FORWARD_KEY)
        block = options.get(BLOCK_KEY)
        if state is not None and block is not None and self.modifiers:
            specs = self._specs(state, block, args, kwargs)
            if specs is not None:
                impl = partial(self._attention, specs, state)
        if self.previous is not None:
            out = self.previous(impl, *args, **kwargs)
        else:
            out = impl(*args, **kwargs)
        recorder = options.get(RECORD_KEY)
        if recorder is not None:
            recorder(out)  # reads only: the output goes on unchanged
        return out

    def _specs(self, state: ForwardState, block: BlockRef, args, kwargs):
        total = args[0].shape[2] if kwargs.get("skip_reshape", False) else args[0].shape[1]
        layout = state.layout_for(total)
        if layout is None:
            return None
        state.call_layout = layout
        items = state.row_items or (0,) * len(state.row_kinds)
        by_row = {}
        for key in sorted(set(zip(state.row_kinds, items))):
            spec = RowSpec()
            for m in self.modifiers:
                m.contribute(state, block, key[0], spec, key[1])
            by_row[key] = spec
        if all(spec.is_plain(layout) for spec in by_row.values()):
            return None
        # Rows whose specs are equal run together (usually one group per CFG half).
        specs = []
        for row, key in enumerate(zip(state.row_kinds, items)):
            for spec, rows in specs:
                if spec == by_row[key]:
                    rows.append(row)
                    break
            else:
                specs.append((by_row[key], [row]))
        if kwargs.get("mask") is not None:
            log.warning("[joint_attention] the model passed its own attention mask; the pack leaves this call as is")
            return None
        return layout, specs

    def _attention(self, specs, state: ForwardState, *args, **kwargs):
        layout, groups = specs
        q, k, v, heads = normalise_qkv(args, kwargs)
        scale = kwargs.get("scale") or 1.0 / math.sqrt(q.shape[-1])
        if len(state.row_kinds) != q.shape[0]:
            raise RuntimeError(f"[joint_attention] batch of {q.shape[0]} rows but {len(state.row_kinds)} row kinds")
        if len(groups) == 1:
            out = joint_attention(q, k, v, layout, groups[0][0], self.kernels, scale)
        else:
            out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
            for spec, row_list in groups:
                if row_list == list(range(row_list[0], row_list[-1] + 1)):
                    # Contiguous rows (CFG halves): views, no copy of q/k/v and no index tensor
                    # (a host-to-device copy that would stall the GPU stream on every call).
                    lo, n = row_list[0], len(row_list)
                    out.narrow(0, lo, n).copy_(joint_attention(
                        q.narrow(0, lo, n), k.narrow(0, lo, n), v.narrow(0, lo, n), layout, spec, self.kernels, scale))
                    continue
                rows = torch.tensor(row_list, device=q.device)
                part = joint_attention(
                    q.index_select(0, rows), k.index_select(0, rows), v.index_select(0, rows),
                    layout, spec, self.kernels, scale,
                )
                out.index_copy_(0, rows, part)
        if kwargs.get("skip_output_reshape", False):
            return out
        b, h, length, d = out.shape
        return out.transpose(1, 2).reshape(b, length, h * d)
