"""The pack's block hooks: what runs when the model enters one of its transformer blocks.

A family (families/) says where its blocks are and how to hook them (`Family.hook_blocks`); whatever the hook (the
host's `patches_replace["dit"]` block patches, NextDiT's wrapped layer lists), entering a block is the same here:
name the block for the attention calls below it, count it for the reach check, let the features edit the block's
text stream (or skip the block), and let host-side features see the block's inputs and output.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch

from ..attention.forward import BLOCKS, BlockRef, ForwardState, TextStream
from ..families import named
from . import reach
from .options import BLOCK_KEY, FORWARD_KEY, REFINER_KEY, find_dispatcher

# torch.compile (core's TorchCompileModel compiles the whole diffusion model): the hooks read per-step Python state
# (sigma, windows, counters), which traced code would specialise on; they run eagerly, the blocks they call are
# compiled as usual (recursive=False: only the hook's own frame).
_outside_compile_only_this_frame = partial(torch.compiler.disable, recursive=False)


class EnteredBlock:
    """A block the pack acts in during a forward: its state, dispatcher and the options its calls get."""

    def __init__(self, state: ForwardState, dispatcher, ref: BlockRef, options: dict):
        self.state, self.dispatcher, self.ref, self.options = state, dispatcher, ref, options

    def edit_text(self, text: TextStream) -> bool:
        """Let the features edit the block's text stream (`text.tensor`); True when they skip the block."""
        if self.dispatcher.edit_text(self.state, self.ref, text) == "skip":
            reach.reached(self.state, reach.SKIPPED, self.ref)
            return True
        return False

    def before(self, inputs: dict) -> None:
        self.dispatcher.before_block(self.state, self.ref, inputs)

    def after(self, inputs: dict, run_block, output) -> None:
        self.dispatcher.after_block(self.state, self.ref, inputs, run_block, output)


class BlockHooks:
    """What a family's block hooks call (handed to `Family.hook_blocks`, so families never import this layer)."""

    @staticmethod
    def enter(options: dict, ref: BlockRef) -> Optional[EnteredBlock]:
        """The block `ref` entered with the host's `transformer_options`; None when no patched forward runs."""
        state, dispatcher = options.get(FORWARD_KEY), find_dispatcher(options)
        if state is None or dispatcher is None:
            return None
        reach.reached(state, BLOCKS, ref)
        return EnteredBlock(state, dispatcher, ref, {**options, BLOCK_KEY: ref})

    @staticmethod
    def forward_state(options: dict) -> Optional[ForwardState]:
        """The patched forward's state (block counts, text layout) before a block is entered; None when none runs."""
        state = options.get(FORWARD_KEY)
        return state if state is not None and find_dispatcher(options) is not None else None

    @staticmethod
    def outside_blocks(options: dict, role: str):
        """(state, options) for layers that run outside the numbered blocks (NextDiT's refiners), whose attention
        the pack leaves alone by design; None when no patched forward runs."""
        state = options.get(FORWARD_KEY)
        if state is None or find_dispatcher(options) is None:
            return None
        return state, {**options, REFINER_KEY: role}

    @staticmethod
    def block_patch(ref: BlockRef, found=None) -> "BlockPatch":
        return BlockPatch(ref, inner=found)

    @staticmethod
    def is_block_patch(found) -> bool:
        return isinstance(found, BlockPatch)


HOOKS = BlockHooks()


class BlockPatch:
    """`patches_replace["dit"]` entry: enters the block, then runs it (or a foreign patch found there)."""

    def __init__(self, ref: BlockRef, inner=None):
        self.ref = ref
        self.inner = inner

    def __deepcopy__(self, memo):
        return self

    @_outside_compile_only_this_frame
    def __call__(self, args, extra):
        options = args.get("transformer_options") or {}
        block = HOOKS.enter(options, self.ref)
        args = {**args, "transformer_options": block.options if block is not None else {**options, BLOCK_KEY: self.ref}}
        if block is not None:
            family = named(block.state.family)
            args = family.block_inputs(block.state, args)
            key, text = family.block_text(block.state, args)
            if block.edit_text(text):
                return {k: args[k] for k in ("img", "txt") if k in args}
            args[key] = text.tensor
            block.before(args)
        output = self.inner(args, extra) if self.inner is not None else extra["original_block"](args)
        if block is not None:
            block.after(args, extra["original_block"], output)
        return output
