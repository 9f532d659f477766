"""A FLUX-style transformer stack at real dims with random weights, for whole-step timings (`make gpu-check`).

Pure torch, no ComfyUI: double blocks (separate text and image weights, one joint attention) and single
blocks (one joint stream), with FLUX.1's sizes (hidden 3072, 24 heads x 128, MLP x4) unless told otherwise.
Modulation, RoPE and the final layer are left out: they cost the same with and without every feature, so
they would only dilute the ratios this stack measures. Attention is a callable `attend(q, k, v) -> [B,H,L,D]`,
so one stack is timed with plain attention and with each feature of the pack.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Stream(nn.Module):
    """One stream's weights in a double block: qkv, q/k RMS norms, output projection, MLP."""

    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, int(hidden * mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(hidden * mlp_ratio), hidden))

    def qkv_heads(self, x):
        b, length, hidden = x.shape
        q, k, v = self.qkv(F.layer_norm(x, (hidden,))).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return F.rms_norm(q, q.shape[-1:]), F.rms_norm(k, k.shape[-1:]), v

    def finish(self, x, attn):
        x = x + self.proj(attn)
        return x + self.mlp(F.layer_norm(x, x.shape[-1:]))


def _merge_heads(out):
    b, h, length, d = out.shape
    return out.transpose(1, 2).reshape(b, length, h * d)


class DoubleBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio=4.0):
        super().__init__()
        self.txt, self.img = _Stream(hidden, heads, mlp_ratio), _Stream(hidden, heads, mlp_ratio)

    def forward(self, img, txt, attend):
        tq, tk, tv = self.txt.qkv_heads(txt)
        iq, ik, iv = self.img.qkv_heads(img)
        out = _merge_heads(attend(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2)))
        n = txt.shape[1]
        return self.img.finish(img, out[:, n:]), self.txt.finish(txt, out[:, :n])


class SingleBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio=4.0):
        super().__init__()
        self.heads, self.hidden, self.mlp_hidden = heads, hidden, int(hidden * mlp_ratio)
        self.linear1 = nn.Linear(hidden, 3 * hidden + self.mlp_hidden)
        self.linear2 = nn.Linear(hidden + self.mlp_hidden, hidden)

    def forward(self, x, attend):
        b, length, _ = x.shape
        qkv, mlp = self.linear1(F.layer_norm(x, (self.hidden,))).split([3 * self.hidden, self.mlp_hidden], dim=-1)
        q, k, v = qkv.view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = _merge_heads(attend(F.rms_norm(q, q.shape[-1:]), F.rms_norm(k, k.shape[-1:]), v))
        return x + self.linear2(torch.cat([attn, F.gelu(mlp, approximate="tanh")], dim=-1))


class Stack(nn.Module):
    """`n_double` double blocks then `n_single` single blocks over [txt ; img]."""

    def __init__(self, hidden=3072, heads=24, n_double=2, n_single=4, mlp_ratio=4.0):
        super().__init__()
        self.double_blocks = nn.ModuleList(DoubleBlock(hidden, heads, mlp_ratio) for _ in range(n_double))
        self.single_blocks = nn.ModuleList(SingleBlock(hidden, heads, mlp_ratio) for _ in range(n_single))

    @torch.no_grad()
    def forward(self, img, txt, attend, edit_text=None):
        """`edit_text(tensor, n_text, block number)`: a feature's edit of the text before a block (text scale)."""
        number = 0
        for block in self.double_blocks:
            if edit_text is not None:
                txt = edit_text(txt, txt.shape[1], number)
            img, txt = block(img, txt, attend)
            number += 1
        n = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        for block in self.single_blocks:
            if edit_text is not None:
                x = edit_text(x, n, number)
            x = block(x, attend)
            number += 1
        return x[:, n:]
