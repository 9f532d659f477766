"""Shared helpers for the node classes: validation with messages that name the node."""
from __future__ import annotations

import math

from comfy_api.latest import io

from ..attention.blocks import BlockSelectionError, parse_blocks
from ..attention.gate import Gate
from ..families import FAMILIES, Family, UnsupportedModel, block_counts, model_family

CATEGORY = "joint_attention"
MODEL_TOOLTIP = "A model of a supported family: " + "; ".join(f.models for f in FAMILIES) + "."


# The name users see on each node, by node id: the schemas' display names, and how every error names its node.
DISPLAY_NAMES = {
    "JointAttentionRegion": "Region (mask + prompt)",
    "JointAttentionRegionalApply": "Apply Regional Attention",
    "JointAttentionRegionCanvas": "Region Canvas",
    "JointAttentionTACA": "TACA (text attention temperature)",
    "JointAttentionTextScale": "Text Scale per Block",
    "JointAttentionCapture": "Attention Capture",
    "JointAttentionMaps": "Attention Maps",
    "JointAttentionMemory": "Joint Attention Memory",
    "JointAttentionRegionLoRA": "Region LoRA",
}


def node_error(node: str, input_name: str, message: str) -> ValueError:
    """The error for a node's input, naming the node as users see it: `[Attention Maps] input 'image': ...`."""
    return ValueError(f"[{DISPLAY_NAMES.get(node, node)}] input '{input_name}': {message}")


def finite(node: str, input_name: str, value, lo: float, hi: float) -> float:
    """A float widget value checked in-process: ComfyUI's own range check lets NaN through
    (`nan < min` is false) and API prompts can send bare NaN or Infinity."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise node_error(node, input_name, f"{value!r} is not a number; use a value from {lo} to {hi}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise node_error(node, input_name, f"{value!r} is outside {lo}..{hi}; use a finite value in that range")
    return number


def choice(node: str, input_name: str, value, options) -> str:
    """A combo value checked in-process: ComfyUI 0.3.75 does not check V3 combo values of API prompts."""
    if value not in options:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise node_error(node, input_name, f"{shown} is not one of {', '.join(options)}; choose one of them")
    return value


def rgb_image(node: str, input_name: str, image):
    """The first image of an IMAGE batch as [H, W, 3] floats: RGBA loses its alpha, one channel becomes grey
    (core's image nodes output 3 channels, but loaders and other packs also give 1 or 4)."""
    shape = tuple(getattr(image, "shape", ()))
    if not hasattr(image, "ndim") or image.ndim != 4 or 0 in shape:
        raise node_error(node, input_name, f"expected an IMAGE [batch, height, width, channels], got shape {shape}; "
                         "connect an image (e.g. Load Image or VAE Decode)")
    channels = shape[-1]
    if channels not in (1, 3, 4):
        raise node_error(node, input_name, f"has {channels} channels; images with 1 (grey), 3 (RGB) or 4 (RGBA, the "
                         "alpha is ignored) channels are accepted")
    first = image[0, ..., :3].float()
    return first.expand(-1, -1, 3) if channels == 1 else first


def supported_family(node: str, model) -> Family:
    """The model's family, or the error naming the node's `model` input and what the pack supports."""
    try:
        return model_family(model)
    except UnsupportedModel as exc:
        raise node_error(node, "model", str(exc)) from None


def selections(node: str, model, double_text: str, single_text: str):
    """Parse per-kind block selections against the connected model."""
    n_double, n_single = block_counts(model)
    try:
        double = parse_blocks(double_text, n_double, "double_blocks")
    except BlockSelectionError as exc:
        raise node_error(node, "double_blocks", str(exc)) from None
    try:
        single = parse_blocks(single_text, n_single, "single_blocks") if n_single else frozenset()
    except BlockSelectionError as exc:
        raise node_error(node, "single_blocks", str(exc)) from None
    if not n_single and (single_text or "").strip().lower() not in ("", "all", "none", "odd", "even"):
        raise node_error(node, "single_blocks", "this model has no single blocks (SD3 and Qwen-Image use double_blocks for all their blocks); set it to none")
    return double, single


def sigma_window(node: str, model, start_percent: float, end_percent: float):
    start_percent = finite(node, "start_percent", start_percent, 0.0, 1.0)
    end_percent = finite(node, "end_percent", end_percent, 0.0, 1.0)
    if end_percent < start_percent:
        raise node_error(node, "end_percent", f"must not be below start_percent ({end_percent} < {start_percent})")
    sampling = model.get_model_object("model_sampling")
    return float(sampling.percent_to_sigma(start_percent)), float(sampling.percent_to_sigma(end_percent))


def gate(node: str, model, double_text: str, single_text: str, start_percent: float = 0.0,
         end_percent: float = 1.0) -> Gate:
    """The feature's gate from the node's block selections and schedule window."""
    double, single = selections(node, model, double_text, single_text)
    sigma_high, sigma_low = sigma_window(node, model, start_percent, end_percent)
    return Gate(double, single, sigma_high, sigma_low)


def block_range_inputs(more: str = "") -> list:
    """The double_blocks / single_blocks inputs; `more` ends both tooltips (what the choice means for the node)."""
    return [
        io.String.Input("double_blocks", default="all", tooltip="Double (FLUX), joint (SD3), transformer (Qwen-Image, "
                        "0-59) or joint-layer (Z-Image, 0-29) blocks: all, none, odd, even, or numbers and ranges like "
                        "0-9,12." + more),
        io.String.Input("single_blocks", default="all", tooltip="FLUX single blocks, numbered from 0 within the single "
                        "blocks: all, none, odd, even, or ranges. Ignored by SD3, Qwen-Image and Z-Image (set none or "
                        "all)." + more),
    ]


def percent_input(name: str, default: float, tooltip: str):
    return io.Float.Input(name, default=default, min=0.0, max=1.0, step=0.01, tooltip=tooltip)
