"""Never silently do nothing: check that a patched forward actually reached the pack's hooks.

The pack acts through two hooks the host calls from inside the model: the attention override
(`optimized_attention_override`) and the block patches (`patches_replace["dit"]`). A model whose
forward or attention was replaced (another pack's own implementation of the model, an attention
patch applied later that does not chain to the one before it, a model that is not the family it
was detected as) calls neither, and sampling would go on with the regions, TACA, text scaling or
capture silently doing nothing. Each forward counts the calls that reached the pack; after the
forward, every modifier that should have acted in it (`Modifier.expects`) is checked against the
counts, and a forward in which an expected hook was never reached stops the run with an error
that names the node. Attention is also checked per block: a block that ran through the pack's block
hooks but whose attention never reached the override (another pack attends its own way there) stops
the run too, naming the blocks.
"""
from __future__ import annotations

from ..attention.forward import ATTENTION, BLOCKS, ForwardState

SKIPPED = "skipped"  # blocks the pack itself skipped (Text Scale per Block, mode skip): they make no attention call
# Attention calls of the forward that came from a block the pack's block patch did not name: every attention call of
# the supported families is made inside a block, so that block's patch was replaced after the pack's node.
UNNAMED = "unnamed"

# Modifier keys (or key prefixes, before ":") -> the node that made the modifier, as users see it.
NODES = {
    "regional": "Apply Regional Attention",
    "taca": "TACA (text attention temperature)",
    "text_scale": "Text Scale per Block",
    "capture": "Attention Capture",
}

_HOOKS = {
    ATTENTION: "none of its attention calls reached the pack's attention override",
    BLOCKS: "none of its transformer blocks ran through the pack's block patches",
}


class PackNotReached(RuntimeError):
    """A feature should have acted in a forward, but the model never called the hook it acts through."""


def reached(state: ForwardState, hook: str, block=None) -> None:
    """Count one call of `hook` (ATTENTION, BLOCKS, SKIPPED) that reached the pack during `state`'s forward, in
    `block` (a BlockRef) when the call names one."""
    state.reached[hook] = state.reached.get(hook, 0) + 1
    if block is not None:
        state.reached_blocks.setdefault(hook, set()).add((block.kind, block.index))


def node_of(modifier) -> str:
    key = str(getattr(modifier, "key", ""))
    return NODES.get(key.split(":", 1)[0], NODES.get(key, type(modifier).__name__))


def check(modifiers, state: ForwardState) -> None:
    """Raise PackNotReached when a modifier expected a hook in this forward that no call reached."""
    counts = dict(state.reached)
    if counts.get(BLOCKS) and counts.get(SKIPPED) == counts.get(BLOCKS):
        counts.setdefault(ATTENTION, 1)  # every block ran through the pack, which skipped them all: no attention to reach
    for modifier in modifiers:
        expected = modifier.expects(state)
        missing = [hook for hook in expected if not counts.get(hook)]
        if missing:
            raise PackNotReached(message(node_of(modifier), state, missing))
        if ATTENTION in expected and counts.get(UNNAMED):
            raise PackNotReached(unnamed_blocks(node_of(modifier), state, counts[UNNAMED]))
        if ATTENTION in expected and silent_blocks(state):
            raise PackNotReached(bypassed_blocks(node_of(modifier), state, silent_blocks(state)))


def unnamed_blocks(node: str, state: ForwardState, calls: int) -> str:
    return (
        f"[{node}] this node should act in this step (sigma {state.sigma:.4g}), but {calls} attention call(s) of the "
        "model ran in blocks the pack's block patches did not see: another node or pack replaced those blocks' patches "
        "(`patches_replace`) after this node, so the effect would silently be missing from them. Fix: connect this "
        "pack's nodes after that node (the pack then runs the other patch inside its own), or remove that node."
    )


def silent_blocks(state: ForwardState) -> list:
    """Blocks that ran through the pack's block hooks (and were not skipped by it) but made no attention call that
    reached the override: every block of the supported families attends, so something in those blocks attended
    around the pack (another pack's block patch, or a block whose attention was replaced)."""
    seen = state.reached_blocks
    ran = seen.get(BLOCKS, set()) - seen.get(SKIPPED, set())
    return sorted(ran - seen.get(ATTENTION, set()))


def bypassed_blocks(node: str, state: ForwardState, blocks) -> str:
    names = ", ".join(f"{kind} {index}" for kind, index in blocks[:8]) + (" ..." if len(blocks) > 8 else "")
    return (
        f"[{node}] this node should act in this step (sigma {state.sigma:.4g}), but in {len(blocks)} block(s) "
        f"({names}) the model attended without the pack's attention override, so the effect would silently be "
        "missing there: another node or pack computes attention its own way in those blocks (a block patch that "
        "does not call the block it replaces, or an attention replacement for some blocks). Fix: connect this "
        "pack's nodes after that node, or remove it."
    )


def unknown_model(modifiers, base) -> str:
    nodes = ", ".join(dict.fromkeys(node_of(m) for m in modifiers))
    return (f"[{nodes}] the model being sampled is now a {type(base).__name__!r}, not the model of a supported family this node "
            "was connected to (another node swapped the model under it), so the pack cannot act and its effect would "
            "silently be missing. Fix: connect this pack's nodes after the node that changes the model.")


def message(node: str, state: ForwardState, missing) -> str:
    what = "; ".join(_HOOKS.get(hook, hook) for hook in missing)
    return (
        f"[{node}] this node should act in this step (sigma {state.sigma:.4g}), but the model ran without the pack: "
        f"{what}, so its effect would silently be missing from the image. Likely causes: the model's attention or "
        "its transformer blocks were replaced by another node or pack (a model loaded through its own implementation, "
        "e.g. Nunchaku; an attention patch applied after this node that does not call the one before it; a node that "
        f"swaps the model's forward), or the model is not the {state.family} model it was detected as. Fix: connect "
        "this pack's nodes after such nodes, remove the node that replaces attention, or load the model with "
        "ComfyUI's own loader."
    )
