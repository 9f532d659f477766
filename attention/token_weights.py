"""How much of a region's adapter (a region LoRA) each token of a forward gets.

A region's weight over the joint sequence `[T0 ; T1..Tn ; I ; F]` (layout.py): on image tokens its token-mask value
times its strength (the weight the region has on them in attention, regional.py), on its own text tokens 1, on every
other token (the prompt, other regions' texts, reference tokens) 0. A layer of the model sees one part of that
sequence, by its role: the image stream (image and reference tokens), the text stream (prompt and region texts), or
the joint sequence, text first or image first. `stream_weights` cuts a region's weights to what a layer sees.
"""
from __future__ import annotations

import torch

from .layout import TokenLayout

# What a layer's tokens are (Family.adapter_role). SHARED: one output for every token of a stream (modulation from
# the timestep / pooled vector, layers outside the blocks); a per-token weight cannot apply there.
IMAGE, TEXT, JOINT, JOINT_IMAGE_FIRST, SHARED = "image", "text", "joint", "joint_image_first", "shared"
ROLES = (IMAGE, TEXT, JOINT, JOINT_IMAGE_FIRST)


class StreamMismatch(ValueError):
    """A layer saw a number of tokens its role does not explain."""


def region_weights(layout: TokenLayout, region: int, image_weight: torch.Tensor) -> torch.Tensor:
    """[total] weights of region `region` over the layout's joint sequence.

    `image_weight` [n_img]: the region's token-mask value times its strength. Region texts absent from the layout
    (a forward outside regional prompting's window carries none) leave the text weights 0."""
    if image_weight.shape != (layout.n_img,):
        raise ValueError(f"image_weight has shape {tuple(image_weight.shape)}, the layout has {layout.n_img} image "
                         "tokens")
    weights = torch.zeros(layout.total, dtype=image_weight.dtype, device=image_weight.device)
    if region < len(layout.region_lens):
        weights[layout.region(region)] = 1.0
    weights[layout.img] = image_weight
    return weights


def stream_layout(layout_for, n_context: int, n_img: int, role: str, length: int) -> TokenLayout:
    """The layout of the joint sequence a layer of `role` seeing `length` tokens belongs to (reference tokens make
    the image stream longer than the image). `layout_for(total)` gives the forward's layout for a total length."""
    if role == TEXT:
        total = n_context + n_img if length == n_context else -1
    elif role == IMAGE:
        total = n_context + length if length >= n_img else -1
    elif role in (JOINT, JOINT_IMAGE_FIRST):
        total = length if length >= n_context + n_img else -1
    else:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    layout = layout_for(total) if total >= 0 else None
    if layout is None:
        raise StreamMismatch(f"a layer of role {role!r} saw {length} tokens; this forward has {n_context} text and "
                             f"{n_img} image tokens")
    return layout


def stream_weights(weights: torch.Tensor, layout: TokenLayout, role: str) -> torch.Tensor:
    """`weights` [..., total] (`region_weights`, rows stacked) cut to the tokens a layer of `role` sees, in the
    order it sees them."""
    if role == TEXT:
        return weights[..., : layout.n_context]
    if role == IMAGE:
        return weights[..., layout.visual]
    if role == JOINT:
        return weights
    if role == JOINT_IMAGE_FIRST:
        return torch.cat([weights[..., layout.visual], weights[..., : layout.n_context]], dim=-1)
    raise ValueError(f"role {role!r} is not one of {ROLES}")
