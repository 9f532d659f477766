"""comfyui-joint-attention: control over the joint text-image attention of MMDiT models."""
import importlib.util

WEB_DIRECTORY = "./js"

if importlib.util.find_spec("comfy") is not None:
    from .nodes import comfy_entrypoint  # ComfyUI registers the nodes through this (V3 extension)

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
else:  # imported without ComfyUI (the pure-torch `attention` package on its own): no nodes to register
    __all__ = ["WEB_DIRECTORY"]
