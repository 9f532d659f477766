"""The pack's features as modifiers of one model's attention, with nothing of the host in it.

A host adapter (nodes/) owns everything about ComfyUI: how it calls attention, how blocks are
run, which model it is. Per model forward it builds a `ForwardState`; per block it names the
block (`BlockRef`) and offers the block's text stream (`TextStream`); per attention call it
asks `JointAttentionDispatcher.plan` whether any modifier changes the call (None: the host runs
its own attention, bit-identical) and hands q/k/v as [B, H, L, D] to `attend`.
"""
from __future__ import annotations

from typing import Optional

import torch

from .forward import BlockRef, ForwardState, Modifier, TextStream
from .joint import CallSpec
from .kernels import KernelSelector
from .paths import PathSelector


class JointAttentionDispatcher:
    """The modifiers of one patched model, and attention evaluated with them.

    `with_modifier` returns a new dispatcher, so a node never edits the one it found on its
    input model. `paths` chooses the exact path of each planned call (paths.py); dispatchers made from this
    one share it, so what it measured serves them too."""

    def __init__(self, modifiers=(), kernels: Optional[KernelSelector] = None, paths: Optional[PathSelector] = None):
        self.modifiers = tuple(modifiers)
        self.kernels = kernels or KernelSelector()
        self.paths = paths or PathSelector()

    def with_modifier(self, modifier: Modifier) -> "JointAttentionDispatcher":
        kept = [m for m in self.modifiers if m.key != modifier.key or modifier.stacks]
        return type(self)(kept + [modifier], kernels=self.kernels, paths=self.paths)

    def tensors(self) -> list:
        return [t for m in self.modifiers for t in m.tensors()]

    # -- per forward and block ---------------------------------------------------
    def begin_forward(self, state: ForwardState):
        """Let modifiers set up the forward; returns extra context tokens [T, C] or None."""
        extra = []
        for m in self.modifiers:
            tokens = m.begin_forward(state)
            if tokens is not None:
                extra.append(tokens)
        return torch.cat(extra, dim=0) if extra else None

    def edit_text(self, state: ForwardState, block: BlockRef, text: TextStream) -> Optional[str]:
        action = None
        for m in self.modifiers:
            action = m.edit_text(state, block, text) or action
        return action

    def before_block(self, state: ForwardState, block: BlockRef, inputs: dict) -> None:
        for m in self.modifiers:
            m.before_block(state, block, inputs)

    def after_block(self, state: ForwardState, block: BlockRef, inputs: dict, run_block, output: dict) -> None:
        for m in self.modifiers:
            m.after_block(state, block, inputs, run_block, output)

    # -- per attention call ----------------------------------------------------
    def plan(self, state: ForwardState, block: BlockRef, total: int):
        """(layout, [(CallSpec, rows)]) for a joint call of `total` tokens, or None when every row is plain."""
        layout = state.layout_for(total)
        if layout is None:
            return None
        state.call_layout = layout
        items = state.row_items or (0,) * len(state.row_kinds)
        by_row = {}
        for key in sorted(set(zip(state.row_kinds, items))):
            spec = CallSpec()
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
        return layout, specs

    def attend(self, plan, q, k, v, scale: float) -> torch.Tensor:
        """Attention of a planned call; q/k/v [B,H,L,D] -> [B,H,L,D]."""
        layout, groups = plan
        if len(groups) == 1:
            return self.paths.attend(q, k, v, layout, groups[0][0], self.kernels, scale)
        out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
        for spec, row_list in groups:
            if row_list == list(range(row_list[0], row_list[-1] + 1)):
                # Contiguous rows (CFG halves): views, no copy of q/k/v and no index tensor
                # (a host-to-device copy that would stall the GPU stream on every call).
                lo, n = row_list[0], len(row_list)
                out.narrow(0, lo, n).copy_(self.paths.attend(
                    q.narrow(0, lo, n), k.narrow(0, lo, n), v.narrow(0, lo, n), layout, spec, self.kernels, scale))
                continue
            rows = torch.tensor(row_list, device=q.device)
            part = self.paths.attend(q.index_select(0, rows), k.index_select(0, rows), v.index_select(0, rows),
                                     layout, spec, self.kernels, scale)
            out.index_copy_(0, rows, part)
        return out
