"""Pure-torch core of the pack: token layouts, attention math, modifiers and memory.

Nothing in this package imports ComfyUI; `nodes/` adapts it to the host.
"""
