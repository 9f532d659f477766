"""Test-only reference forward of HiDream I1 with region texts, written from the model's description.

Shares nothing with the pack's row permutations: every text (the prompt, each region text) is projected on its own
(its T5 tokens, its Llama states of the last layer and of each block's layer), and every block gets the text
stream laid out text by text, `[prompt: T5, Llama last, Llama block ; region 1: ... ; ...]`, each text's T5 and
last-layer parts carried from block to block as the model carries the prompt's. Region texts' Llama states are
those the tiny conditioning draws for their tokens (`ja_tiny.llama_states`). Joint attention goes through the
reference override (ja_reference_model), which reads the blocks' `[image ; text]` calls as `[text ; image]`.

The forward calls the model's own modules in the model's own order; test_hidream checks that, without regions, it
equals the host's forward on each host.
"""
from __future__ import annotations

import torch


def _projected(dm, t5, llama):
    """A text's parts: its projected T5 tokens and its projected Llama states, one per block."""
    n_blocks = len(dm.llama_layers)
    layers = [dm.caption_projection[i](llama[:, dm.llama_layers[i]]) for i in range(n_blocks)]
    return dm.caption_projection[-1](t5), layers


def reference_forward(dm, x, t, y, context, llama, regions, info, options, text_edit=None):
    """HiDream forward with `regions` ([T, C] T5 tensors) as region texts. Sets info["n_txt"] / info["lens"] (the
    layout the reference override reads) and info["image_first"]."""
    import comfy.ldm.common_dit

    from ja_tiny import llama_states

    bs, _, h, w = x.shape
    p = dm.patch_size
    hs = comfy.ldm.common_dit.pad_to_patch_size(x, (p, p))
    timesteps = dm.expand_timesteps(t, bs, hs.device)
    adaln = dm.t_embedder(timesteps, hs.dtype) + dm.p_embedder(y)
    hs, _, img_sizes = dm.patchify(hs, dm.max_seq, None)
    rows, cols = img_sizes[0]
    img_ids = torch.zeros(rows, cols, 3, device=hs.device)
    img_ids[..., 1] = torch.arange(rows, device=hs.device)[:, None]
    img_ids[..., 2] = torch.arange(cols, device=hs.device)[None, :]
    img_ids = img_ids.reshape(1, rows * cols, 3).expand(bs, -1, -1)
    hs = dm.x_embedder(hs)
    n_img = hs.shape[1]

    texts = [(context, llama)]
    for r in regions:
        own = llama_states(r[None], llama.shape[1]).to(llama)
        texts.append((r[None].to(context).expand(bs, -1, -1), own.expand(bs, -1, -1, -1)))
    parts = [_projected(dm, t5, ll) for t5, ll in texts]
    carried = [torch.cat([t5, layers[-1]], dim=1) for t5, layers in parts]  # T5 and the last Llama layer
    sizes = [c.shape[1] + layers[0].shape[1] for c, (_, layers) in zip(carried, parts)]
    info["n_txt"], info["lens"], info["image_first"] = sizes[0], tuple(sizes[1:]), True
    n_ctx = sum(sizes)
    ids = torch.cat([img_ids, torch.zeros(bs, n_ctx, 3, device=img_ids.device, dtype=img_ids.dtype)], dim=1)
    rope = dm.pe_embedder(ids)

    def stream(i):
        return torch.cat([torch.cat([c, layers[i]], dim=1) for c, (_, layers) in zip(carried, parts)], dim=1)

    def carry(text):
        out, start = [], 0
        for c, size in zip(carried, sizes):
            out.append(text[:, start:start + c.shape[1]])
            start += size
        return out

    doubles = list(torch.nn.ModuleList.__iter__(dm.double_stream_blocks))
    singles = list(torch.nn.ModuleList.__iter__(dm.single_stream_blocks))
    for number, block in enumerate(doubles + singles):
        double = number < len(doubles)
        text = stream(number)
        if text_edit is not None:
            text = text_edit(number, text, n_ctx)
            if text is None:  # the block is skipped
                continue
        kind, index = ("double", number) if double else ("single", number - len(doubles))
        opts = {**options, "ja_reference_block": (kind, index)}
        if double:
            hs, text = block(image_tokens=hs, image_tokens_masks=None, text_tokens=text, adaln_input=adaln, rope=rope,
                             transformer_options=opts)
        else:
            out = block(image_tokens=torch.cat([hs, text], dim=1), image_tokens_masks=None, text_tokens=None,
                        adaln_input=adaln, rope=rope, transformer_options=opts)
            hs, text = out[:, :n_img], out[:, n_img:]
        carried = carry(text)
    out = dm.final_layer(hs, adaln)
    out = dm.unpatchify(out, img_sizes)
    return -out[:, :, :h, :w]
