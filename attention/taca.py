"""TACA (arXiv 2506.07986): temperature on image-query x text-key logits in early steps.

In active calls the logits of image queries against text keys (base and region texts)
become gamma * (q.k * scale) + bias; text-query rows and image-image logits stay as
they are. Active while the current sigma >= `sigma_threshold` (t >= 970/1000 for the
paper's 0.97 on flow models; 0 = every step, as the released inference scripts do).
"""
from __future__ import annotations

import dataclasses

from .forward import ATTENTION, COND, UNCOND, Modifier
from .gate import Gate

APPLY_TO = ("both", "cond", "uncond")


def with_temperature(groups: list, gamma: float) -> list:
    """The query groups with image-query x text-key logits multiplied by `gamma`: every key part
    holding text (`text_offset` set) of every group of image rows (`image_rows` set)."""
    if gamma == 1.0:
        return groups
    out = []
    for group in groups:
        if group.image_rows is None:
            out.append(group)
            continue
        parts = [dataclasses.replace(p, logit_scale=p.logit_scale * gamma) if p.text_offset is not None else p
                 for p in group.parts]
        out.append(dataclasses.replace(group, parts=parts, prepared={}))
    return out


class TacaModifier(Modifier):
    key = "taca"
    stacks = True  # two TACA nodes in a row: their gammas multiply where both act

    def __init__(self, gamma: float, apply_to: str, gate: Gate):
        if apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be one of {APPLY_TO}, got {apply_to!r}")
        self.gamma = float(gamma)
        self.apply_to = apply_to
        self.gate = gate

    def active(self, state, block, row_kind: int) -> bool:
        if self.gamma == 1.0 or not self.gate.open(block, state.sigma):
            return False
        return not ((self.apply_to == "cond" and row_kind != COND) or (self.apply_to == "uncond" and row_kind != UNCOND))

    def expects(self, state) -> tuple:
        if self.gamma == 1.0 or self.gate.empty or not self.gate.in_window(state.sigma):
            return ()
        rows = set(state.row_kinds)
        wanted = {"both": {COND, UNCOND}, "cond": {COND}, "uncond": {UNCOND}}[self.apply_to]
        return (ATTENTION,) if rows & wanted else ()

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        if self.active(state, block, row_kind):
            spec.text_gamma *= self.gamma
