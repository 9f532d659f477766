"""Attention primitives that also return the row log-sum-exp.

Every feature of the pack is computed as a few plain (unmasked, or key-bias-only)
attention calls over parts of the key sequence whose results are merged exactly
with their log-sum-exps. That keeps all work on fused kernels. `KernelSelector`
picks, per device type / dtype / bias presence, the fastest kernel that exists in
the running torch and falls back to a chunked reference everywhere else.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import torch

log = logging.getLogger("joint_attention")

AttendFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]

# Rows of queries processed at once by the reference kernel; bounds its L x L scratch.
_REFERENCE_QUERY_CHUNK = 1024


def reference_attend(q, k, v, scale: float, key_bias: Optional[torch.Tensor] = None):
    """Dense softmax attention in fp32 math, chunked over queries. Returns (out, lse).

    q [B,H,Lq,D], k/v [B,H,Lk,D]; key_bias broadcastable to [B,H,1,Lk] (additive).
    """
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    kf = k.float().transpose(-1, -2)
    vf = v.float()
    for start in range(0, q.shape[-2], _REFERENCE_QUERY_CHUNK):
        stop = min(start + _REFERENCE_QUERY_CHUNK, q.shape[-2])
        logits = (q[..., start:stop, :].float() @ kf) * scale
        if key_bias is not None:
            logits = logits + key_bias.float()
        row_lse = torch.logsumexp(logits, dim=-1)
        probs = torch.exp(logits - row_lse.unsqueeze(-1))
        out[..., start:stop, :] = (probs @ vf).to(q.dtype)
        lse[..., start:stop] = row_lse
    return out, lse


def _cpu_flash(q, k, v, scale, key_bias=None):
    mask = None if key_bias is None else key_bias.to(q.dtype)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=mask, scale=scale
    )
    return out, lse


def _cuda_flash(q, k, v, scale, key_bias=None):
    if key_bias is not None:
        raise NotImplementedError("flash kernel takes no bias")
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
    return res[0], res[1]


def _cuda_efficient(q, k, v, scale, key_bias=None):
    bias = None
    if key_bias is not None:
        # The kernel wants a bias expanded to [B,H,Lq,Lk] with an aligned last stride;
        # an expanded view of one row costs no memory.
        lk = k.shape[-2]
        pad = (-lk) % 16
        row = torch.nn.functional.pad(key_bias.to(q.dtype).reshape(-1, lk), (0, pad))[..., :lk]
        bias = row.reshape(key_bias.shape).expand(q.shape[0], q.shape[1], q.shape[2], lk)
    res = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, True, 0.0, False, scale=scale
    )
    return res[0], res[1][..., : q.shape[-2]]


_CANDIDATES = {
    "cpu": (("cpu_flash", _cpu_flash),),
    "cuda": (("cuda_flash", _cuda_flash), ("cuda_efficient", _cuda_efficient)),
}


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5: the CUDA name


class KernelSelector:
    """Chooses and remembers, per (device type, dtype, head dim, bias), a kernel that works.

    One instance lives on each dispatcher; nothing is global. A candidate is
    accepted only after it matched the reference on a small probe.
    """

    def __init__(self, allow_fused: bool = True):
        self.allow_fused = allow_fused
        self._chosen: dict[tuple, tuple[str, AttendFn]] = {}

    def chosen(self) -> dict:
        return {key: name for key, (name, _) in self._chosen.items()}

    def attend(self, q, k, v, scale: float, key_bias: Optional[torch.Tensor] = None):
        key = (q.device.type, q.dtype, q.shape[-1], key_bias is not None)
        entry = self._chosen.get(key)
        if entry is None:
            entry = self._choose(q, key_bias is not None)
            self._chosen[key] = entry
        name, fn = entry
        try:
            return fn(q, k, v, scale, key_bias)
        except _OUT_OF_MEMORY:
            # Not a kernel failure: the host frees memory and retries (ComfyUI's OOM handling). Falling back for good
            # would put every later call on the reference kernel, which needs more memory, not less.
            raise
        except (RuntimeError, NotImplementedError) as exc:
            if fn is reference_attend:
                raise
            log.warning("[joint_attention] kernel %s failed (%s); using the reference kernel", name, exc)
            self._chosen[key] = ("reference", reference_attend)
            return reference_attend(q, k, v, scale, key_bias)

    def _choose(self, like: torch.Tensor, with_bias: bool):
        if self.allow_fused:
            for name, fn in _CANDIDATES.get(like.device.type, ()):
                if self._probe(fn, like, with_bias):
                    return name, fn
        return "reference", reference_attend

    @staticmethod
    def _probe(fn: AttendFn, like: torch.Tensor, with_bias: bool) -> bool:
        gen = torch.Generator(device="cpu").manual_seed(0)
        d = like.shape[-1]
        shape_q, shape_k = (1, 2, 33, d), (1, 2, 47, d)
        q = torch.randn(shape_q, generator=gen).to(like.device, like.dtype)
        k = torch.randn(shape_k, generator=gen).to(like.device, like.dtype)
        v = torch.randn(shape_k, generator=gen).to(like.device, like.dtype)
        bias = None
        if with_bias:
            bias = (-torch.rand(1, 1, 1, 47, generator=gen) * 3).to(like.device)
        scale = 1.0 / math.sqrt(d)
        try:
            out, lse = fn(q, k, v, scale, bias)
        except Exception:  # any failure just means "not available here"
            return False
        ref_out, ref_lse = reference_attend(q, k, v, scale, bias)
        tol = 1e-4 if like.dtype == torch.float32 else 2e-2
        return bool(
            out.shape == ref_out.shape
            and lse.shape == ref_lse.shape
            and torch.allclose(out.float(), ref_out.float(), atol=tol, rtol=tol)
            and torch.allclose(lse.float(), ref_lse, atol=tol * 10, rtol=tol)
        )


def merge_partials(outs, lses, biases, consume: bool = False):
    """Exact softmax over the union of key parts, from per-part results.

    outs[p] [B,H,Lq,D] and lses[p] [B,H,Lq] come from attention over part p alone;
    biases[p] is an additive per-query bias [Lq] (or None for 0, -inf drops the part
    for that query). Returns (out, lse) as if one softmax had run over all parts.
    """
    weights = []
    for lse, bias in zip(lses, biases):
        weights.append(lse if bias is None else lse + bias.to(lse.device, torch.float32))
    stacked = torch.stack(weights)  # [P,B,H,Lq]
    total = torch.logsumexp(stacked, dim=0)
    share = torch.exp(stacked - total.unsqueeze(0))  # [P,B,H,Lq]
    return weighted_sum(outs, share.unbind(0), consume), total


def weighted_sum(outs, weights, consume: bool):
    """sum_p outs[p] * weights[p][..., None] in fp32, accumulated in place.

    `consume`: the parts are kernel outputs nobody else reads; the first fp32 one becomes the
    result instead of a new buffer (fresh multi-MiB buffers cost page faults on every call on CPU).
    """
    out = None
    for part_out, weight in zip(outs, weights):
        w = weight.unsqueeze(-1)
        if out is None:
            fresh = consume and part_out.dtype == torch.float32
            out = part_out.mul_(w) if fresh else part_out.float() * w
        else:
            out.addcmul_(part_out, w)
    return out
