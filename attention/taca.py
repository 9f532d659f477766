"""TACA (arXiv 2506.07986): temperature on image-query x text-key logits in early steps.

In active calls the logits of image queries against text keys (base and region texts)
become gamma * (q.k * scale) + bias; text-query rows and image-image logits stay as
they are. Active while the current sigma >= `sigma_threshold` (t >= 970/1000 for the
paper's 0.97 on flow models).
"""
from __future__ import annotations

from .dispatcher import COND, UNCOND, BlockRef, ForwardState, Modifier

APPLY_TO = ("both", "cond", "uncond")


class TacaModifier(Modifier):
    key = "taca"

    def __init__(self, gamma: float, sigma_threshold: float, apply_to: str, double_blocks: frozenset, single_blocks: frozenset):
        if apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be one of {APPLY_TO}, got {apply_to!r}")
        self.gamma = float(gamma)
        self.sigma_threshold = float(sigma_threshold)
        self.apply_to = apply_to
        self.selected = {"double": frozenset(double_blocks), "single": frozenset(single_blocks)}

    def active(self, state: ForwardState, block: BlockRef, row_kind: int) -> bool:
        if self.gamma == 1.0 or state.sigma < self.sigma_threshold:
            return False
        if (self.apply_to == "cond" and row_kind != COND) or (self.apply_to == "uncond" and row_kind != UNCOND):
            return False
        return block.index in self.selected.get(block.kind, ())

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        if self.active(state, block, row_kind):
            spec.text_gamma *= self.gamma

    def describe(self) -> str:
        return f"TACA gamma={self.gamma} sigma>={self.sigma_threshold} rows={self.apply_to}"
