"""Call one of the pack's nodes directly, the way ComfyUI's executor would, whatever its schema.

Tests call nodes outside a prompt (a node, its inputs, its outputs). `run_node` hides how a node is called: a V3
node (`comfy_api.latest.io.ComfyNode`) through its classmethod `execute`, a V1 node through `FUNCTION` on an
instance. Either way the answer is a `NodeOutput`-shaped object: `out[0]`, `out.args` (the outputs, in order) and
`out.ui` (what the node shows in the UI, or None).
"""
from __future__ import annotations

from typing import Any


class Outputs:
    """A node's outputs and UI payload (the shape of `comfy_api.latest.io.NodeOutput`)."""

    def __init__(self, args: tuple, ui: Any = None):
        self.args = tuple(args)
        self.ui = ui

    def __getitem__(self, index):
        return self.args[index]

    def __iter__(self):
        return iter(self.args)

    def __len__(self):
        return len(self.args)


def run_node(node_cls, *args, **kwargs) -> Outputs:
    if hasattr(node_cls, "define_schema"):  # V3: classmethods, no instance
        out = node_cls.execute(*args, **kwargs)
        return Outputs(out.args, getattr(out, "ui", None))
    out = getattr(node_cls(), node_cls.FUNCTION)(*args, **kwargs)
    if isinstance(out, dict):
        return Outputs(out.get("result", ()), out.get("ui"))
    return Outputs(out)


def validate_node(node_cls, **kwargs):
    """The node's queue-time input check (V1 `VALIDATE_INPUTS`, V3 `validate_inputs`): True or an error string."""
    check = getattr(node_cls, "validate_inputs", None) if hasattr(node_cls, "define_schema") else None
    if check is None:
        check = node_cls.VALIDATE_INPUTS
    return check(**kwargs)
