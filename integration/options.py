"""The pack's entries in ComfyUI's `transformer_options`: what the hooks put there for the calls below them.

Its own module so that every hook (integration/blocks.py, integration/override.py, integration/concepts.py) reads the
same names without importing the others.
"""
from __future__ import annotations

PACK_KEY = "joint_attention"
OVERRIDE_KEY = "optimized_attention_override"
# transformer_options entries the pack sets for the calls below them.
FORWARD_KEY = "joint_attention_forward"  # the ForwardState of the running model forward
BLOCK_KEY = "joint_attention_block"  # the BlockRef of the running block
RECORD_KEY = "joint_attention_record"  # callable(output) that reads an attention call's output
KEYS_KEY = "joint_attention_keys"  # callable(args, kwargs) -> args: reads or replaces an attention call's q, k, v
# Set by the NextDiT layer hooks for the caption and noise refiners: attention calls outside the joint blocks, which
# the pack leaves alone by design (not blocks whose patches another node replaced).
REFINER_KEY = "joint_attention_refiner"
RUN_KEY = "joint_attention_run"  # the RunState of the running sampling run (the OUTER_SAMPLE wrapper's)


def find_dispatcher(transformer_options):
    found = (transformer_options or {}).get("patches", {}).get(PACK_KEY)
    return found[0] if found else None
