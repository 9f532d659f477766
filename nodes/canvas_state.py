"""Decode and validate the Region Canvas widget value (format written by js/region_state.js).

Pure Python + torch; never trusts the value: sizes, counts, prompts and run lengths are
checked before anything is allocated, and errors say what to fix.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import torch

VERSION = 1
CELL = 8
# Regions one canvas holds: a limit of the drawing UI (a list a person can work through, colours that stay apart),
# below the 128 regions one model call takes (attention/regional.py's MAX_REGIONS, which bounds the regional plan).
MAX_REGIONS = 32
MAX_PROMPT = 4000
MAX_VALUE_BYTES = 4 * 1024 * 1024
MAX_FEATHER = 256  # pixels of soft edge on each side of a region's border
MAX_NAME = 64  # characters of a region's name
MAX_LORA_NAME = 255  # characters of a region LoRA's file name (relative to the loras folder)
LORA_STRENGTH = 10.0  # a region LoRA's strength lies in [-LORA_STRENGTH, LORA_STRENGTH], as on the Region LoRA node
_RLE = re.compile(r"^[0-9a-z]{1,8}(\.[0-9a-z]{1,8})*$")  # 8 base-36 digits hold any run of an 8192 x 8192 canvas
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


class CanvasValueError(ValueError):
    pass


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` with unpaired UTF-16 surrogates replaced by U+FFFD. JSON can carry them ("\\ud800", or half an emoji
    cut by a length limit) and Python keeps them, but text encoders take only valid Unicode (the tokenizer raises
    TypeError). Paired surrogates never reach here: JSON decoding joins them into one character."""
    return _LONE_SURROGATE.sub("\ufffd", text)


@dataclass
class CanvasRegion:
    prompt: str
    strength: float
    color: str
    hidden: bool
    mask: torch.Tensor  # [mh, mw] float, 1/8 resolution of the saved width/height (soft where feathered)
    feather: int = 0
    name: str = ""  # the name the user gave it in the editor ("Region N" by default; it stays with the region)
    opacity: float = 1.0  # how strongly the editor shows it (view only: the masks and regions never use it)
    lora: tuple | None = None  # (file name in the loras folder, strength) chosen in the region's row, if any


def lora_choice(raw, i: int):
    """(name, strength) of a region's saved LoRA choice. Only its form is checked here (a relative name that cannot
    leave the loras folder); whether the folder holds it is the node's check (canvas.py), which knows the folder."""
    fix = "choose it again with the region's LoRA button, or clear it there"
    if not isinstance(raw, dict) or set(raw) - {"name", "strength"}:
        raise CanvasValueError(f"region {i + 1}: 'lora' must be an object with a name and a strength; {fix}")
    name, strength = raw.get("name"), raw.get("strength", 1.0)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_LORA_NAME or "\0" in name:
        raise CanvasValueError(f"region {i + 1}: the LoRA name must be a file name of at most {MAX_LORA_NAME} "
                               f"characters; {fix}")
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or any(p in ("", ".", "..") for p in parts):
        raise CanvasValueError(f"region {i + 1}: the LoRA name {name!r} is not a plain name inside the loras folder "
                               f"(no absolute path, no '..'); {fix}")
    if (isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength)
            or not -LORA_STRENGTH <= strength <= LORA_STRENGTH):
        raise CanvasValueError(f"region {i + 1}: the LoRA strength must be a number between {-LORA_STRENGTH:g} and "
                               f"{LORA_STRENGTH:g}; set it in the region's LoRA picker")
    return name, float(strength)


