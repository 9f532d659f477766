"""Attention-map capture: exact text-to-image probabilities accumulated in one fp32 buffer.

For each captured call the engine reports, for image query rows, the softmax weight on
every text key (base and region texts) that the output actually used (with regions, TACA
and base_ratio applied). The sink keeps one [N_img, N_text] fp32 sum plus per-column counts
(head mean per call; mean over cond rows, blocks and steps at the end). Nothing L x L and
nothing per step is stored.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Optional

import torch

from .dispatcher import BLOCK_KEY, COND, FORWARD_KEY, RECORD_KEY, Modifier

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
        self.runs = 0

    registry = None

    def ran(self) -> None:
        """A sampling run with this capture's model completed; `deliver` follows if anything was recorded."""
        self.result = {"recorded": False}

    def deliver(self, result: dict) -> None:
        self.result = {**result, "recorded": True}
        self.runs += 1
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
    """Records text-to-image maps in selected blocks inside a sigma window, cond rows only."""

    def __init__(self, handle: CaptureHandle, double_blocks, single_blocks, sigma_start: float, sigma_end: float,
                 registry=None, concepts=None):
        self.key = f"capture:{handle.id}"  # two captures on one model never mix
        self.handle = handle
        handle.registry = registry
        self.selected = {"double": frozenset(double_blocks), "single": frozenset(single_blocks)}
        self.sigma_start = float(sigma_start)
        self.sigma_end = float(sigma_end)
        self.registry = registry
        self.concepts = concepts  # ConceptStream or None

    def tensors(self) -> list:
        return [self.concepts.tokens] if self.concepts is not None else []

    def describe(self) -> str:
        return f"capture #{self.handle.id}"

    def begin_forward(self, state):
        # Mark the run, so that a run which records nothing (a window no step falls in, every captured
        # block skipped) is told apart from a sampler result ComfyUI took from its cache.
        run = state.run
        if run is not None and self.key + ":ran" not in run.items:
            run.keep(self.key + ":ran", (), "capture", on_success=self.handle.ran)
        return None

    def _sink(self, state) -> Optional[CaptureSink]:
        run = state.run
        if run is None:
            return None  # sampling outside a run wrapper: nothing to deliver to
        sink = run.items.get(self.key)
        if sink is None:
            sink = CaptureSink(state.n_img, state.data.get("device", torch.device("cpu")))
            sink.registry = self.registry
            sink.family = state.family
            sink.concept_names = self.concepts.names if self.concepts is not None else []
            run.keep(self.key, sink, "capture", on_success=lambda: self.handle.deliver(sink.result()))
        return sink

    def _active(self, state) -> bool:
        return self.sigma_end <= state.sigma <= self.sigma_start

    # -- ConceptAttention: a concept stream beside the model, never attended to by the image ----------
    def before_block(self, state, block, stream):
        c = self.concepts
        if c is None or block.kind != "double" or not self._active(state) or COND not in state.row_kinds:
            return None
        key = self.key + ":concepts"
        if block.index == 0 or key not in state.data:
            rows = sum(1 for kind in state.row_kinds if kind == COND)
            weight = next(c.embed.parameters())
            start = c.embed(c.tokens.to(weight.device, weight.dtype))
            state.data[key] = start.unsqueeze(0).expand(rows, -1, -1)
        # The host block may update its inputs in place (FLUX: img += ...): copy the cond rows now.
        cond = torch.tensor([i for i, kind in enumerate(state.row_kinds) if kind == COND])
        batch = len(state.row_kinds)
        state.data[key + ":inputs"] = {name: _rows(value, cond, batch, copy=True)
                                       for name, value in stream.items() if name not in ("transformer_options", "txt")}
        if block.index in c.blocks:
            outputs = state.data.setdefault(key + ":img", {})
            joint = state.n_context + state.n_img

            def record(out, b=block.index):  # the joint call only (SD3.5-M blocks also make an image-only call)
                if b not in outputs and out.shape[1] >= joint:
                    outputs[b] = out

            stream["transformer_options"] = {**stream["transformer_options"], RECORD_KEY: record}
        return None

    def after_block(self, state, block, stream, run_block, output):
        c = self.concepts
        key = self.key + ":concepts"
        if c is None or block.kind != "double" or key not in state.data:
            return
        cond = torch.tensor([i for i, kind in enumerate(state.row_kinds) if kind == COND])
        residual = state.data[key]
        n_c = residual.shape[1]
        side = dict(state.data.pop(key + ":inputs"))
        side["txt"] = residual.to(side["img"].dtype)
        if stream.get("pe") is not None:  # concept positions are 0, like text: reuse a text row of the RoPE table
            pe = side["pe"]
            side["pe"] = torch.cat([pe[:, :, :1].expand(*pe.shape[:2], n_c, *pe.shape[3:]), pe[:, :, state.n_context:]], dim=2)
        recorded = {}
        options = {k: v for k, v in stream["transformer_options"].items() if k not in (FORWARD_KEY, RECORD_KEY)}
        options[BLOCK_KEY] = block
        if block.index in c.blocks:
            def record(out):
                if "out" not in recorded and out.shape[1] >= n_c + state.n_img:
                    recorded["out"] = out

            options[RECORD_KEY] = record
        side["transformer_options"] = options
        result = run_block(side)
        if result.get("txt") is not None:
            state.data[key] = result["txt"]
        else:
            state.data.pop(key)
        image_out = state.data.get(key + ":img", {}).pop(block.index, None)
        if "out" in recorded and image_out is not None:
            o_concepts = recorded["out"][:, :n_c].float()
            o_image = image_out[cond.to(image_out.device), state.n_context:state.n_context + state.n_img].float()
            saliency = torch.softmax(torch.einsum("bcd,bnd->bcn", o_concepts, o_image), dim=1).mean(0)
            sink = self._sink(state)
            if sink is not None:
                if sink.concept_sum is None:
                    sink.concept_sum = torch.zeros_like(saliency)
                    if self.registry is not None:
                        self.registry.track(sink.concept_sum, "capture", "run")
                sink.concept_sum += saliency
                sink.concept_calls += 1
                sink.concept_blocks.add(block.number)
                sink.sigmas.add(round(state.sigma, 6))

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        # With concepts, only the concept stream is recorded: every attention call of the model stays
        # the host's own, so the sampled image is bit-identical to a run without capture.
        if self.concepts is not None:
            return
        if row_kind != COND or block.index not in self.selected.get(block.kind, ()):
            return
        if not self._active(state):
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


class ConceptStream:
    """Concept words for ConceptAttention: their first-token embeddings [n, C], the model's text input
    layer (applied once at the first double block), and the double blocks whose outputs are read."""

    def __init__(self, names, tokens: torch.Tensor, embed, blocks):
        self.names = list(names)
        self.tokens = tokens
        self.embed = embed
        self.blocks = frozenset(blocks)


def _rows(value, rows: torch.Tensor, batch: int, copy: bool = False):
    """`value` restricted to the given batch rows (tensors with a batch dimension, nested tuples)."""
    if torch.is_tensor(value):
        if value.ndim and value.shape[0] == batch:
            return value.index_select(0, rows.to(value.device))  # index_select always copies
        return value.clone() if copy else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # FLUX.2 modulation outputs
        return dataclasses.replace(value, **{f.name: _rows(getattr(value, f.name), rows, batch, copy)
                                             for f in dataclasses.fields(value)})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_rows(v, rows, batch, copy) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, rows, batch, copy) for v in value)
    return value
