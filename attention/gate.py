"""Where and when a feature acts: selected blocks and a window of the noise schedule.

One object for every feature (regions, TACA, text scaling, capture), so "which blocks, which
steps" means the same everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Gate:
    """Open for a block when it is selected, and for a forward when its sigma lies in
    [sigma_low, sigma_high] (sigma falls as sampling proceeds).

    Blocks are selected per kind (`double` / `single` indices) or, with `numbers`, by the
    model-wide numbering (FLUX: singles follow doubles)."""

    double: frozenset = frozenset()
    single: frozenset = frozenset()
    sigma_high: float = math.inf
    sigma_low: float = -math.inf
    numbers: Optional[frozenset] = None

    def in_window(self, sigma: float) -> bool:
        return self.sigma_low <= sigma <= self.sigma_high

    def selects(self, block) -> bool:
        if self.numbers is not None:
            return block.number in self.numbers
        return block.index in (self.double if block.kind == "double" else self.single)

    def open(self, block, sigma: float) -> bool:
        return self.in_window(sigma) and self.selects(block)

    @property
    def empty(self) -> bool:
        return not (self.numbers if self.numbers is not None else (self.double or self.single))
