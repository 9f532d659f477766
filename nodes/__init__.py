"""ComfyUI node classes, one file per feature; each stays thin over `attention/`."""
from . import canvas, guidance, maps, memory, regional
from .runtime import register_routes

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (regional, canvas, guidance, maps, memory):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

register_routes()
