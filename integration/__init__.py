"""The pack inside ComfyUI: installing on a clone, the attention override, block hooks, the forward wrapper, the
reach check, MultiGPU work units and the run's state. Nothing here knows a model family by name (families/ does),
and nothing here is a node (nodes/ are)."""
