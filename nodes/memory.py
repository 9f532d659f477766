"""JointAttentionMemory: what the pack holds right now, and a button to free its caches."""
from __future__ import annotations

import json

from comfy_api.latest import io

from ..integration.runtime import MEMORY
from .common import CATEGORY, DISPLAY_NAMES


class JointAttentionMemory(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionMemory",
            display_name=DISPLAY_NAMES["JointAttentionMemory"],
            category=f"{CATEGORY}/utils",
            description="Reports the pack's tensors by owner and device (plus CUDA figures on GPU) and can free its "
                        "caches.",
            inputs=[
                io.Boolean.Input("free_caches", default=False,
                                 tooltip="Drop the pack's cached masks and plans before reporting."),
                io.AnyType.Input("passthrough", optional=True,
                                 tooltip="Any value; passed through so the node can be placed anywhere."),
            ],
            outputs=[
                io.AnyType.Output("passthrough_out", display_name="passthrough", tooltip="Whatever came in, unchanged."),
                io.String.Output("report", display_name="report", tooltip="The pack's memory report as JSON."),
            ],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")  # always re-run: the report is a live reading

    @classmethod
    def execute(cls, free_caches, passthrough=None) -> io.NodeOutput:
        if free_caches:
            MEMORY.free("cache")
        text = json.dumps(MEMORY.report(), indent=2, sort_keys=True)
        return io.NodeOutput(passthrough, text, ui={"text": [text]})


NODES = [JointAttentionMemory]
