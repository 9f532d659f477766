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

from .forward import ATTENTION, COND, Modifier
from .gate import Gate

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
        self.concept_sum: Optional[torch.Tensor] = None  # [n_concepts, N_img] saliency summed over calls
        self.concept_calls = 0
        self.concept_blocks: set = set()
        self.concept_names: list = []

    def tensors(self) -> list:
        extra = [t for t in (self.region_masks, self.concept_sum) if t is not None]
        return [self.sum, self.counts] + extra

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
            "concept_maps": None if self.concept_sum is None
            else (self.concept_sum / max(self.concept_calls, 1)).to("cpu", copy=True),
            "concept_blocks": sorted(self.concept_blocks),
            "concept_names": list(self.concept_names),
        }


class CaptureHandle:
    """What the capture node outputs (JA_CAPTURE): receives the maps when a run succeeds.

    The maps (CPU) are released once read by the maps node (`take`), or when ComfyUI drops
    the node output."""

    def __init__(self):
        self.id = next(_IDS)
        self.result: Optional[dict] = None

    registry = None

    def ran(self) -> None:
        """A sampling run with this capture's model completed; `deliver` follows if anything was recorded."""
        self.result = {"recorded": False}

    def deliver(self, result: dict) -> None:
        self.result = {**result, "recorded": True}
        if self.registry is not None:  # held by the node output until read
            self.registry.track_all(self.tensors(), f"capture:{self.id}", "patch")

    def take(self) -> Optional[dict]:
        result, self.result = self.result, None
        return result

    def tensors(self) -> list:
        if not self.result or not self.result.get("recorded"):
            return []
        return [t for t in (self.result["maps"], self.result["region_masks"], self.result.get("concept_maps"))
                if t is not None]


class CaptureModifier(Modifier):
    """Records text-to-image maps in the blocks and sigma window of its gate, cond rows only.

    Subclasses record something else into the same per-run sink (the host side's ConceptAttention
    stream) and then record no maps: `records_maps` False."""

    records_maps = True

    def __init__(self, handle: CaptureHandle, gate: Gate, registry=None):
        self.key = f"capture:{handle.id}"  # two captures on one model never mix
        self.handle = handle
        handle.registry = registry
        self.gate = gate
        self.registry = registry

    def begin_forward(self, state):
        # Mark the run, so that a run which records nothing (a window no step falls in, every captured
        # block skipped) is told apart from a sampler result ComfyUI took from its cache.
        run = state.run
        if run is not None and self.key + ":ran" not in run.items:
            run.keep(self.key + ":ran", (), "capture", on_success=self.handle.ran)
        return None

    def sink(self, state) -> Optional[CaptureSink]:
        """This run's sink, made on first use; None when sampling runs outside a run (nothing to deliver to)."""
        run = state.run
        if run is None:
            return None
        sink = run.items.get(self.key)
        if sink is None:
            sink = CaptureSink(state.n_img, state.device or torch.device("cpu"))
            sink.registry = self.registry
            sink.family = state.family
            run.keep(self.key, sink, "capture", on_success=lambda: self.handle.deliver(sink.result()))
        return sink

    def expects(self, state) -> tuple:
        if not self.records_maps or self.gate.empty or COND not in state.row_kinds or not self.gate.in_window(state.sigma):
            return ()
        return (ATTENTION,)

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        if not self.records_maps or row_kind != COND or not self.gate.open(block, state.sigma):
            return
        sink = self.sink(state)
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


def concept_saliency(o_concepts: torch.Tensor, o_image: torch.Tensor) -> torch.Tensor:
    """ConceptAttention's saliency of one block: attention outputs (before the output projection) of
    concept tokens [B, n_c, D] and image tokens [B, N_img, D] -> softmax over concepts of their dot
    products, averaged over the batch rows: [n_c, N_img]."""
    return torch.softmax(torch.einsum("bcd,bnd->bcn", o_concepts.float(), o_image.float()), dim=1).mean(0)


def record_concepts(sink: CaptureSink, saliency: torch.Tensor, block_number: int, sigma: float, registry=None) -> None:
    """Add one block's saliency to the run's sum (averaged over blocks and steps when read)."""
    if sink.concept_sum is None:
        sink.concept_sum = torch.zeros_like(saliency)
        if registry is not None:
            registry.track(sink.concept_sum, "capture", "run")
    sink.concept_sum += saliency
    sink.concept_calls += 1
    sink.concept_blocks.add(block_number)
    sink.sigmas.add(round(sigma, 6))
