"""Conditioning as the model sees it, through the sampler's own conditioning path."""
from __future__ import annotations

import torch


def model_text(model_patcher, tokens: torch.Tensor, options: dict) -> torch.Tensor:
    """`tokens` [T, C] as the model sees a prompt with these tokens: run through the sampler's own
    conditioning path (`encode_model_conds` -> the model's `extra_conds`), which e.g. left-pads FLUX.2
    text to 512 tokens. Returns `tokens` itself when the model leaves text unchanged."""
    import comfy.sampler_helpers
    import comfy.samplers

    base = model_patcher.model
    channels = getattr(base.latent_format, "latent_channels", 4)
    # A latent of the model's own kind (video models: a frame axis), as its concat inputs (I2V) are built from it.
    frames = (1,) if getattr(base.latent_format, "latent_dimensions", 2) == 3 else ()
    noise = torch.zeros(1, channels, *frames, 8, 8)
    conds = comfy.sampler_helpers.convert_cond([[tokens[None], dict(options)]])
    conds = comfy.samplers.encode_model_conds(base.extra_conds, conds, noise, torch.device("cpu"), "positive",
                                              latent_image=noise)
    seen = conds[0]["model_conds"].get("c_crossattn")
    seen = getattr(seen, "cond", None)
    if not torch.is_tensor(seen) or seen.ndim != 3 or seen.shape[-1] != tokens.shape[-1]:
        return tokens
    seen = seen[0].to(tokens.dtype)
    return tokens if seen.shape == tokens.shape and torch.equal(seen, tokens) else seen
