"""JointAttentionMemory: what the pack holds right now, and a button to free its caches."""
from __future__ import annotations

import json

from .common import CATEGORY
from .runtime import MEMORY


class AnyType(str):
    """A type that matches every socket, so the node can sit on any link."""

    def __ne__(self, other):
        return False


ANY = AnyType("*")


class JointAttentionMemory:
    CATEGORY = f"{CATEGORY}/utils"
    RETURN_TYPES = (ANY, "STRING")
    RETURN_NAMES = ("passthrough", "report")
    OUTPUT_TOOLTIPS = ("Whatever came in, unchanged.", "The pack's memory report as JSON.")
    FUNCTION = "report"
    OUTPUT_NODE = True
    DESCRIPTION = "Reports the pack's tensors by owner and device (plus CUDA figures on GPU) and can free its caches."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "free_caches": ("BOOLEAN", {"default": False, "tooltip": "Drop the pack's cached masks and plans before reporting."}),
            },
            "optional": {
                "passthrough": (ANY, {"tooltip": "Any value; passed through so the node can be placed anywhere."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # always re-run: the report is a live reading

    def report(self, free_caches, passthrough=None):
        if free_caches:
            MEMORY.free("cache")
        text = json.dumps(MEMORY.report(), indent=2, sort_keys=True)
        return {"ui": {"text": [text]}, "result": (passthrough, text)}


NODE_CLASS_MAPPINGS = {"JointAttentionMemory": JointAttentionMemory}
NODE_DISPLAY_NAME_MAPPINGS = {"JointAttentionMemory": "Joint Attention Memory"}
