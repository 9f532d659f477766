"""Naive references: dense softmax with the explicit [L, L] bias, written from the issues' text.

Deliberately simple and slow; the pack's fast paths must match these.
"""
from __future__ import annotations

import math

import torch

NEG = float("-inf")


def dense_bias(layout, masks=None, strengths=None, image_attention="restricted", global_prompt="background",
               isolate_regions=False):
    """Additive [L, L] bias (rows = queries) of the regional semantics, built cell by cell."""
    L = layout.total
    bias = torch.zeros(L, L, dtype=torch.float64)
    n = len(layout.region_lens)
    if n == 0:
        return bias
    T0 = range(layout.txt.start, layout.txt.stop)
    I = range(layout.img.start, layout.img.stop)
    Fr = range(layout.ref.start, layout.ref.stop)
    R = [range(layout.region(r).start, layout.region(r).stop) for r in range(n)]
    all_regions = [t for rr in R for t in rr]
    if isolate_regions or masks is None:
        if isolate_regions:  # region texts: invisible to every other token, each sees only itself
            for t in all_regions:
                bias[t, :] = NEG
                bias[:, t] = NEG
                bias[t, t] = 0.0
        return bias
    m = masks.double()
    bias[:] = NEG
    for r in range(n):
        for a in R[r]:
            for b in R[r]:
                bias[a, b] = 0.0
            for i_pos, i in enumerate(I):
                bias[a, i] = math.log(m[r, i_pos]) if m[r, i_pos] > 0 else NEG
    for a in list(T0) + list(Fr):
        for b in list(T0) + list(I) + list(Fr):
            bias[a, b] = 0.0
    covered = (m > 0).any(0)
    for i_pos, i in enumerate(I):
        for r in range(n):
            v = strengths[r] * m[r, i_pos]
            for t in R[r]:
                bias[i, t] = math.log(v) if v > 0 else NEG
        if global_prompt == "everywhere":
            t0 = 0.0
        else:
            mx = float(m[:, i_pos].max())
            t0 = math.log(1 - mx) if mx < 1 else NEG
        for t in T0:
            bias[i, t] = t0
        for j_pos, j in enumerate(I):
            if image_attention == "open":
                ok = True
            else:
                share = bool(((m[:, i_pos] > 0) & (m[:, j_pos] > 0)).any())
                ok = share or (not covered[i_pos] and not covered[j_pos])
            bias[i, j] = 0.0 if ok else NEG
        for f in Fr:
            bias[i, f] = 0.0
    return bias


def dense_attention(q, k, v, bias, scale, text_gamma=1.0, layout=None, base_ratio=0.0):
    """softmax(gamma-scaled logits + bias) @ v in float64; q/k/v [B,H,L,D].

    text_gamma multiplies image-query x text-key logits (TACA). With base_ratio, image
    rows are blended with unbiased attention over [T0 ; I ; F].
    """
    qd, kd, vd = q.double(), k.double(), v.double()
    logits = (qd @ kd.transpose(-1, -2)) * scale
    if text_gamma != 1.0:
        logits[..., layout.img, : layout.n_context] *= text_gamma
    probs = torch.softmax(logits + bias, dim=-1)
    out = probs @ vd
    if base_ratio > 0.0:  # probs become the effective weights: image rows blend the base softmax in
        keep = torch.zeros(layout.total, dtype=torch.bool)
        keep[layout.txt] = True
        keep[layout.visual] = True
        base_bias = torch.zeros(logits.shape[-2], layout.total, dtype=torch.float64)  # rows: the queries
        base_bias[:, ~keep] = NEG
        base_probs = torch.softmax(logits + base_bias, dim=-1)
        base = base_probs @ vd
        out[..., layout.img, :] = (1 - base_ratio) * out[..., layout.img, :] + base_ratio * base[..., layout.img, :]
        probs = probs.clone()
        probs[..., layout.img, :] = (1 - base_ratio) * probs[..., layout.img, :] + base_ratio * base_probs[..., layout.img, :]
    return out, probs
