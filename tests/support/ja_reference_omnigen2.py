"""Test-only reference forward of OmniGen2 with region texts, written from the issue's text.

Shares nothing with the pack's masks and rope tables: every text (the prompt, each region text) is embedded and
refined by the context-refiner layers on its own, with the positions it has as the prompt alone (p on all three
axes); the image is embedded and refined at axis-0 position `prompt length`, as without regions. The joint layers
then run over [prompt ; region texts ; image]. A region text keeps, towards the image, the positions it has as the
prompt alone: as the prompt alone, its last token sits on axis 0 just before the image, so its axis-0 positions are
`prompt length - T_r + p` here, its axis-1/2 positions p. Joint attention goes through the reference override
(ja_reference_model), which sees each layer named by this forward.

The forward calls the model's own modules in the model's own order; test_omnigen2 checks that, without regions, it
equals the host's forward on each host.
"""
from __future__ import annotations

import torch


def _rope(dm, axis0, axis1, axis2, batch):
    ids = torch.stack([axis0, axis1, axis2], dim=-1).to(torch.int32).unsqueeze(0).repeat(batch, 1, 1)
    return dm.rope_embedder.rope_embedder(ids).movedim(1, 2)


def _text_alone(dm, feats, t, dtype, options):
    """A text as the model sees it as the prompt: embedded and refined alone, with its rope table."""
    _, f = dm.time_caption_embed(t, feats, dtype)
    n = torch.arange(f.shape[1], device=f.device)
    rope = _rope(dm, n, n, n, f.shape[0])
    for layer in torch.nn.ModuleList.__iter__(dm.context_refiner):
        f = layer(f, None, rope, transformer_options=options)
    return f


def reference_forward(dm, x, timesteps, context, regions, info, options, text_edit=None):
    """OmniGen2 forward (no reference images) with `regions` ([T, C] tensors) as region texts. Sets info["n_txt"] /
    info["lens"] (the layout the reference override reads)."""
    import comfy.ldm.common_dit

    bs, _, h, w = x.shape
    p = dm.patch_size
    x = comfy.ldm.common_dit.pad_to_patch_size(x, (p, p))
    t = 1.0 - timesteps
    temb, _ = dm.time_caption_embed(t, context, x.dtype)
    n_txt = context.shape[1]
    texts = [_text_alone(dm, context, t, x.dtype, options)]
    texts += [_text_alone(dm, r[None].to(context).expand(bs, -1, -1), t, x.dtype, options) for r in regions]
    info["n_txt"] = n_txt
    info["lens"] = tuple(r.shape[0] for r in regions)

    B, C, H, W = x.shape
    rows, cols = H // p, W // p
    img = x.reshape(B, C, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1).reshape(B, rows * cols, p * p * C)
    img = dm.x_embedder(img)
    dev = x.device
    row_ids = torch.arange(rows, device=dev).repeat_interleave(cols)
    col_ids = torch.arange(cols, device=dev).repeat(rows)
    img_rope = _rope(dm, torch.full_like(row_ids, n_txt), row_ids, col_ids, B)
    for layer in torch.nn.ModuleList.__iter__(dm.noise_refiner):
        img = layer(img, None, img_rope, temb, transformer_options=options)

    text_ropes = []
    for length in (n_txt,) + info["lens"]:
        within = torch.arange(length, device=dev)
        text_ropes.append(_rope(dm, within + (n_txt - length), within, within, B))
    seq = torch.cat(texts + [img], dim=1)
    rope = torch.cat(text_ropes + [img_rope], dim=1)
    n_ctx = seq.shape[1] - img.shape[1]
    for i, layer in enumerate(torch.nn.ModuleList.__iter__(dm.layers)):
        if text_edit is not None:
            edited = text_edit(i, seq, n_ctx)
            if edited is None:  # the layer is skipped
                continue
            seq = edited
        seq = layer(seq, None, rope, temb, transformer_options={**options, "ja_reference_block": ("double", i)})
    out = dm.norm_out(seq, temb)[:, n_ctx:]
    out = out.reshape(B, rows, cols, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(B, -1, H, W)[:, :, :h, :w]
    return -out


def reference_forward_boogu(dm, x, timesteps, context, regions, info, options, text_edit=None):
    """Boogu forward (no reference images) with `regions` as region texts: OmniGen2's texts and image as above, then
    the double-stream layers over (image, texts) and OmniGen2's joint layers over [texts ; image]. Layers are numbered
    for the reference override model-wide: double-stream layers 0.., single-stream layers after them."""
    import comfy.ldm.common_dit

    bs, _, h, w = x.shape
    p = dm.patch_size
    x = comfy.ldm.common_dit.pad_to_patch_size(x, (p, p))
    t = 1.0 - timesteps
    temb, _ = dm.time_caption_embed(t, context, x.dtype)
    n_txt = context.shape[1]
    texts = [_text_alone(dm, context, t, x.dtype, options)]
    texts += [_text_alone(dm, r[None].to(context).expand(bs, -1, -1), t, x.dtype, options) for r in regions]
    info["n_txt"] = n_txt
    info["lens"] = tuple(r.shape[0] for r in regions)

    B, C, H, W = x.shape
    rows, cols = H // p, W // p
    img = x.reshape(B, C, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1).reshape(B, rows * cols, p * p * C)
    img = dm.x_embedder(img)
    dev = x.device
    row_ids = torch.arange(rows, device=dev).repeat_interleave(cols)
    col_ids = torch.arange(cols, device=dev).repeat(rows)
    img_rope = _rope(dm, torch.full_like(row_ids, n_txt), row_ids, col_ids, B)
    for layer in torch.nn.ModuleList.__iter__(dm.noise_refiner):
        img = layer(img, None, img_rope, temb, transformer_options=options)

    text_ropes = []
    for length in (n_txt,) + info["lens"]:
        within = torch.arange(length, device=dev)
        text_ropes.append(_rope(dm, within + (n_txt - length), within, within, B))
    text = torch.cat(texts, dim=1)
    rope = torch.cat(text_ropes + [img_rope], dim=1)
    n_ctx = text.shape[1]
    doubles = list(torch.nn.ModuleList.__iter__(dm.double_stream_layers))
    for i, layer in enumerate(doubles):
        if text_edit is not None:
            edited = text_edit(i, text, n_ctx)
            if edited is None:
                continue
            text = edited
        img, text = layer(img, text, rope, img_rope, temb, joint_attention_mask=None, img_attention_mask=None,
                          transformer_options={**options, "ja_reference_block": ("double", i)})
    seq = torch.cat([text, img], dim=1)
    for i, layer in enumerate(torch.nn.ModuleList.__iter__(dm.single_stream_layers)):
        if text_edit is not None:
            edited = text_edit(len(doubles) + i, seq, n_ctx)
            if edited is None:
                continue
            seq = edited
        seq = layer(seq, None, rope, temb, transformer_options={**options, "ja_reference_block": ("single", i)})
    out = dm.norm_out(seq, temb)[:, n_ctx:]
    out = out.reshape(B, rows, cols, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(B, -1, H, W)[:, :, :h, :w]
    return -out
