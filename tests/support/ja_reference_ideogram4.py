"""Test-only reference forward of Ideogram 4 (`comfy.ldm.ideogram4.model.Ideogram4Transformer2DModel`) with region
texts, written from the model's code and the issue's text.

Shares nothing with the pack's wrapped layers and rope rows: every text (the prompt, each region text) is normalised
and projected by the model's own text layers and numbered 0, 1, ... on all three rope axes, as the model numbers a
prompt alone; the image takes the model's image positions (offset 65536). The rope table is built here from those
positions with the host's own `precompute_freqs_cis`. Each layer is named for the reference override
(ja_reference_model) through `transformer_options`, and `text_edit` may edit the stream's text rows before a layer
(or skip it). `test_ideogram4` checks that, without regions, it equals the host's forward.
"""
from __future__ import annotations

import torch


def _rope(dm, positions):
    """The layers' rope table for positions [L, 3], as the model builds it."""
    from comfy.ldm.ideogram4.model import _split_half_rope_matrix
    from comfy.text_encoders.llama import precompute_freqs_cis

    freqs = precompute_freqs_cis(dm.head_dim, positions.transpose(0, 1), dm.rope_theta, rope_dims=dm.mrope_section,
                                 interleaved_mrope=True, device=positions.device)
    return _split_half_rope_matrix(freqs)


def reference_forward(dm, x, timesteps, context, regions, info, options, text_edit=None):
    """Ideogram 4's conditional forward with `regions` ([T, C] tensors) as region texts; sets info["lens"] and
    info["grid"] (the layout the reference override reads)."""
    import torch.nn.functional as F

    bs, _, gh, gw = x.shape
    info["grid"] = (gh, gw)
    t = 1.0 - timesteps
    texts = [context] + [r[None].to(context).expand(bs, -1, -1) for r in regions]
    info["lens"] = tuple(r.shape[1] for r in texts[1:])
    img = dm._img_to_tokens(x)
    h_img = dm.input_proj(img) + dm.embed_image_indicator(torch.ones(bs, img.shape[1], dtype=torch.long,
                                                                      device=x.device), out_dtype=img.dtype)
    parts, positions = [], []
    for text in texts:
        feats = dm.llm_cond_proj(dm.llm_cond_norm(text))
        zero = torch.zeros(bs, text.shape[1], dtype=torch.long, device=x.device)
        # Text rows: the model zeroes the latent's projection there and adds the text features.
        parts.append(feats + dm.embed_image_indicator(zero, out_dtype=feats.dtype))
        positions.append(torch.arange(text.shape[1], device=x.device).view(-1, 1).expand(-1, 3))
    h = torch.cat(parts + [h_img], dim=1)
    n_ctx = h.shape[1] - img.shape[1]
    positions.append(dm._image_position_ids(gh, gw, x.device))
    freqs = _rope(dm, torch.cat(positions, dim=0))
    t_cond = dm.t_embedding(t, dtype=img.dtype)
    if t.dim() == 1:
        t_cond = t_cond.unsqueeze(1)
    adaln = F.silu(dm.adaln_proj(t_cond))
    for i, layer in enumerate(torch.nn.ModuleList.__iter__(dm.layers)):
        if text_edit is not None:
            edited = text_edit(i, h, n_ctx)
            if edited is None:
                continue
            h = edited
        h = layer(h, None, freqs, adaln, transformer_options={**options, "ja_reference_block": ("double", i)})
    out = dm.final_layer(h, adaln)
    return -dm._tokens_to_img(out[:, n_ctx:], gh, gw)
