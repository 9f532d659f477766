"""Test-only reference forward of Z-Image / Lumina-2 (NextDiT) with region texts, written from the issue's text.

Shares nothing with the pack's placeholder rows, masks and rope-row copies: every caption (the prompt, each region
text) is embedded, padded with the model's learned pad token and refined by the caption-refiner layers on its own,
with positions 1..n, exactly as the model does for a prompt alone; the image is embedded and refined at axis-0
position `prompt length + 1` as without regions; the joint layers then run over
[prompt ; region texts ; image ; image pads]. As the prompt alone a text of padded length n sits at 1..n and the
image right after it, at n + 1; the image here sits at `prompt length + 1`, so in the joint layers each region
text is numbered to end at `prompt length` (the distance every image token has to it alone). Joint attention goes
through the reference override (ja_reference_model), which sees each layer named by this forward.

The forward calls the model's own modules in the model's own order; `test_z_image` checks that, without regions,
it equals the host's forward on each host.
"""
from __future__ import annotations

import torch


def _pad(feats, token, multiple):
    extra = (-feats.shape[1]) % multiple
    if not extra:
        return feats
    rows = token.to(device=feats.device, dtype=feats.dtype).unsqueeze(0).expand(feats.shape[0], extra, -1)
    return torch.cat([feats, rows], dim=1)


def _caption_alone(dm, feats, multiple, options):
    """A caption as the model sees it as the prompt: embedded, padded, refined alone; with its rope table."""
    f = dm.cap_embedder(feats)
    if multiple > 1:
        f = _pad(f, dm.cap_pad_token, multiple)
    rope = _text_rope(dm, f, first=1)
    for layer in torch.nn.ModuleList.__iter__(dm.context_refiner):
        f = layer(f, None, rope, transformer_options=options)
    return f, rope


def _text_rope(dm, feats, first):
    """Rope rows of a caption numbered first, first + 1, ... on axis 0 (the other axes 0, as the model numbers
    text)."""
    ids = torch.zeros(feats.shape[0], feats.shape[1], 3, dtype=torch.float32, device=feats.device)
    ids[:, :, 0] = torch.arange(feats.shape[1], dtype=torch.float32, device=feats.device) + first
    return dm.rope_embedder(ids).movedim(1, 2)


def reference_forward(dm, x, timesteps, context, regions, info, options, text_edit=None):
    """NextDiT forward with `regions` ([T, C] tensors) as region texts. Sets info["n_txt"] / info["lens"] to the
    padded lengths (the layout the reference override reads)."""
    import comfy.ldm.common_dit

    bs, _, h, w = x.shape
    multiple = getattr(dm, "pad_tokens_multiple", None) or 1
    x = comfy.ldm.common_dit.pad_to_patch_size(x, (dm.patch_size, dm.patch_size))
    t = dm.t_embedder((1.0 - timesteps) * dm.time_scale, dtype=x.dtype)
    base, base_rope = _caption_alone(dm, context, multiple, options)
    parts = [_caption_alone(dm, r[None].to(context).expand(bs, -1, -1), multiple, options) for r in regions]
    info["n_txt"] = base.shape[1]
    info["lens"] = tuple(p[0].shape[1] for p in parts)

    p = dm.patch_size
    B, C, H, W = x.shape
    img = dm.x_embedder(x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).flatten(3).flatten(1, 2))
    ids = torch.zeros(B, img.shape[1], 3, dtype=torch.float32, device=x.device)
    ids[:, :, 0] = base.shape[1] + 1
    ids[:, :, 1] = torch.arange(H // p, dtype=torch.float32, device=x.device).view(-1, 1).repeat(1, W // p).flatten()
    ids[:, :, 2] = torch.arange(W // p, dtype=torch.float32, device=x.device).view(1, -1).repeat(H // p, 1).flatten()
    if multiple > 1:
        n = img.shape[1]
        img = _pad(img, dm.x_pad_token, multiple)
        ids = torch.nn.functional.pad(ids, (0, 0, 0, img.shape[1] - n))
    img_rope = dm.rope_embedder(ids).movedim(1, 2)
    for layer in torch.nn.ModuleList.__iter__(dm.noise_refiner):
        img = layer(img, None, img_rope, t, transformer_options=options)

    seq = torch.cat([base] + [f for f, _ in parts] + [img], dim=1)
    ends_at_prompt = [_text_rope(dm, f, first=base.shape[1] + 1 - f.shape[1]) for f, _ in parts]
    rope = torch.cat([base_rope] + ends_at_prompt + [img_rope], dim=1)
    n_ctx = seq.shape[1] - img.shape[1]
    for i, layer in enumerate(torch.nn.ModuleList.__iter__(dm.layers)):
        if text_edit is not None:
            edited = text_edit(i, seq, n_ctx)
            if edited is None:  # the layer is skipped
                continue
            seq = edited
        seq = layer(seq, None, rope, t, transformer_options={**options, "ja_reference_block": ("double", i)})
    out = dm.final_layer(seq, t)
    out = dm.unpatchify(out, [(H, W)] * bs, [n_ctx] * bs, return_tensor=True)[:, :, :h, :w]
    return -out