def mask_dims(width: int, height: int):
    return -(-width // CELL), -(-height // CELL)


def decode_rle(text, length: int) -> torch.Tensor:
    if not isinstance(text, str) or not _RLE.match(text) or len(text) > 8 * length + 8:
        raise CanvasValueError("mask is not a run-length string")
    runs = [int(part, 36) for part in text.split(".")]
    if sum(runs) != length:
        raise CanvasValueError(f"mask covers {sum(runs)} cells, the canvas has {length}")
    values = torch.tensor([i % 2 for i in range(len(runs))], dtype=torch.float32)
    return torch.repeat_interleave(values, torch.tensor(runs))


def parse(text: str):
    """(width, height, regions) of a widget value; an empty value has no regions."""
    if text is None or not str(text).strip() or str(text).strip() == "{}":
        return None, None, []
    if not isinstance(text, str):
        raise CanvasValueError("the value must be text (the canvas's JSON)")
    size = len(text) if len(text) > MAX_VALUE_BYTES else len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_VALUE_BYTES:
        raise CanvasValueError(f"the drawing is {size} bytes; the limit is {MAX_VALUE_BYTES}")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CanvasValueError(f"the value is not JSON ({exc.msg}); clear the canvas or reload the workflow") from None
    except RecursionError:
        raise CanvasValueError("the value is nested too deeply to be a drawing; clear the canvas") from None
    except ValueError:  # e.g. a number with thousands of digits
        raise CanvasValueError("the value holds a number too large to read; clear the canvas") from None
    if not isinstance(raw, dict):
        raise CanvasValueError("the value must be a JSON object")
    if raw.get("version") != VERSION:
        raise CanvasValueError(f"unsupported canvas version {raw.get('version')!r}; this pack reads version {VERSION}")
    width, height = raw.get("width"), raw.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192 for v in (width, height)):
        raise CanvasValueError("width/height in the value must be integers between 16 and 8192")
    regions = raw.get("regions")
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise CanvasValueError(f"'regions' must be a list of at most {MAX_REGIONS} regions")
    mw, mh = mask_dims(width, height)
    out = []
    for i, r in enumerate(regions):
        if not isinstance(r, dict):
            raise CanvasValueError(f"region {i + 1} is not an object")
        prompt = r.get("prompt", "")
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT:
            raise CanvasValueError(f"region {i + 1}: the prompt must be text of at most {MAX_PROMPT} characters")
        prompt = valid_text(prompt)
        name = r.get("name", f"Region {i + 1}")
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise CanvasValueError(f"region {i + 1}: the name must be text of at most {MAX_NAME} characters")
        strength = r.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 4.0:
            raise CanvasValueError(f"region {i + 1}: strength must be a number between 0 and 4")
        feather = r.get("feather", 0)
        if isinstance(feather, bool) or not isinstance(feather, int) or not 0 <= feather <= MAX_FEATHER:
            raise CanvasValueError(f"region {i + 1}: feather must be a whole number of pixels between 0 and {MAX_FEATHER}")
        opacity = r.get("opacity", 1.0)
        if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not 0.0 <= opacity <= 1.0:
            raise CanvasValueError(f"region {i + 1}: opacity must be a number between 0 and 1 (it only changes how the editor "
                                   "shows the region); set it with the region's slider")
        color = r.get("color") if isinstance(r.get("color"), str) and _COLOR.match(r.get("color")) else PALETTE[i % len(PALETTE)]
        try:
            bits = decode_rle(r.get("mask"), mw * mh)
        except CanvasValueError as exc:
            raise CanvasValueError(f"region {i + 1}: {exc}") from None
        lora = lora_choice(r["lora"], i) if "lora" in r else None
        mask = feather_mask(bits.reshape(mh, mw), feather)
        out.append(CanvasRegion(prompt, float(strength), color, bool(r.get("hidden", False)), mask, feather,
                                valid_text(name), float(opacity), lora))
    return width, height, out


def feather_mask(mask: torch.Tensor, feather: int) -> torch.Tensor:
    """Soft edges of `feather` pixels, as js/region_state.js featherMask draws them: two passes of a (2k+1)-cell box
    blur at the mask's 1/8 resolution, k = feather // 16, edges replicated (a region touching the border stays solid
    there). Works on the small mask only, so it costs nothing at full size."""
    k = max(0, min(MAX_FEATHER, int(feather))) // (2 * CELL)
    if not k:
        return mask
    x = mask[None, None].float()
    for _ in range(2):
        x = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (k, k, k, k), mode="replicate"), 2 * k + 1, stride=1)
    return x[0, 0]


def nearest_index(size_out: int, size_in: int) -> torch.Tensor:
    """Source index of each output pixel for a nearest-exact stretch of `size_in` pixels to `size_out`."""
    pos = (torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out)
    return pos.floor().long().clamp_(max=size_in - 1)


