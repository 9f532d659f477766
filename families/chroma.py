"""Chroma: FLUX.1's block layout with modulation from an approximator instead of a pooled vector; zero text ids."""
from __future__ import annotations

from .base import Family


class Chroma(Family):
    name = "chroma"
    models = "Chroma"
    table_order = 2
    blocks_doc = "double 0-18, single 0-37"
    references_doc = "-"
    classes = ("Chroma",)
