"""ComfyUI's one attention-override slot (`transformer_options["optimized_attention_override"]`) and who else writes it.

Two kinds of override share the slot:
- wrappers, which call the function they are given (the host's attention, or the pack's) somewhere inside, e.g.
  another pack that records or edits q/k/v;
- backends, which ignore that function and compute attention with a kernel of their own. ComfyUI 0.33's core node
  Model Attention Backend (`ModelPatcher.set_model_optimized_attention`) writes one: a closure that calls the chosen
  kernel with the call's arguments.

The pack's attention is handed to the override found before it as that function, so a backend found there would drop
the pack's changes without a word. `learns_backend` tells a backend from a wrapper by what it does on a real call (it
never called the function it was given); `is_core_backend` recognises core's backend written after the pack's nodes,
so the pack can put itself back in front of it for each forward.
"""
from __future__ import annotations

import logging

log = logging.getLogger("joint_attention")

# The closure `ModelPatcher.set_model_optimized_attention` makes (ComfyUI 0.33+). Recognised by where it was defined,
# not by version: a host without the method never writes one, a host that renames it gets the reach error instead.
_CORE_BACKEND_QUALNAME = "ModelPatcher.set_model_optimized_attention.<locals>."


def is_core_backend(override) -> bool:
    """True for the override core's Model Attention Backend node writes (a kernel choice that ignores `func`)."""
    qualname = getattr(override, "__qualname__", "")
    return getattr(override, "__module__", "") == "comfy.model_patcher" and qualname.startswith(_CORE_BACKEND_QUALNAME)


def describe(override) -> str:
    """How an override in the slot is named in messages."""
    if is_core_backend(override):
        return "core's Model Attention Backend"
    name = getattr(override, "__qualname__", None) or type(override).__name__
    return f"the attention override {name!r}"


class CallTracker:
    """`func` that remembers whether it was called: handed to an override to learn whether it calls what it is given."""

    __slots__ = ("func", "called")

    def __init__(self, func):
        self.func = func
        self.called = False

    def __call__(self, *args, **kwargs):
        self.called = True
        return self.func(*args, **kwargs)