def stretch(small: torch.Tensor, height: int, width: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """`small` [h, w, ...] stretched to [height, width, ...] (nearest-exact), written into `out` if given:
    one pass, with no full-size temporaries."""
    rows = small.index_select(0, nearest_index(height, small.shape[0]))
    return torch.index_select(rows, 1, nearest_index(width, small.shape[1]), out=out)


def full_mask(region: CanvasRegion, width: int, height: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """The region's mask at the node's width/height, [height, width] in {0, 1}."""
    return stretch(region.mask, height, width, out)


PREVIEW_MAX_SIDE = 1024


def preview_size(width: int, height: int) -> tuple:
    """(height, width) of the preview: the canvas size, at most PREVIEW_MAX_SIDE on its long side."""
    scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox(image: torch.Tensor, height: int, width: int, fill: float = 0.35) -> torch.Tensor:
    """[h, w, 3] image fitted inside [height, width] with its own aspect kept (bilinear, antialiased), centred on
    `fill` grey: a background of another shape than the canvas is never stretched."""
    ih, iw = image.shape[0], image.shape[1]
    scale = min(height / ih, width / iw)
    fh, fw = max(1, min(height, round(ih * scale))), max(1, min(width, round(iw * scale)))
    fitted = torch.nn.functional.interpolate(image.movedim(-1, 0)[None].float(), size=(fh, fw), mode="bilinear",
                                             align_corners=False, antialias=True)[0].movedim(0, -1)
    if (fh, fw) == (height, width):
        return fitted.contiguous()
    out = torch.full((height, width, image.shape[-1]), fill)
    top, left = (height - fh) // 2, (width - fw) // 2
    out[top:top + fh, left:left + fw] = fitted
    return out


def preview(regions: list, width: int, height: int, background=None) -> torch.Tensor:
    """[1, h, w, 3] overlay (`preview_size`): regions in their colours (overlaps mix), uncovered area grey
    or the background ([h, w, 3]). Alpha compositing is linear in the base, so the overlay of all regions
    is worked out once at the masks' own 1/8 resolution (keep * base + paint) and stretched."""
    h, w = preview_size(width, height)
    if regions:
        keep = torch.ones(regions[0].mask.shape + (1,))
        paint = torch.zeros(regions[0].mask.shape + (3,))
        for r in regions:
            rgb = torch.tensor([int(r.color[j:j + 2], 16) / 255.0 for j in (1, 3, 5)])
            alpha = 0.55 * r.mask[..., None]
            keep, paint = keep * (1 - alpha), paint * (1 - alpha) + rgb * alpha
        out = torch.full((h, w, 3), 0.35) if background is None else background.float().contiguous()
        out.mul_(stretch(keep, h, w)).add_(stretch(paint, h, w))
    else:
        out = torch.full((h, w, 3), 0.35) if background is None else background.float().clone()
    return out[None].clamp_(0, 1)


def encode_rle(bits) -> str:
    """Inverse of decode_rle (used to write default drawings, e.g. in example workflows)."""
    flat = [1 if b else 0 for b in bits]
    runs, current, count = [], 0, 0
    for b in flat:
        if b == current:
            count += 1
        else:
            runs.append(count)
            current, count = b, 1
    runs.append(count)
    return ".".join(_base36(n) for n in runs)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def encode_value(width: int, height: int, regions: list) -> str:
    """Widget value for regions given as dicts with prompt, strength, color and a [mh, mw] 0/1 mask."""
    return json.dumps({
        "version": VERSION, "width": width, "height": height,
        # A name is written only when it is not the one the region's place gives, as the editor saves it.
        "regions": [{"id": f"r{i + 1}", **({"name": r["name"]} if r.get("name", f"Region {i + 1}") != f"Region {i + 1}" else {}),
                     "prompt": r["prompt"], "strength": r.get("strength", 1.0),
                     "color": r.get("color", PALETTE[i % len(PALETTE)]), "hidden": False,
                     "mask": encode_rle(r["mask"].flatten().tolist()),
                     **({"feather": r["feather"]} if r.get("feather") else {}),
                     **({"opacity": r["opacity"]} if r.get("opacity", 1.0) != 1.0 else {}),
                     **({"lora": {"name": r["lora"][0], "strength": r["lora"][1]}} if r.get("lora") else {})}
                    for i, r in enumerate(regions)],
    }, separators=(",", ":"))
