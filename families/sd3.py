"""SD3 / SD3.5: joint blocks over [text ; image] (3.5-M also has image-only attention, which the pack leaves alone).

The context is CLIP-L/G then T5 tokens; the pooled vector enters through `y_embedder`. No text positions (no rope),
so region texts need no renumbering.
"""
from __future__ import annotations

from .base import Family


class SD3(Family):
    name = "sd3"
    models = "SD3 / SD3.5"
    table_order = 3
    blocks_doc = "joint 0-23 (3.5-M) / 0-37 (3.5-L)"
    references_doc = "-"
    classes = ("SD3",)
    double_blocks, single_blocks, text_input = "joint_blocks", "", "context_embedder"
    context_encoders = ("l", "g", "t5xxl")
    pooled_input = "y_embedder"
