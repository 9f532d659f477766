"""Region Canvas: draw region masks and prompts inside the node."""
from __future__ import annotations

import hashlib
import logging
import os

import torch
from comfy_api.latest import io

from ..integration.region_lora import RegionLoRA
from . import canvas_masks, canvas_state
from .common import CATEGORY, DISPLAY_NAMES, node_error, rgb_image
from .region_lora import lora_path, with_lora
from .regional import Regions, region_from

log = logging.getLogger("joint_attention")
NODE = "Region Canvas"
WIDGET = "JA_REGION_CANVAS"


def encode(clip, text: str):
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def _drawing_input():
    """The drawing: a STRING edited by the canvas widget (frontend type WIDGET), without a socket.
    0.3.75's `io.String.Input` takes no `extra_dict`; both hosts' `as_dict` merge the attribute set here, which keeps
    the input a STRING carrying `widgetType` (a V3 `widget_type` would rename the input's type to the widget's)."""
    drawing = io.String.Input("regions", default="", socketless=True,
                              tooltip="The drawing: regions, prompts and masks (edited with the canvas).")
    drawing.extra_dict = {"widgetType": WIDGET}
    return drawing


class JointAttentionRegionCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionRegionCanvas",
            display_name=DISPLAY_NAMES["JointAttentionRegionCanvas"],
            category=f"{CATEGORY}/regional",
            # An output node: ComfyUI sends a cached node's UI output again only for output nodes (0.3.75), and the
            # editor needs its background and mask offer back when the drawing's run comes from the cache.
            is_output_node=True,
            description="Draw regions (rectangle, smooth brush, eraser, lasso, fill) and give each its prompt and "
                        "strength; move and resize a region's shape with the Select tool. Saved inside the workflow. "
                        "Shortcuts: V select, R rectangle, B brush, E eraser, L lasso, K fill, Shift or A add to the "
                        "selected region, G snap to the 16 px token grid, Ctrl+Z undo, Ctrl+Y or Ctrl+Shift+Z redo.",
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder for the region prompts (the one used for the main prompt)."),
                io.Int.Input("width", default=1024, min=16, max=8192, step=16, tooltip="Image width in pixels."),
                io.Int.Input("height", default=1024, min=16, max=8192, step=16, tooltip="Image height in pixels."),
                _drawing_input(),
                io.Image.Input("background", optional=True,
                               tooltip="Shown under the drawing after the next run, to trace over."),
                io.Mask.Input(canvas_masks.INPUT, optional=True,
                              tooltip="Masks to add as regions (e.g. Attention Maps' concept masks, a loaded or painted "
                                      "mask): after a run the editor shows them and adds the ones you click. They never "
                                      "change the drawing by themselves."),
            ],
            outputs=[
                Regions.Output("regions_out", display_name="regions", tooltip="The drawn regions with their prompts "
                               "encoded; connect to Apply Regional Attention."),
                io.Mask.Output("masks", display_name="masks", tooltip="One mask per visible region, in the list's order "
                               "(top to bottom, the regions named as in the list), at width x height (feather "
                               "included); one empty mask when none is visible."),
                io.Image.Output("preview", display_name="preview", tooltip="The regions in their colours over the "
                                "background (or grey where nothing is drawn), at most 1024 px on its long side."),
                io.Int.Output("width_out", display_name="width", tooltip="The canvas width: link it to the latent's "
                              "width (Empty Latent Image) so the two always match."),
                io.Int.Output("height_out", display_name="height", tooltip="The canvas height: link it to the latent's "
                              "height so the two always match."),
            ],
        )

    # Only `regions`: ComfyUI repeats a failed check's message once per input the check receives.
    @classmethod
    def validate_inputs(cls, regions):
        try:
            _, _, drawn = canvas_state.parse(regions)
            _region_loras(drawn)
        except canvas_state.CanvasValueError as exc:
            return f"[{NODE}] input 'regions': {exc}"
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, clip, width, height, regions, background=None, import_masks=None) -> io.NodeOutput:
        offer = canvas_masks.offer(NODE, import_masks) if import_masks is not None else None
        try:
            _, _, drawn = canvas_state.parse(regions)
        except canvas_state.CanvasValueError as exc:
            raise node_error(NODE, "regions", str(exc)) from None
        loras = _region_loras(drawn)
        visible = [r for r in drawn if not r.hidden]
        # The masks output is the only full-resolution tensor made here: regions carry their masks at the
        # drawing's 1/8 resolution (the engine stretches masks over the image), the preview is at most
        # PREVIEW_MAX_SIDE pixels on its long side.
        mask_batch = torch.zeros(max(len(visible), 1), height, width)
        out_regions = ()
        for i, r in enumerate(visible):
            canvas_state.full_mask(r, width, height, out=mask_batch[i])
            if not r.prompt.strip():
                log.warning("[joint_attention] %s: %s has no prompt and is skipped", NODE, r.name or f"region {i + 1}")
                continue
            region = region_from(NODE, encode(clip, r.prompt), r.mask[None], r.strength)
            if region is not None and id(r) in loras:
                region = with_lora(region, loras[id(r)])
            if region is not None:
                out_regions += (region,)
        if not out_regions:
            log.warning("[joint_attention] %s: nothing drawn with a prompt; regional attention will pass through", NODE)
        bg = None
        if background is not None:
            background = rgb_image(NODE, "background", background)
            # Letterboxed, as the editor shows it: a background of another shape is never stretched.
            bg = canvas_state.letterbox(background, *canvas_state.preview_size(width, height))
        image = canvas_state.preview(visible, width, height, bg)
        ui = {"ja_background": [_save_background(background)]} if background is not None else {}
        if offer is not None:
            ui["ja_import_masks"] = [offer]
        return io.NodeOutput(out_regions, mask_batch, image, width, height, ui=ui)


def _region_loras(drawn) -> dict:
    """{id(region): RegionLoRA} for the regions whose row chose a LoRA, over the whole schedule as Region LoRA's
    defaults; a file the loras folder does not hold is an error naming the region."""
    return {id(r): RegionLoRA(r.lora[0], lora_path(NODE, "regions", r.lora[0], f"{r.name or f'region {i + 1}'}'s LoRA "),
                              r.lora[1])
            for i, r in enumerate(drawn) if r.lora is not None and not r.hidden}


BACKGROUND_FOLDER = "joint_attention_canvas"  # under ComfyUI's input folder: it outlives a restart, unlike temp/


def _save_background(background) -> dict:
    """Store the background ([H, W, 3]) under input/joint_attention_canvas/, named by a hash of its pixels (the same
    picture run again reuses its file); the editor shows it via /view and the node's properties keep the reference."""
    import folder_paths
    import numpy as np
    from PIL import Image

    pixels = (background.clamp(0, 1).numpy() * 255).astype(np.uint8)
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    name = f"background_{digest.hexdigest()[:32]}.png"
    folder = os.path.join(folder_paths.get_input_directory(), BACKGROUND_FOLDER)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        # Written aside and renamed: a page reading it meanwhile never sees half a file.
        partial = f"{path}.{os.getpid()}.part"
        Image.fromarray(pixels).save(partial, format="PNG")
        os.replace(partial, path)
    return {"filename": name, "subfolder": BACKGROUND_FOLDER, "type": "input"}


NODES = [JointAttentionRegionCanvas]
