"""Per-block text enhancement (arXiv 2601.02211): edit the text residual stream before blocks.

Before each selected block (model-wide numbering: FLUX doubles 0-18 then singles 19-56,
SD3 joint blocks 0..n-1) the text stream is multiplied by `scale` (`scale`), set to zero
(`empty`), or the block is skipped (`skip`). In FLUX single blocks the text part is the
first `n_context` tokens of the joint stream. Applies to every row (both CFG halves).
"""
from __future__ import annotations

from typing import Optional

from .dispatcher import BlockRef, ForwardState, Modifier

MODES = ("scale", "empty", "skip")


class TextScaleModifier(Modifier):
    key = "text_scale"

    def __init__(self, blocks: frozenset, scale: float, mode: str, token_range: Optional[tuple], sigma_start: float, sigma_end: float):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.blocks = frozenset(blocks)
        self.scale = float(scale)
        self.mode = mode
        self.token_range = token_range
        self.sigma_start = float(sigma_start)
        self.sigma_end = float(sigma_end)

    def is_identity(self) -> bool:
        return not self.blocks or (self.mode == "scale" and self.scale == 1.0)

    def before_block(self, state: ForwardState, block: BlockRef, stream: dict) -> Optional[str]:
        if self.is_identity() or block.number not in self.blocks:
            return None
        if not (self.sigma_end <= state.sigma <= self.sigma_start):
            return None
        if self.mode == "skip":
            return "skip"
        factor = 0.0 if self.mode == "empty" else self.scale
        if "txt" in stream and stream["txt"] is not None:
            stream["txt"] = self._scaled(stream["txt"], 0, factor)
        else:  # single block: text is the head of the joint stream
            stream["img"] = self._scaled(stream["img"], state.n_context, factor, joint=True)
        return None

    def _scaled(self, x, n_text: int, factor: float, joint: bool = False):
        length = n_text if joint else x.shape[1]
        lo, hi = self.token_range if self.token_range else (0, length)
        lo, hi = min(lo, length), min(hi, length)
        if lo >= hi:
            return x
        out = x.clone()
        out[:, lo:hi] = x[:, lo:hi] * factor
        return out

    def describe(self) -> str:
        return f"text {self.mode} x{self.scale} before blocks {sorted(self.blocks)}"
