"""Region Canvas: draw region masks and prompts inside the node."""
from __future__ import annotations

import logging
import os
import uuid

import torch

from . import canvas_state
from .common import CATEGORY, node_error
from .regional import REGIONS_TYPE, region_from

log = logging.getLogger("joint_attention")
NODE = "Region Canvas"
WIDGET = "JA_REGION_CANVAS"


def encode(clip, text: str):
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


class JointAttentionRegionCanvas:
    CATEGORY = f"{CATEGORY}/regional"
    RETURN_TYPES = (REGIONS_TYPE, "MASK", "IMAGE")
    RETURN_NAMES = ("regions", "masks", "preview")
    OUTPUT_TOOLTIPS = (
        "The drawn regions with their prompts encoded; connect to Apply Regional Attention.",
        "One mask per visible region, at width x height.",
        "The regions in their colours over the background (or grey where nothing is drawn), at most 1024 px on "
        "its long side.",
    )
    FUNCTION = "build"
    DESCRIPTION = ("Draw regions (rectangle, brush, eraser) and give each its prompt and strength. Saved inside the "
                   "workflow. Shortcuts: R rectangle, B brush, E eraser, G snap to the 16 px token grid, Ctrl+Z / Ctrl+Y.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The text encoder for the region prompts (the one used for the main prompt)."}),
                "width": ("INT", {"default": 1024, "min": 16, "max": 8192, "step": 16, "tooltip": "Image width in pixels."}),
                "height": ("INT", {"default": 1024, "min": 16, "max": 8192, "step": 16, "tooltip": "Image height in pixels."}),
                "regions": ("STRING", {"widgetType": WIDGET, "socketless": True, "default": "",
                                       "tooltip": "The drawing: regions, prompts and masks (edited with the canvas)."}),
            },
            "optional": {
                "background": ("IMAGE", {"tooltip": "Shown under the drawing after the next run, to trace over."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, regions, **kwargs):
        try:
            canvas_state.parse(regions)
        except canvas_state.CanvasValueError as exc:
            return f"[{NODE}] input 'regions': {exc}"
        return True

    def build(self, clip, width, height, regions, background=None):
        try:
            _, _, drawn = canvas_state.parse(regions)
        except canvas_state.CanvasValueError as exc:
            raise node_error(NODE, "regions", str(exc)) from None
        visible = [r for r in drawn if not r.hidden]
        # The masks output is the only full-resolution tensor made here: regions carry their masks at the
        # drawing's 1/8 resolution (the engine stretches masks over the image), the preview is at most
        # PREVIEW_MAX_SIDE pixels on its long side.
        mask_batch = torch.zeros(max(len(visible), 1), height, width)
        out_regions = ()
        for i, r in enumerate(visible):
            canvas_state.full_mask(r, width, height, out=mask_batch[i])
            if not r.prompt.strip():
                log.warning("[joint_attention] %s: region %d has no prompt and is skipped", NODE, i + 1)
                continue
            region = region_from(NODE, encode(clip, r.prompt), r.mask[None], r.strength)
            if region is not None:
                out_regions += (region,)
        if not out_regions:
            log.warning("[joint_attention] %s: nothing drawn with a prompt; regional attention will pass through", NODE)
        bg = None
        if background is not None:
            # Letterboxed, as the editor shows it: a background of another shape is never stretched.
            bg = canvas_state.letterbox(background[0], *canvas_state.preview_size(width, height))
        image = canvas_state.preview(visible, width, height, bg)
        ui = {"ja_background": [_save_background(background)]} if background is not None else {}
        return {"ui": ui, "result": (out_regions, mask_batch, image)}


def _save_background(background) -> dict:
    """Store the background in ComfyUI's temp folder; the widget shows it via /view."""
    import folder_paths
    import numpy as np
    from PIL import Image

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    name = f"ja_canvas_bg_{uuid.uuid4().hex}.png"
    pixels = (background[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, name))
    return {"filename": name, "subfolder": "", "type": "temp"}


NODE_CLASS_MAPPINGS = {"JointAttentionRegionCanvas": JointAttentionRegionCanvas}
NODE_DISPLAY_NAME_MAPPINGS = {"JointAttentionRegionCanvas": "Region Canvas"}
