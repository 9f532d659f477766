"""SD3 / SD3.5: joint blocks over [text ; image] (3.5-M also has image-only attention, which the pack leaves alone).

The context is CLIP-L/G then T5 tokens; the pooled vector enters through `y_embedder`. No text positions (no rope),
so region texts need no renumbering.
"""
from __future__ import annotations

from ..attention.token_weights import IMAGE, SHARED, TEXT
from .base import Family


class SD3(Family):
    name = "sd3"
    models = "SD3 / SD3.5"
    table_order = 3
    blocks_doc = "joint 0-23 (3.5-M) / 0-37 (3.5-L)"
    references_doc = "-"
    classes = ("SD3",)
    # Region LoRAs: x_block is the image stream (attn2: SD3.5-M's image-only attention), context_block the text.
    adapter_roles = (
        (r"joint_blocks\.\d+\.x_block\.(attn2?\.(qkv|proj)|mlp\.fc[12])", IMAGE),
        (r"joint_blocks\.\d+\.context_block\.(attn\.(qkv|proj)|mlp\.fc[12])", TEXT),
        (r"joint_blocks\.\d+\.(x|context)_block\.adaLN_modulation\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input = "joint_blocks", "", "context_embedder"
    context_encoders = ("l", "g", "t5xxl")
    pooled_input = "y_embedder"
