"""Attention-map capture: exact text-to-image probabilities accumulated in one fp32 buffer.

For each captured call the engine reports, for image query rows, the softmax weight on
every text key (base and region texts) that the output actually used (with regions, TACA
and base_ratio applied). The sink keeps one [N_img, N_text] fp32 sum plus per-column counts
(head mean per call; mean over cond rows, blocks and steps at the end). Nothing L x L and
nothing per step is stored.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch

from .dispatcher import COND, Modifier

_IDS = itertools.count(1)


class CaptureSink:
    """Per-run accumulator (lifetime "run")."""

    def __init__(self, n_img: int, device):
        self.sum = torch.zeros(n_img, 0, dtype=torch.float32, device=device)
        self.counts = torch.zeros(0, dtype=torch.float32, device=device)
        self.blocks: set = set()
        self.sigmas: set = set()
        self.region_lens: tuple = ()
        self.n_txt = 0
        self.region_masks: Optional[torch.Tensor] = None
        self.family = ""

    def tensors(self) -> list:
        return [self.sum, self.counts] + ([self.region_masks] if self.region_masks is not None else [])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    registry = None  # set by the modifier so grown buffers stay accounted

    def _grow(self, columns: int) -> None:
        if columns > self.sum.shape[1]:
            extra = columns - self.sum.shape[1]
            self.sum = torch.cat([self.sum, self.sum.new_zeros(self.sum.shape[0], extra)], dim=1)
            self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])
            if self.registry is not None:
                self.registry.track_all([self.sum, self.counts], "capture", "run")

    def begin(self, layout, rows: int) -> None:
        """A captured call over `rows` batch rows: every text column of its layout gets `rows` samples."""
        self._grow(layout.n_context)
        self.counts[: layout.n_context] += rows
        self.n_txt = layout.n_txt
        if layout.region_lens:
            self.region_lens = layout.region_lens

    def record(self, image_rows, first_column: int, probs: torch.Tensor) -> None:
        """probs [B, rows, keys]: head-mean probabilities of these image rows on text columns."""
        block = probs.sum(dim=0).to(self.sum.device, torch.float32)
        columns = slice(first_column, first_column + block.shape[1])
        if isinstance(image_rows, slice):
            self.sum[image_rows, columns] += block
        else:
            self.sum[image_rows.to(self.sum.device), columns] += block

    def result(self) -> dict:
        """Mean maps on the CPU: [N_img, N_text] fp32, plus what they were taken over."""
        # Fresh CPU copies: nothing in the result may share storage with run-lifetime buffers.
        maps = (self.sum / self.counts.clamp_min(1.0)).to("cpu", copy=True)
        return {
            "maps": maps,
            "n_txt": self.n_txt,
            "region_lens": tuple(self.region_lens),
            "blocks": sorted(self.blocks),
            "steps": len(self.sigmas),
            "region_masks": None if self.region_masks is None else self.region_masks.to("cpu", copy=True),
            "family": self.family,
        }


class CaptureHandle:
    """What the capture node outputs (JA_CAPTURE): receives the maps when a run succeeds.

    The maps (CPU) are released once read by the maps node (`take`), or when ComfyUI drops
    the node output."""

    def __init__(self):
        self.id = next(_IDS)
        self.result: Optional[dict] = None
        self.runs = 0

    registry = None

    def deliver(self, result: dict) -> None:
        self.result = result
        self.runs += 1
        if self.registry is not None:  # held by the node output until read
            self.registry.track_all(self.tensors(), f"capture:{self.id}", "patch")

    def take(self) -> Optional[dict]:
        result, self.result = self.result, None
        return result

    def tensors(self) -> list:
        if not self.result:
            return []
        return [t for t in (self.result["maps"], self.result["region_masks"]) if t is not None]


class CaptureModifier(Modifier):
    """Records text-to-image maps in selected blocks inside a sigma window, cond rows only."""

    def __init__(self, handle: CaptureHandle, double_blocks, single_blocks, sigma_start: float, sigma_end: float,
                 registry=None):
        self.key = f"capture:{handle.id}"  # two captures on one model never mix
        self.handle = handle
        handle.registry = registry
        self.selected = {"double": frozenset(double_blocks), "single": frozenset(single_blocks)}
        self.sigma_start = float(sigma_start)
        self.sigma_end = float(sigma_end)
        self.registry = registry

    def describe(self) -> str:
        return f"capture #{self.handle.id}"

    def _sink(self, state) -> Optional[CaptureSink]:
        run = state.run
        if run is None:
            return None  # sampling outside a run wrapper: nothing to deliver to
        sink = run.items.get(self.key)
        if sink is None:
            sink = CaptureSink(state.n_img, state.data.get("device", torch.device("cpu")))
            sink.registry = self.registry
            sink.family = state.family
            run.keep(self.key, sink, "capture", on_success=lambda: self.handle.deliver(sink.result()))
        return sink

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        if row_kind != COND or block.index not in self.selected.get(block.kind, ()):
            return
        if not (self.sigma_end <= state.sigma <= self.sigma_start):
            return
        sink = self._sink(state)
        if sink is None:
            return
        sink.blocks.add(block.number)
        sink.sigmas.add(round(state.sigma, 6))
        plans = state.data.get("regional")
        if plans and sink.region_masks is None:
            sink.region_masks = plans[0].masks.detach().clone()
            if self.registry is not None:
                self.registry.track(sink.region_masks, "capture", "run")
        spec.capture = sink
