"""Region Canvas and other mask tools: masks on the `import_masks` input, handed to the editor to import as regions.

The node does not change the drawing with them: it saves each mask as a grey PNG in ComfyUI's temp folder and names
them in its UI output (`ja_import_masks`); the editor offers them as thumbnails and turns the ones the user picks into
regions (js/region_editor.js `offerMasks`). The batch is named by a hash of its content, so the editor can tell a batch
it has already imported from a new one when the node runs again.
"""
from __future__ import annotations

import hashlib
import os

import torch

from .canvas_state import MAX_REGIONS
from .common import node_error

INPUT = "import_masks"
MAX_SIDE = 2048  # a larger mask is saved scaled down (the editor reads it at 1/8 of the canvas size anyway)


def checked(node: str, masks) -> torch.Tensor:
    """The input as a float [batch, height, width] batch in 0..1 (a single [height, width] mask is a batch of one;
    NaN reads as 0), or a node error saying what to connect."""
    shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else None
    if shape is None or len(shape) not in (2, 3) or 0 in shape:
        got = f"a tensor of shape {list(shape)}" if shape is not None else type(masks).__name__
        raise node_error(node, INPUT, f"expected a MASK ([batch, height, width]), got {got}; connect a MASK output such as "
                         "Attention Maps' masks, Load Image's MASK or Convert Image to Mask")
    masks = masks if masks.dim() == 3 else masks[None]
    return torch.nan_to_num(masks.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)


def offer(node: str, masks) -> dict:
    """UI entry for the editor: {"batch": content hash, "total": masks given, "images": [view references]}, at most
    MAX_REGIONS images (a canvas holds no more regions)."""
    import folder_paths
    import numpy as np
    from PIL import Image

    masks = checked(node, masks)
    total = masks.shape[0]
    masks = masks[:MAX_REGIONS]
    pixels = (masks * 255).round().to(torch.uint8)
    digest = hashlib.sha256(str(tuple(pixels.shape)).encode())
    digest.update(pixels.numpy().tobytes())
    batch = digest.hexdigest()[:20]
    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    images = []
    for k, mask in enumerate(masks):
        h, w = mask.shape
        scale = min(1.0, MAX_SIDE / max(h, w))
        if scale < 1.0:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            mask = torch.nn.functional.interpolate(mask[None, None], size=size, mode="area")[0, 0]
            picture = (mask * 255).round().to(torch.uint8)
        else:
            picture = pixels[k]
        name = f"ja_canvas_mask_{batch}_{k}.png"
        Image.fromarray(np.ascontiguousarray(picture.numpy())).save(os.path.join(folder, name))
        images.append({"filename": name, "subfolder": "", "type": "temp"})
    return {"batch": batch, "total": total, "images": images}
