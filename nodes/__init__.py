"""ComfyUI node classes, one file per feature; each stays thin over `attention/`."""
from . import guidance, memory, regional
from .runtime import register_routes

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (regional, guidance, memory):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

register_routes()
