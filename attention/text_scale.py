"""Per-block text enhancement (arXiv 2601.02211): edit the text residual stream before blocks.

Before each selected block (model-wide numbering: FLUX doubles 0-18 then singles 19-56,
SD3 joint blocks 0..n-1) the text stream is multiplied by `scale` (`scale`), set to zero
(`empty`), or the block is skipped (`skip`). Applies to every row (both CFG halves).
"""
from __future__ import annotations

from typing import Optional

from .forward import BLOCKS, Modifier, TextStream
from .gate import Gate

MODES = ("scale", "empty", "skip")


class TextScaleModifier(Modifier):
    key = "text_scale"
    stacks = True  # two Text Scale nodes in a row: both edits, in node order

    def __init__(self, gate: Gate, scale: float, mode: str, token_range: Optional[tuple], owner: str = "text_scale"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.gate = gate
        self.scale = float(scale)
        self.mode = mode
        self.token_range = token_range
        self.owner = owner  # how errors name what made this modifier (the node)

    def is_identity(self) -> bool:
        return self.gate.empty or (self.mode == "scale" and self.scale == 1.0)

    def expects(self, state) -> tuple:
        return () if self.is_identity() or not self.gate.in_window(state.sigma) else (BLOCKS,)

    def edit_text(self, state, block, text: TextStream) -> Optional[str]:
        if self.is_identity() or not self.gate.open(block, state.sigma):
            return None
        if self.mode == "skip":
            return "skip"
        length = text.stop - text.start
        if self.token_range and self.token_range[0] >= length:
            # The range selects no token of this text: acting on nothing would be a silent no-op.
            lo, hi = self.token_range
            raise ValueError(f"[{self.owner}] input 'token_range': {lo}-{hi - 1} selects no token: the text in this "
                             f"block has {length} tokens (positions 0-{length - 1}); choose positions inside it, or "
                             "leave token_range empty for all tokens")
        text.tensor = scaled_text(text, self.token_range, 0.0 if self.mode == "empty" else self.scale)
        return None


def scaled_text(text: TextStream, token_range: Optional[tuple], factor: float):
    """A copy of the stream with text tokens `token_range` (positions within the text; all when None)
    multiplied by `factor`."""
    length = text.stop - text.start
    lo, hi = token_range if token_range else (0, length)
    lo, hi = text.start + min(lo, length), text.start + min(hi, length)
    if lo >= hi:
        return text.tensor
    out = text.tensor.clone()
    out[:, lo:hi] = text.tensor[:, lo:hi] * factor
    return out
