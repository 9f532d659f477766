"""Attention-map capture: exact text-to-image probabilities accumulated in one fp32 buffer.

For each captured call the engine reports, for image query rows, the softmax weight on
every text key (base and region texts) that the output actually used (with regions, TACA
and base_ratio applied). The sink keeps one [N_img, N_text] fp32 sum plus per-column counts
(head mean per call; mean over cond rows, blocks and steps at the end). Nothing L x L and
nothing per step is stored.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Optional

import torch

from .forward import ATTENTION, COND, Modifier
from .gate import Gate

_IDS = itertools.count(1)


class _Partial:
    """What one thread recorded on one device: [N_img, N_text] fp32 sum and per-column counts, there."""

    __slots__ = ("sum", "counts")

    def __init__(self, n_img: int, device):
        self.sum = torch.zeros(n_img, 0, dtype=torch.float32, device=device)
        self.counts = torch.zeros(0, dtype=torch.float32, device=device)

    def grow(self, columns: int) -> bool:
        if columns <= self.sum.shape[1]:
            return False
        extra = columns - self.sum.shape[1]
        self.sum = torch.cat([self.sum, self.sum.new_zeros(self.sum.shape[0], extra)], dim=1)
        self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])
        return True


class CaptureSink:
    """Per-run accumulator (lifetime "run").

    Safe under concurrent use: ComfyUI's MultiGPU work units run the forwards of one step on several
    devices at once, one worker thread per device, and all of them write to the run's one sink. Each
    (device, thread) accumulates into its own buffers on that device (`_Partial`: no cross-device copy
    per call, and each adds its calls in its own step order); `result` merges them once, ordered by
    device, then by when they began. A lock guards every update. `sum` / `counts` are the buffers of the
    device and thread the sink was made on (the only ones when sampling runs on one device)."""

    def __init__(self, n_img: int, device):
        self._lock = threading.RLock()
        self.n_img = n_img
        # The key of the buffers `sum` / `counts` name: the device as its tensors report it ("cuda" -> "cuda:0",
        # "cpu:0" -> "cpu"), and the thread that made the sink.
        self.home = (str(torch.empty(0, device=device).device), threading.get_ident())
        self._parts: dict = {}  # (device, thread) -> buffers, in the order they began
        self.blocks: set = set()
        self.sigmas: set = set()
        self.step_rows: dict = {}  # sigma -> cond rows x captured calls recorded at that step (all devices)
        self.region_lens: tuple = ()
        self.n_txt = 0
        self.region_masks: Optional[torch.Tensor] = None
        self.family = ""
        self.grid: tuple = (0, 0)  # the image token grid (rows, cols) the maps are over
        self.latent_hw: tuple = (0, 0)  # the latent's height and width it came from
        self.frames = 1  # video: the image tokens are `frames` grids, frame by frame
        self.concept_sum: Optional[torch.Tensor] = None  # [n_concepts, N_img] saliency summed over calls
        self.concept_calls = 0
        self.concept_blocks: set = set()
        self.concept_names: list = []

    # The home device's buffers (a sink used on one device has no other).
    @property
    def sum(self) -> torch.Tensor:
        with self._lock:
            return self._keyed(self.home).sum

    @property
    def counts(self) -> torch.Tensor:
        with self._lock:
            return self._keyed(self.home).counts

    @property
    def devices(self) -> list:
        """The devices that recorded into this sink."""
        with self._lock:
            return sorted({device for device, _ in self._parts})

    def tensors(self) -> list:
        with self._lock:
            own = [t for part in self._parts.values() for t in (part.sum, part.counts)]
            extra = [t for t in (self.region_masks, self.concept_sum) if t is not None]
        return own + extra

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    registry = None  # set by the modifier so grown buffers stay accounted

    def _part(self, device) -> _Partial:
        """The calling thread's buffers on `device` (a tensor's device; None: the sink's own); call with the
        lock held."""
        return self._keyed((str(device) if device is not None else self.home[0], threading.get_ident()))

    def _keyed(self, key) -> _Partial:
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = _Partial(self.n_img, key[0])
        return part

    def begin(self, layout, rows: int, device=None, step: Optional[float] = None) -> None:
        """A captured call over `rows` batch rows on `device` (None: the sink's own) at step `step` (its
        sigma): every text column of its layout gets `rows` samples."""
        with self._lock:
            part = self._part(device)
            if part.grow(layout.n_context) and self.registry is not None:
                self.registry.track_all([part.sum, part.counts], "capture", "run")
            part.counts[: layout.n_context] += rows
            self.n_txt = layout.n_txt
            if layout.region_lens:
                self.region_lens = layout.region_lens
            if step is not None:
                self.step_rows[step] = self.step_rows.get(step, 0) + rows

    def record(self, image_rows, first_column: int, probs: torch.Tensor) -> None:
        """probs [B, rows, keys]: head-mean probabilities of these image rows on text columns, added to the
        buffers of the device they were computed on."""
        block = probs.sum(dim=0).to(torch.float32)
        columns = slice(first_column, first_column + block.shape[1])
        with self._lock:
            part = self._part(probs.device)
            if part.grow(columns.stop) and self.registry is not None:
                self.registry.track_all([part.sum, part.counts], "capture", "run")
            if isinstance(image_rows, slice):
                part.sum[image_rows, columns] += block
            else:
                part.sum[image_rows.to(part.sum.device), columns] += block

    def set_region_masks(self, masks: torch.Tensor) -> None:
        """The regions' token masks, kept once (the first device to record sets them)."""
        with self._lock:
            if self.region_masks is None:
                self.region_masks = masks.detach().clone()
                if self.registry is not None:
                    self.registry.track(self.region_masks, "capture", "run")

    def add_concepts(self, saliency: torch.Tensor, block_number: int, sigma: float) -> None:
        with self._lock:
            if self.concept_sum is None:
                self.concept_sum = torch.zeros_like(saliency)
                if self.registry is not None:
                    self.registry.track(self.concept_sum, "capture", "run")
            self.concept_sum += saliency.to(self.concept_sum.device)
            self.concept_calls += 1
            self.concept_blocks.add(block_number)
            self.sigmas.add(round(sigma, 6))

    def note(self, block_number: int, sigma: float) -> None:
        with self._lock:
            self.blocks.add(block_number)
            self.sigmas.add(round(sigma, 6))

    def _merged(self) -> tuple:
        """(sum, counts) over every device and thread, in device order then creation order (one: its own)."""
        order = {key: i for i, key in enumerate(self._parts)}
        parts = [self._parts[key] for key in sorted(self._parts, key=lambda key: (key[0], order[key]))]
        if len(parts) == 1:
            return parts[0].sum, parts[0].counts
        width = max((p.sum.shape[1] for p in parts), default=0)
        total = torch.zeros(self.n_img, width, dtype=torch.float32)
        counts = torch.zeros(width, dtype=torch.float32)
        for p in parts:
            n = p.sum.shape[1]
            total[:, :n] += p.sum.to("cpu")
            counts[:n] += p.counts.to("cpu")
        return total, counts

    def result(self) -> dict:
        """Mean maps on the CPU: [N_img, N_text] fp32, plus what they were taken over."""
        with self._lock:
            total, counts = self._merged()
            # Fresh CPU copies: nothing in the result may share storage with run-lifetime buffers.
            maps = (total / counts.clamp_min(1.0)).to("cpu", copy=True)
            return {
                "maps": maps,
                "n_txt": self.n_txt,
                "region_lens": tuple(self.region_lens),
                "blocks": sorted(self.blocks),
                "steps": len(self.sigmas),
                # Step order (sigma falls): the cond rows x captured calls each step contributed.
                "step_rows": sorted(self.step_rows.items(), key=lambda item: -item[0]),
                "devices": sorted({device for device, _ in self._parts}),
                "buffers": len(self._parts),  # (device, thread) accumulators merged
                "region_masks": None if self.region_masks is None else self.region_masks.to("cpu", copy=True),
                "family": self.family,
                "grid": tuple(self.grid),
                "latent_hw": tuple(self.latent_hw),
                "frames": self.frames,
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
        self.read = False  # the last run's result was taken by a maps node (a second reader gets None)

    registry = None

    def ran(self) -> None:
        """A sampling run with this capture's model completed; `deliver` follows if anything was recorded."""
        self.result = {"recorded": False}
        self.read = False

    def deliver(self, result: dict) -> None:
        self.result = {**result, "recorded": True}
        self.read = False
        if self.registry is not None:  # held by the node output until read
            self.registry.track_all(self.tensors(), f"capture:{self.id}", "patch")

    def take(self) -> Optional[dict]:
        result, self.result = self.result, None
        if result is not None:
            self.read = True
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
        if run is not None:
            run.setdefault(self.key + ":ran", tuple, "capture", on_success=lambda _: self.handle.ran())
        return None

    def sink(self, state) -> Optional[CaptureSink]:
        """This run's sink, made on first use; None when sampling runs outside a run (nothing to deliver to)."""
        run = state.run
        if run is None:
            return None
        sink = run.items.get(self.key)
        if sink is not None:
            return sink

        def made():
            made = CaptureSink(state.n_img, state.device or torch.device("cpu"))
            made.registry = self.registry
            made.family = state.family
            made.grid, made.latent_hw = tuple(state.grid), tuple(state.latent_hw)
            made.frames = state.frames
            return made

        # One sink per run, whichever device thread asks first (MultiGPU work units run forwards of one
        # step at once): made and delivered exactly once.
        return run.setdefault(self.key, made, "capture", on_success=lambda sink: self.handle.deliver(sink.result()))

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
        sink.note(block.number, state.sigma)
        plans = state.regions
        if plans and sink.region_masks is None:
            sink.set_region_masks(plans[0].masks)
        # Another capture open on this call (Attention Capture nodes in a row): both record it.
        observer = CaptureObserver(sink, round(state.sigma, 6))
        if observer not in spec.observers:
            spec.observers += (observer,)


@dataclass(frozen=True)
class CaptureObserver:
    """A capture as the executor sees it (`joint.Observer`): the run's sink and the step (sigma) the call belongs
    to. Equal when both are: rows recorded into one sink at one step share their attention call."""

    sink: CaptureSink
    step: Optional[float] = None

    def begin(self, layout, rows: int, device=None) -> None:
        self.sink.begin(layout, rows, device=device, step=self.step)

    def record(self, image_rows, first_column: int, probs: torch.Tensor) -> None:
        self.sink.record(image_rows, first_column, probs)


def concept_saliency(o_concepts: torch.Tensor, o_image: torch.Tensor) -> torch.Tensor:
    """ConceptAttention's saliency of one block: attention outputs (before the output projection) of
    concept tokens [B, n_c, D] and image tokens [B, N_img, D] -> softmax over concepts of their dot
    products, averaged over the batch rows: [n_c, N_img]."""
    return torch.softmax(torch.einsum("bcd,bnd->bcn", o_concepts.float(), o_image.float()), dim=1).mean(0)


def record_concepts(sink: CaptureSink, saliency: torch.Tensor, block_number: int, sigma: float, registry=None) -> None:
    """Add one block's saliency to the run's sum (averaged over blocks and steps when read)."""
    if registry is not None and sink.registry is None:
        sink.registry = registry
    sink.add_concepts(saliency, block_number, sigma)
