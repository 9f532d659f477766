"""Joint attention with the pack's modifiers, computed on fused kernels.

The sequence is split into query groups (rows that share their visible keys) and
key parts (keys that share a logit multiplier and a per-query bias). Each part is
one plain attention call; parts are merged exactly through their log-sum-exps
(`kernels.merge_partials`). No L x L mask or bias is ever built.

This executor knows no feature. A call's `CallSpec` holds what features contributed, in generic
terms: a `Structure` (who sees whom, with which biases: the regional plan), `LogitModifier`s
(per query group and key part functions: TACA's temperature) and `Observer`s (receivers of the
exact text probabilities: capture). The executor composes them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Optional, Protocol, Union

import torch

from .kernels import KernelSelector, merge_partials, weighted_sum
from .layout import TokenLayout

Index = Union[slice, torch.Tensor]


class _Excluded:
    """Marker: a key part that a query group must not see in the main softmax."""

    def __repr__(self) -> str:
        return "EXCLUDED"


EXCLUDED = _Excluded()


class Structure(Protocol):
    """Who sees whom, as a feature describes it (the regional plan, `regional.RegionalPlan`): its query groups for a
    layout, and a place where the executor keeps them prepared (`grew` tells the owner they take more memory)."""

    planned: dict
    lock: "threading.RLock"  # held while `planned` grows (threads share a cached structure)

    def groups(self, layout: TokenLayout, device) -> list: ...

    def grew(self) -> None: ...


class LogitModifier(Protocol):
    """A feature's effect on the logits of a call, as a function of one query group and one of its key parts
    (in the spirit of attention-gym's `score_mod`, at the granularity the executor computes in).

    Frozen and compared by value (a dataclass with `frozen=True`): the executor keys the query groups it
    prepares by the modifiers themselves, so two modifiers that are equal must be the same function.
    `logit_scale` multiplies the part's logits q.k * scale for the group's rows; the executor multiplies
    the factors of every modifier of the call."""

    def logit_scale(self, group: "QueryGroup", part: "KeyPart") -> float: ...


class Observer(Protocol):
    """Receives what a call computed: told of every call (`begin`), then given the exact softmax weights of image
    rows on text keys (`record`). Compared by value: rows of one call share a spec only when equal."""

    def begin(self, layout: TokenLayout, rows: int, device=None) -> None: ...

    def record(self, image_rows, first_column: int, probs: torch.Tensor) -> None: ...


@dataclass
class CallSpec:
    """What applies to one set of batch rows in one attention call, as the modifiers of the dispatcher set it
    (`Modifier.contribute`). Compared by value: rows with equal specs run as one call.

    `texts_unread`: the layout's appended texts (region texts) are read by nothing: invisible to every other
    token, each sees only itself (uncond rows, or rows regional prompting does not touch). Models output image
    tokens only, so the cheapest well-defined attention is used there: output = v.
    `structure`: who sees whom (`Structure`, the regional plan), or None for the plain structure, in which
    every token sees every key (but unread appended texts).
    `modifiers`: `LogitModifier`s composed over the structure's query groups and key parts.
    `observers`: `Observer`s of the call's exact text probabilities.
    """

    texts_unread: bool = True
    structure: Optional[Structure] = None
    modifiers: tuple = ()
    observers: tuple = ()

    def is_plain(self, layout: TokenLayout) -> bool:
        return not layout.region_lens and self.structure is None and not self.modifiers and not self.observers


@dataclass(eq=False)
class KeyPart:
    index: Index
    logit_scale: float = 1.0
    main_bias: object = None  # None (0), Tensor [nq], or EXCLUDED
    in_base: bool = False
    key_bias: Optional[torch.Tensor] = None  # [nk] additive, finite
    # When the part's keys are text (base or appended texts): the position of its first key in the text
    # stream. Marks text keys for logit modifiers, and is the observers' column of that key.
    text_offset: Optional[int] = None


@dataclass
class QueryGroup:
    index: Index
    parts: list = field(default_factory=list)
    base_ratio: float = 0.0
    image_rows: Optional[Index] = None  # when the rows are image tokens: their positions within the image
    self_only: bool = False  # each row sees only its own key: output = v (isolated region texts)
    # Kernel calls worked out on first use, per device (`_recipe`); not part of the group's identity.
    prepared: dict = field(default_factory=dict, compare=False, repr=False)

    def tensors(self) -> list:
        """The index and bias tensors the group holds: its parts and its prepared calls."""
        items = [self.index] + [x for p in self.parts for x in (p.index, p.key_bias, p.main_bias)]
        items += [t for recipe in self.prepared.values() for t in recipe.tensors()]
        return [t for t in items if isinstance(t, torch.Tensor)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


def take(x: torch.Tensor, index: Index, dim: int = 2) -> torch.Tensor:
    if isinstance(index, slice):
        return x.narrow(dim, index.start, index.stop - index.start)
    return x.index_select(dim, index)


def index_len(index: Index) -> int:
    return index.stop - index.start if isinstance(index, slice) else int(index.numel())


def cat_index(pieces, device) -> Index:
    """Join slices / index tensors; stays a slice when the pieces are contiguous."""
    pieces = [p for p in pieces if index_len(p) > 0]
    if all(isinstance(p, slice) for p in pieces):
        merged = []
        for p in pieces:
            if merged and merged[-1].stop == p.start:
                merged[-1] = slice(merged[-1].start, p.stop)
            else:
                merged.append(p)
        if len(merged) == 1:
            return merged[0]
        if not merged:
            return slice(0, 0)
    tensors = [
        torch.arange(p.start, p.stop, device=device) if isinstance(p, slice) else p.to(device)
        for p in pieces
    ]
    return torch.cat(tensors) if tensors else torch.empty(0, dtype=torch.long, device=device)


def plan_groups(layout: TokenLayout, spec: CallSpec, device) -> list:
    """The query groups of one call: the structure (the spec's, or the plain one), then the logit modifiers
    composed over its parts. A structure keeps the result per layout, modifiers and device, so its groups'
    prepared kernel calls serve every block and step."""
    structure = spec.structure
    if structure is None:
        return with_modifiers(_plain_groups(layout, spec, device), spec.modifiers)
    key = (layout, spec.modifiers, str(device))  # the modifiers are the functions themselves (frozen, by value)
    groups = structure.planned.get(key)
    if groups is not None:
        return groups
    with structure.lock:  # threads sharing the structure: one builds, the others wait and take its groups
        groups = structure.planned.get(key)
        if groups is not None:
            return groups
        groups = with_modifiers(structure.groups(layout, device), spec.modifiers)
        for group in groups:  # kernel calls prepared now, so that the structure's size is known once
            if not group.self_only and index_len(group.index):
                _recipe(group, device)
        structure.planned[key] = groups  # published complete: readers never see a group being prepared
    structure.grew()
    return groups


def with_modifiers(groups: list, modifiers: tuple) -> list:
    """The query groups with every part's logit scale multiplied by the modifiers' factors for it. Groups no
    factor changes are returned as they are (with the kernel calls they prepared)."""
    if not modifiers:
        return groups
    out = []
    for group in groups:
        parts, changed = [], False
        for part in group.parts:
            factor = 1.0
            for modifier in modifiers:
                factor *= modifier.logit_scale(group, part)
            if factor != 1.0:
                part, changed = replace(part, logit_scale=part.logit_scale * factor), True
            parts.append(part)
        out.append(replace(group, parts=parts, prepared={}) if changed else group)
    return out


def _plain_groups(layout: TokenLayout, spec: CallSpec, device) -> list:
    """Query groups without a structure: appended texts read by nothing, or seen by every token."""
    groups = []
    if layout.region_lens and spec.texts_unread:
        # Appended texts are read by nothing here: each sees itself. Every other token attends the two
        # key slices around them, slice by slice (no copy of q, k or v).
        groups.append(QueryGroup(layout.regions, self_only=True))
        text_keys, keys = layout.txt, [KeyPart(layout.txt), KeyPart(layout.visual)]
        query_runs = [layout.txt, layout.visual]
    else:
        text_keys, keys = slice(0, layout.n_context), [KeyPart(slice(0, layout.total))]
        query_runs = [slice(0, layout.total)]
    if not spec.modifiers and not spec.observers:
        return groups + [QueryGroup(rows, keys) for rows in query_runs]
    # Image rows apart, with their text keys as a part of their own: what modifiers and observers tell apart.
    groups.append(QueryGroup(cat_index([text_keys, layout.ref], device), keys))
    image_parts = [KeyPart(text_keys, text_offset=0), KeyPart(layout.visual)]
    groups.append(QueryGroup(layout.img, image_parts, image_rows=slice(0, layout.n_img)))
    return groups


def blend_weights(b: float) -> tuple:
    """The base_ratio blend, h = (1 - b) * h_main + b * h_base: the weights of the two softmaxes. Outputs
    (`_run_group`) and observed probabilities (`text_probabilities`) are blended with the same pair."""
    return 1.0 - b, b


def run_groups(q, k, v, groups, kernels: KernelSelector, scale: float, observers: tuple = ()) -> torch.Tensor:
    """Evaluate query groups; q/k/v [B,H,L,D]. Returns [B,H,L,D] in q's dtype.

    With `observers`, image rows also report their exact probabilities on every text key to each."""
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
    for group in groups:
        if index_len(group.index) == 0:
            continue
        if group.self_only:  # a softmax over one key is 1: the row's own value
            out[:, :, group.index] = take(v, group.index)
            continue
        result, lse_main, lse_base = _run_group(q, k, v, group, kernels, scale)
        if isinstance(group.index, slice):
            out[:, :, group.index] = result
        else:
            out.index_copy_(2, group.index, result)
        if observers and group.image_rows is not None:
            for offset, probs in text_probabilities(q, k, group, lse_main, lse_base, scale):
                for observer in observers:
                    observer.record(group.image_rows, offset, probs)
    return out


# Elements of the fp32 [B, H, rows, text keys] scratch when computing observed probabilities
# (32 MiB; with base_ratio two such tensors live at once): one chunk at 512x512, a few at
# 1024x1024, bounded whatever the number of regions.
_PROBABILITY_SCRATCH = 8 * 2**20


def text_probabilities(q, k, group: QueryGroup, lse_main, lse_base, scale: float):
    """Yield (first text column, head-mean probabilities [B, rows, keys]) for each text part of an
    image group: the exact softmax weights the output used, (1 - b) P_main + b P_base."""
    qg = take(q, group.index)
    b = group.base_ratio
    w_main, w_base = blend_weights(b)
    for part in group.parts:
        if part.text_offset is None or index_len(part.index) == 0:
            continue
        in_main = part.main_bias is not EXCLUDED
        in_base = b > 0 and part.in_base
        if not (in_main or in_base):
            continue
        kt = take(k, part.index).float().transpose(-1, -2)
        chunks = []
        step = max(64, _PROBABILITY_SCRATCH // max(1, qg.shape[0] * qg.shape[1] * kt.shape[-1]))
        for start in range(0, qg.shape[-2], step):
            stop = min(start + step, qg.shape[-2])
            logits = torch.matmul(qg[..., start:stop, :].float(), kt).mul_(scale * part.logit_scale)
            base_logits = logits.clone() if (in_main and in_base) else logits
            probs = None
            if in_main:  # in place: this runs for every observed call, keep passes over memory few
                if isinstance(part.main_bias, torch.Tensor):
                    logits.add_(part.main_bias[start:stop].to(logits.device, torch.float32)[:, None])
                if part.key_bias is not None:
                    logits.add_(part.key_bias.to(logits.device, torch.float32))
                probs = logits.sub_(lse_main[..., start:stop, None].float()).exp_()
                if b > 0.0:
                    probs.mul_(w_main)
            if in_base:
                base = base_logits.sub_(lse_base[..., start:stop, None].float()).exp_().mul_(w_base)
                probs = base if probs is None else probs.add_(base)
            chunks.append(probs.mean(dim=1))
        yield part.text_offset, torch.cat(chunks, dim=1)


@dataclass(eq=False)
class _KeyCall:
    """One kernel call of a query group over some of its key parts, worked out once per group and
    device (index joins, bias layout, finiteness checks) so that a call only moves data: no index
    building and no host-device synchronisation per attention call."""

    runs: Optional[list] = None  # unbiased key slices attended one by one and merged (no k/v copy)
    index: Index = None  # otherwise: the keys, gathered for one call
    scaled: tuple = ()  # (lo, hi, factor): logit scales folded into the gathered keys
    key_bias: Optional[torch.Tensor] = None  # [1, 1, 1, keys] fp32, for the kernel
    query_biases: tuple = ()  # ((lo, hi), [rows] fp32): per-query biases on extra head dims

    def tensors(self) -> list:
        items = [self.index, self.key_bias] + [b for _, b in self.query_biases]
        return [t for t in items if isinstance(t, torch.Tensor)]


# Unbiased parts that lie in up to this many separate key runs are attended run by run and
# merged through their log-sum-exps instead of gathering their keys: no copy of k and v (the
# big one being [T0 ; I] around the region texts). Measured on CPU (FLUX dims, 1024 image
# tokens): the same or up to 10% faster than one call over gathered keys. Runs that are
# adjacent but differ in logit scale (TACA's [T0 ; I]) stay one call over a scaled copy:
# splitting those measured 15% slower.
_MAX_SPLIT_RUNS = 3


def _separate_runs(parts):
    """The key slices of `parts` (adjacent ones joined) when every part is an unscaled slice
    without a key bias; None otherwise."""
    runs = []
    for p in parts:
        if not isinstance(p.index, slice) or p.key_bias is not None or p.logit_scale != 1.0:
            return None
        if runs and runs[-1].stop == p.index.start:
            runs[-1] = slice(runs[-1].start, p.index.stop)
        else:
            runs.append(p.index)
    return runs


def _prepare_call(parts, with_bias: bool, device) -> _KeyCall:
    """How to attend `parts` in one kernel call. Per-query biases (constant within a part) ride on
    extra head dims: q' = [q, b_p(i)/scale], k' = [k, onehot(p)]. Per-key biases go to the kernel.
    Unbiased parts in a few separate key runs are attended run by run and merged instead."""
    unbiased = not (with_bias and any(isinstance(p.main_bias, torch.Tensor) for p in parts))
    runs = _separate_runs(parts) if unbiased else None
    if runs and 1 < len(runs) <= _MAX_SPLIT_RUNS:
        return _KeyCall(runs=runs)
    index = cat_index([p.index for p in parts], device)
    segments, start = [], 0
    for p in parts:
        stop = start + index_len(p.index)
        segments.append((start, stop))
        start = stop
    scaled = tuple((lo, hi, p.logit_scale) for (lo, hi), p in zip(segments, parts) if p.logit_scale != 1.0)
    key_bias = None
    if with_bias and any(p.key_bias is not None for p in parts):
        key_bias = torch.zeros(start, device=device, dtype=torch.float32)
        for (lo, hi), p in zip(segments, parts):
            if p.key_bias is not None:
                key_bias[lo:hi] = p.key_bias.to(device, torch.float32)
        key_bias = key_bias.view(1, 1, 1, -1)
    query_biases = tuple((seg, p.main_bias.to(device, torch.float32)) for seg, p in zip(segments, parts)
                         if with_bias and isinstance(p.main_bias, torch.Tensor))
    return _KeyCall(index=index, scaled=scaled, key_bias=key_bias, query_biases=query_biases)


def _attend_call(qg, k, v, call: _KeyCall, kernels, scale):
    if call.runs is not None:
        outs, lses = [], []
        for index in call.runs:
            o, lse = kernels.attend(qg, take(k, index), take(v, index), scale)
            outs.append(o)
            lses.append(lse)
        return merge_partials(outs, lses, [None] * len(outs), consume=True)
    kc, vc = take(k, call.index), take(v, call.index)
    if call.scaled:  # fold logit scales into a copy of the keys (a gather already is one)
        kc = kc.clone() if isinstance(call.index, slice) else kc
        for lo, hi, factor in call.scaled:
            kc[:, :, lo:hi] *= factor
    if not call.query_biases:
        return kernels.attend(qg, kc, vc, scale, call.key_bias)
    # Extra dims in fp32 keep the biases exact; pad to a multiple of 8 for the fused kernels.
    extra = -(-len(call.query_biases) // 8) * 8
    b, h, nq, d = qg.shape
    qa = torch.zeros(b, h, nq, d + extra, dtype=torch.float32, device=qg.device)
    ka = torch.zeros(b, h, kc.shape[-2], d + extra, dtype=torch.float32, device=qg.device)
    qa[..., :d] = qg
    ka[..., :d] = kc
    for j, ((lo, hi), bias) in enumerate(call.query_biases):
        qa[..., d + j] = bias / scale
        ka[:, :, lo:hi, d + j] = 1.0
    # Fused kernels want one head size for q, k and v: pad v with zeros and drop the extra outputs.
    va = torch.zeros(b, h, kc.shape[-2], d + extra, dtype=torch.float32, device=qg.device)
    va[..., : vc.shape[-1]] = vc
    out, lse = kernels.attend(qa, ka, va, scale, call.key_bias)
    return out[..., : vc.shape[-1]], lse


@dataclass(eq=False)
class _Recipe:
    """A group's prepared kernel calls by role ("main", or "shared" / "main" / "base" with base_ratio)."""

    calls: dict
    blend: Optional[torch.Tensor] = None  # [4,1,1,1]: (1-b, 1-b, b, b), on the device, for the weights

    def tensors(self) -> list:
        return [t for c in self.calls.values() for t in c.tensors()] + ([] if self.blend is None else [self.blend])


def _recipe(group: QueryGroup, device) -> _Recipe:
    """The group's kernel calls, prepared on first use and kept on the group (groups of a regional
    plan live as long as the plan: every block and step reuses them)."""
    key = str(device)
    if key in group.prepared:
        return group.prepared[key]
    parts = [p for p in group.parts if index_len(p.index) > 0]
    for p in parts:  # a hidden key is EXCLUDED, never a -inf bias (checked once per plan, not per call)
        for bias in (p.main_bias, p.key_bias):
            if isinstance(bias, torch.Tensor) and not bool(torch.isfinite(bias).all()):
                raise ValueError("key part biases must be finite; mark hidden keys EXCLUDED")
    main = [p for p in parts if p.main_bias is not EXCLUDED]
    b = group.base_ratio
    if b <= 0.0:
        recipe = _Recipe({"main": _prepare_call(main, True, device)})
    else:
        # Keys seen unbiased by both softmaxes (shared), keys of the main softmax only or with
        # biases (main), keys of the base softmax only (base).
        plain = [p for p in main if p.in_base and p.main_bias is None and p.key_bias is None]
        shared = {id(p) for p in plain}
        main_only = [p for p in main if id(p) not in shared]
        base_only = [p for p in parts if p.in_base and id(p) not in shared]
        calls = {name: _prepare_call(chosen, with_bias, device)
                 for name, chosen, with_bias in (("shared", plain, False), ("main", main_only, True),
                                                 ("base", base_only, False)) if chosen}
        w_main, w_base = blend_weights(b)
        blend = torch.tensor([w_main, w_main, w_base, w_base], dtype=torch.float32).view(4, 1, 1, 1).to(device)
        recipe = _Recipe(calls, blend)
    group.prepared[key] = recipe
    return recipe


def _run_group(q, k, v, group: QueryGroup, kernels: KernelSelector, scale: float):
    """At most three kernel calls (see `_recipe`), then one weighted sum."""
    qg = take(q, group.index)
    b = group.base_ratio
    recipe = _recipe(group, q.device)
    if b <= 0.0:
        out, lse = _attend_call(qg, k, v, recipe.calls["main"], kernels, scale)
        return out.to(q.dtype), lse, None
    results = {name: _attend_call(qg, k, v, call, kernels, scale) for name, call in recipe.calls.items()}
    neg = None
    if len(results) < 3:
        neg = torch.full(qg.shape[:-1], float("-inf"), device=qg.device)
    l_shared = results["shared"][1] if "shared" in results else neg
    l_main = results["main"][1] if "main" in results else neg
    l_base = results["base"][1] if "base" in results else neg
    lse_main = torch.logaddexp(l_shared, l_main)
    lse_base = torch.logaddexp(l_shared, l_base)
    # The four softmax weights in one pass (few ops: on a GPU each one is a launch):
    # (1 - b) e^(ls - lse_main), (1 - b) e^(lm - lse_main), b e^(ls - lse_base), b e^(lb - lse_base).
    w = torch.exp(torch.stack([l_shared, l_main, l_shared, l_base]) - torch.stack([lse_main, lse_main, lse_base, lse_base]))
    w.mul_(recipe.blend)
    coef = {"shared": w[0].add_(w[2]), "main": w[1], "base": w[3]}
    out = weighted_sum([o for o, _ in results.values()], [coef[name] for name in results], consume=True)
    return out.to(q.dtype), lse_main, lse_base


def joint_attention(q, k, v, layout: TokenLayout, spec: CallSpec, kernels: KernelSelector, scale: float):
    """Attention for rows that share `spec`; q/k/v [B,H,L,D] -> [B,H,L,D]."""
    groups = plan_groups(layout, spec, q.device)
    for observer in spec.observers:
        observer.begin(layout, q.shape[0], device=q.device)
    return run_groups(q, k, v, groups, kernels, scale, spec.observers)
