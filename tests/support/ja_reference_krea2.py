"""Test-only reference forward of Krea 2 (`comfy.ldm.krea2.model.SingleStreamDiT`) with region texts, written from the
model's code and the issue's text.

Shares nothing with the pack's wrapped block list and text adapter: every text (the prompt, each region text) goes
through the model's text adapter (`txtfusion`, whose refiner attends across a text's tokens) and text MLP on its own,
exactly as the model does for a prompt alone; the blocks then run over [prompt ; region texts ; image ; reference
images], text positions all zero as the model numbers them, image and reference positions as the model makes them.
Each block is named for the reference override (ja_reference_model) through `transformer_options`, and `text_edit`
may edit the stream's text rows before a block (or skip it).

The forward calls the model's own modules in the model's own order; `test_krea2` checks that, without regions, it
equals the host's forward on each host that has the model.
"""
from __future__ import annotations

import torch


def _patches(dm, x, index):
    """Patchified latent [B, h*w, C*p*p] and its rope ids (index, row, col), as the model lays a latent out."""
    import comfy.ldm.common_dit

    p = dm.patch
    x = comfy.ldm.common_dit.pad_to_patch_size(x, (p, p))
    b, c, hh, ww = x.shape
    h, w = hh // p, ww // p
    tokens = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p)
    ids = torch.zeros(b, h, w, 3, dtype=torch.float32, device=x.device)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(h, dtype=torch.float32, device=x.device)[:, None]
    ids[..., 2] = torch.arange(w, dtype=torch.float32, device=x.device)[None, :]
    return tokens, ids.reshape(b, h * w, 3), h, w


def _text_alone(dm, feats, options):
    """A text's stream rows as the model makes them for the prompt: its stacked encoder layers, fused and refined
    alone, then the text MLP."""
    b, n, _ = feats.shape
    stacked = feats.reshape(b, n, dm.txtlayers, dm.txtdim)
    return dm.txtmlp(dm.txtfusion(stacked, mask=None, transformer_options=options))


def reference_forward(dm, x, timesteps, context, regions, info, options, ref_latents=None, ref_method=None,
                      text_edit=None):
    """Krea 2's forward with `regions` ([T, C] tensors) as region texts; sets info["lens"] (the layout the reference
    override reads)."""
    frames = x.ndim == 5
    if frames:
        b5, c5, t5, h5, w5 = x.shape
        x = x.reshape(b5 * t5, c5, h5, w5)
    bs, _, h_orig, w_orig = x.shape
    img, img_ids, h, w = _patches(dm, x, 0)
    n_img = img.shape[1]
    zero_from = None
    if ref_method is not None and ref_latents:
        for index, ref in enumerate(ref_latents, 1):
            if ref.ndim == 5:
                ref = ref.reshape(ref.shape[0] * ref.shape[2], ref.shape[1], ref.shape[3], ref.shape[4])
            ref = ref.repeat(bs // ref.shape[0], 1, 1, 1) if ref.shape[0] != bs else ref
            tokens, ids, _, _ = _patches(dm, ref, index)
            img, img_ids = torch.cat([img, tokens], dim=1), torch.cat([img_ids, ids], dim=1)
        if ref_method == "index_timestep_zero":
            zero_from = n_img
    img = dm.first(img)

    import comfy.ldm.flux.layers

    def embed_t(steps):
        return dm.tmlp(comfy.ldm.flux.layers.timestep_embedding(steps, dm.tdim).unsqueeze(1).to(img.dtype))

    t = embed_t(timesteps)
    vec = dm.tproj(t)
    if zero_from is not None:
        vec = torch.cat([vec, dm.tproj(embed_t(torch.zeros_like(timesteps)))], dim=0)

    texts = [_text_alone(dm, context, options)]
    texts += [_text_alone(dm, r[None].to(context).expand(bs, -1, -1), options) for r in regions]
    info["lens"] = tuple(r.shape[1] for r in texts[1:])
    txt = torch.cat(texts, dim=1)
    n_ctx = txt.shape[1]
    seq = torch.cat([txt, img], dim=1)
    ids = torch.cat([torch.zeros(bs, n_ctx, 3, dtype=torch.float32, device=seq.device), img_ids], dim=1)
    freqs = dm.pe_embedder(ids)
    for i, block in enumerate(torch.nn.ModuleList.__iter__(dm.blocks)):
        if text_edit is not None:
            edited = text_edit(i, seq, n_ctx)
            if edited is None:  # the block is skipped
                continue
            seq = edited
        named = {**options, "ja_reference_block": ("double", i)}
        seq = block(seq, vec, freqs, None, timestep_zero_index=None if zero_from is None else zero_from + n_ctx,
                    transformer_options=named)
    out = dm.last(seq, t)[:, n_ctx:n_ctx + n_img]
    p, c = dm.patch, dm.channels
    out = out.reshape(bs, h, w, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(bs, c, h * p, w * p)[:, :, :h_orig, :w_orig]
    if frames:
        out = out.reshape(b5, t5, c, h_orig, w_orig).movedim(1, 2)
    return out
