"""TACA (arXiv 2506.07986): temperature on image-query x text-key logits in early steps.

In active calls the logits of image queries against text keys (base and region texts)
become gamma * (q.k * scale) + bias; text-query rows and image-image logits stay as
they are. Active while the current sigma >= `sigma_threshold` (t >= 970/1000 for the
paper's 0.97 on flow models; 0 = every step, as the released inference scripts do).
"""
from __future__ import annotations

from dataclasses import dataclass

from .forward import ATTENTION, COND, UNCOND, Modifier
from .gate import Gate

APPLY_TO = ("both", "cond", "uncond")


@dataclass(frozen=True)
class Temperature:
    """TACA as a logit modifier (`joint.LogitModifier`): `gamma` on the logits of image rows (`image_rows` set)
    against text keys (`text_offset` set: base and region texts), 1 on every other query group and key part."""

    gamma: float

    def logit_scale(self, group, part) -> float:
        return self.gamma if group.image_rows is not None and part.text_offset is not None else 1.0


def with_gamma(modifiers: tuple, gamma: float) -> tuple:
    """A call's logit modifiers with TACA's temperature multiplied by `gamma`: one `Temperature` per call, so
    TACA nodes in a row multiply their gammas (in node order), and a product of exactly 1 leaves none (the
    call stays plain where nothing else acts)."""
    for i, found in enumerate(modifiers):
        if isinstance(found, Temperature):
            total = found.gamma * gamma
            rest = modifiers[:i] + modifiers[i + 1:]
            return rest if total == 1.0 else modifiers[:i] + (Temperature(total),) + modifiers[i + 1:]
    return modifiers if gamma == 1.0 else modifiers + (Temperature(gamma),)


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
            spec.modifiers = with_gamma(spec.modifiers, self.gamma)
