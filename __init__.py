"""comfyui-joint-attention: control over the joint text-image attention of MMDiT models."""
import importlib.util

WEB_DIRECTORY = "./js"

if importlib.util.find_spec("comfy") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported without ComfyUI (the pure-torch `attention` package on its own): no nodes to register
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
