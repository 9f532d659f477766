"""Every exact path for a planned attention call, and the choice among them by measurement.

A planned call (its layout and `CallSpec`) can be evaluated three exact ways:

- `grouped`: the pack's engine (`joint.joint_attention`): query groups x key parts, one fused kernel call
  per part, merged through log-sum-exps. No L x L data.
- `dense`: one `scaled_dot_product_attention` call per set of rows that share their logit scales, with the
  call's whole structure (visibility and biases) as an additive [rows, L] mask, kept while the plan lives.
  Only where the masks fit a byte budget.
- `flex`: FlexAttention (`torch.nn.attention.flex_attention`, compiled): a `BlockMask` over the key classes
  the query groups define (blocks nobody sees are skipped) and a `score_mod` adding the per-part biases and
  logit scales; with `base_ratio` a second call gives the base softmax and the two outputs are blended.

Which is fastest depends on the device, dtype, shape and structure, so `PathSelector` measures: the first
call of a new (device, dtype, shape, plan kind) prepares every path that fits (mask building and
compilation are never timed), runs each once, times a few runs, and keeps the fastest. Later calls of the
key cost one dict lookup. A path that fails (compile error, out of memory) is dropped for that key only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .joint import EXCLUDED, CallSpec, index_len, joint_attention, plan_groups
from .layout import TokenLayout
from .memory import BoundedCache, MemoryRegistry

log = logging.getLogger("joint_attention")

GROUPED, DENSE, FLEX = "grouped", "dense", "flex"
PATHS = (GROUPED, DENSE, FLEX)
AUTO = "auto"
# Debugging: JOINT_ATTENTION_PATH=grouped|dense|flex forces one path for every call (an error names a call it
# cannot take); `auto` measures on every device, CPU included. Unset: measure on CUDA, the grouped engine on CPU.
PATH_ENV = "JOINT_ATTENTION_PATH"
DEFAULT_DENSE_BUDGET = 512 * 2**20  # bytes of dense masks one planned call may keep
DEFAULT_MAX_CHOICES = 256  # (device, dtype, shape, plan kind) keys remembered
DEFAULT_PREPARED_BUDGET = 1024 * 2**20  # masks and block masks of calls without a structure
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_MASK_ROWS_PER_CHUNK = 256  # rows of a dense mask built at once (bounds the int64 scratch of the lookups)


@dataclass
class PlannedCall:
    """One attention call as the dispatcher plans it; q/k/v [B, H, L, D]."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    layout: TokenLayout
    spec: CallSpec
    kernels: object
    scale: float
    _groups: Optional[list] = None

    @property
    def groups(self) -> list:
        if self._groups is None:
            self._groups = plan_groups(self.layout, self.spec, self.q.device)
        return self._groups

    def grouped(self) -> torch.Tensor:
        return joint_attention(self.q, self.k, self.v, self.layout, self.spec, self.kernels, self.scale)


def plan_kind(layout: TokenLayout, spec: CallSpec) -> tuple:
    """What a path's speed depends on besides device, dtype and shape: the structure's kind, and whether logit
    modifiers split the structure's parts (their values do not matter)."""
    found = spec.structure
    structure = found.kind() if found is not None and hasattr(found, "kind") else (
        type(found).__name__ if found is not None else ("isolated" if spec.texts_unread else "open"))
    return (structure, len(layout.region_lens), layout.n_ref > 0, bool(spec.modifiers))


# -- the structure of a call as tables over key classes ---------------------------------------------------------
@dataclass(eq=False)
class CallTables:
    """The query groups of a call as lookups: query row -> group g, key -> key class c (keys every part of every
    group treats alike), and per (g, c) visibility, logit scale and bias slot. Exact for any groups whose parts
    are disjoint key sets; what the dense and FlexAttention paths evaluate."""

    qgroup: torch.Tensor  # [L] long
    kclass: torch.Tensor  # [L] long
    scale: torch.Tensor  # [G, C] fp32 logit multipliers
    main_vis: torch.Tensor  # [G, C] bool
    base_vis: torch.Tensor  # [G, C] bool (False for groups without base_ratio)
    self_only: torch.Tensor  # [G] bool: each row sees its own key only
    slot: torch.Tensor  # [G, C] long column of `qbias` (0: no per-query bias)
    qbias: torch.Tensor  # [L, S] fp32, column 0 zeros
    krow: torch.Tensor  # [G] long row of `kbias` (0: no per-key bias)
    kbias: torch.Tensor  # [K, L] fp32, row 0 zeros
    blend: torch.Tensor  # [G] fp32 base_ratio
    row_sets: list  # [(group ids, rows index, base_ratio)]: groups sharing logit scales and base_ratio

    def tensors(self) -> list:
        return [self.qgroup, self.kclass, self.scale, self.main_vis, self.base_vis, self.self_only, self.slot,
                self.qbias, self.krow, self.kbias, self.blend]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def bias_rows(self, rows: torch.Tensor, base: bool, dtype) -> torch.Tensor:
        """Additive mask [len(rows), L] of the main (or base) softmax for query positions `rows`."""
        g = self.qgroup[rows]
        vis = (self.base_vis if base else self.main_vis)[g][:, self.kclass]
        if base:
            return torch.zeros(vis.shape, dtype=dtype, device=vis.device).masked_fill_(~vis, float("-inf"))
        own = self.self_only[g][:, None] & (rows[:, None] == torch.arange(vis.shape[1], device=vis.device))
        bias = self.qbias[rows].gather(1, self.slot[g][:, self.kclass]) + self.kbias[self.krow[g]]
        return bias.masked_fill_(~(vis | own), float("-inf")).masked_fill_(own, 0.0).to(dtype)


def _as_tensor(index, device) -> torch.Tensor:
    if isinstance(index, slice):
        return torch.arange(index.start, index.stop, device=device)
    return index.to(device)


def call_tables(groups: list, total: int, device) -> CallTables:
    """Tables of `groups` (a call's query groups over `total` tokens)."""
    groups = [g for g in groups if index_len(g.index)]
    qgroup = torch.full((total,), -1, dtype=torch.long, device=device)
    pairs = []  # (group id, part)
    for gid, group in enumerate(groups):
        qgroup[_as_tensor(group.index, device)] = gid
        if not group.self_only:
            pairs += [(gid, p) for p in group.parts if index_len(p.index)]
    if bool((qgroup < 0).any()):
        raise ValueError("the query groups do not cover every row of the call")
    # Key classes: keys with the same membership in every (group, part).
    member = torch.zeros(len(pairs) + 1, total, dtype=torch.bool, device=device)
    for j, (_, p) in enumerate(pairs):
        member[j, _as_tensor(p.index, device)] = True
    classes, kclass = torch.unique(member.t(), dim=0, return_inverse=True)
    n_groups, n_classes = len(groups), classes.shape[0]
    scale = torch.ones(n_groups, n_classes, device=device)
    main_vis = torch.zeros(n_groups, n_classes, dtype=torch.bool, device=device)
    base_vis = torch.zeros_like(main_vis)
    slot = torch.zeros(n_groups, n_classes, dtype=torch.long, device=device)
    bias_columns, key_rows, krow = [], [], torch.zeros(n_groups, dtype=torch.long, device=device)
    for gid, group in enumerate(groups):
        taken = torch.zeros(n_classes, dtype=torch.bool, device=device)
        key_row = None
        for j, (owner, p) in enumerate(pairs):
            if owner != gid:
                continue
            cls = torch.unique(kclass[member[j]])
            if bool(taken[cls].any()):
                raise ValueError("key parts of a query group overlap")
            taken[cls] = True
            scale[gid, cls] = float(p.logit_scale)
            main_vis[gid, cls] = p.main_bias is not EXCLUDED
            base_vis[gid, cls] = bool(p.in_base and group.base_ratio > 0.0)
            if isinstance(p.main_bias, torch.Tensor):
                column = torch.zeros(total, device=device)
                column[_as_tensor(group.index, device)] = p.main_bias.to(device, torch.float32)
                bias_columns.append(column)
                slot[gid, cls] = len(bias_columns)
            if p.key_bias is not None:
                key_row = torch.zeros(total, device=device) if key_row is None else key_row
                key_row[_as_tensor(p.index, device)] = p.key_bias.to(device, torch.float32)
        if key_row is not None:
            key_rows.append(key_row)
            krow[gid] = len(key_rows)
    zeros = torch.zeros(total, device=device)
    qbias = torch.stack([zeros] + bias_columns, dim=1)
    kbias = torch.stack([zeros] + key_rows)
    self_only = torch.tensor([g.self_only for g in groups], dtype=torch.bool, device=device)
    blend = torch.tensor([g.base_ratio if not g.self_only else 0.0 for g in groups], device=device)
    # Rows that share their logit scales and base_ratio run as one dense call (keys scaled once for them).
    sets: dict = {}
    for gid in range(n_groups):
        sets.setdefault((tuple(scale[gid].tolist()), float(blend[gid])), []).append(gid)
    row_sets = []
    for (_, ratio), gids in sets.items():
        rows = torch.cat([_as_tensor(groups[g].index, device) for g in gids]).sort().values
        row_sets.append((gids, rows, ratio))
    # Table sizes rounded up (entries no row or key points at): FlexAttention's compiled kernel is specialised on
    # the shapes of the tables its functions read, so structures of similar size share one compile per call shape.
    g_pad, c_pad = _bucket(n_groups) - n_groups, _bucket(n_classes) - n_classes
    scale = F.pad(scale, (0, c_pad, 0, g_pad), value=1.0)
    main_vis, base_vis, slot = (F.pad(t, (0, c_pad, 0, g_pad)) for t in (main_vis, base_vis, slot))
    krow, self_only, blend = (F.pad(t, (0, g_pad)) for t in (krow, self_only, blend))
    qbias = F.pad(qbias, (0, _bucket(qbias.shape[1]) - qbias.shape[1]))
    kbias = F.pad(kbias, (0, 0, 0, _bucket(kbias.shape[0]) - kbias.shape[0]))
    return CallTables(qgroup, kclass, scale, main_vis, base_vis, self_only, slot, qbias, krow, kbias, blend, row_sets)


def _bucket(n: int) -> int:
    return max(8, 1 << (n - 1).bit_length())


def _rows_index(rows: torch.Tensor):
    """A slice when `rows` (sorted) is one contiguous run: views instead of gathers."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    return slice(lo, hi) if hi - lo == rows.numel() else rows


def _take_rows(x, rows):
    return x[:, :, rows] if isinstance(rows, slice) else x.index_select(2, rows)


# -- the candidates ---------------------------------------------------------------------------------------------
class Candidate:
    """One exact path. `unavailable` says why it cannot take a call (None: it can), `prepare` builds what the
    path keeps for a planned structure (untimed), `run` evaluates the call with it."""

    name = "candidate"
    keeps_data = False  # whether `prepare` returns data worth keeping per structure

    def unavailable(self, call: PlannedCall) -> Optional[str]:
        return None

    def prepare(self, call: PlannedCall):
        return None

    def run(self, prepared, call: PlannedCall) -> torch.Tensor:
        raise NotImplementedError


class GroupedPath(Candidate):
    name = GROUPED

    def run(self, prepared, call):
        return call.grouped()


@dataclass(eq=False)
class _DenseCall:
    rows: object  # slice or index tensor of query positions
    key_scale: Optional[torch.Tensor]  # [L] per-key logit multipliers folded into k, None when all 1
    mask: torch.Tensor  # [rows, L] additive, q's dtype
    base_mask: Optional[torch.Tensor]
    ratio: float

    def tensors(self) -> list:
        items = [self.rows, self.key_scale, self.mask, self.base_mask]
        return [t for t in items if isinstance(t, torch.Tensor)]


@dataclass(eq=False)
class _Prepared:
    """What a path keeps for one structure on one device and dtype."""

    tables: CallTables
    calls: list = field(default_factory=list)  # dense: _DenseCall
    block_masks: tuple = ()  # flex: (main, base or None)

    def tensors(self) -> list:
        items = self.tables.tensors() + [t for c in self.calls for t in c.tensors()]
        for bm in self.block_masks:
            if bm is not None:
                items += [t for t in bm.as_tuple() if isinstance(t, torch.Tensor)]
        return items

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in {id(t): t for t in self.tensors()}.values())


def dense_mask_bytes(call: PlannedCall) -> int:
    """Bytes of the dense masks the dense path keeps for `call` (main for every row, base for blended rows)."""
    total = call.layout.total
    base_rows = sum(index_len(g.index) for g in call.groups if g.base_ratio > 0.0 and not g.self_only)
    return (total + base_rows) * total * call.q.element_size()


class DensePath(Candidate):
    name = DENSE
    keeps_data = True

    def __init__(self, budget_bytes: int = DEFAULT_DENSE_BUDGET):
        self.budget_bytes = int(budget_bytes)

    def unavailable(self, call):
        need = dense_mask_bytes(call)
        if need > self.budget_bytes:
            return f"its masks need {need / 2**20:.0f} MiB, over the {self.budget_bytes / 2**20:.0f} MiB budget"
        return None

    def prepare(self, call):
        tables = call_tables(call.groups, call.layout.total, call.q.device)
        calls = []
        for gids, rows, ratio in tables.row_sets:
            scale_row = tables.scale[gids[0]][tables.kclass]
            key_scale = None if bool((scale_row == 1.0).all()) else scale_row.to(call.k.dtype)
            chunks = [tables.bias_rows(rows[i:i + _MASK_ROWS_PER_CHUNK], False, call.q.dtype)
                      for i in range(0, rows.numel(), _MASK_ROWS_PER_CHUNK)]
            base = None
            if ratio > 0.0:
                base = torch.cat([tables.bias_rows(rows[i:i + _MASK_ROWS_PER_CHUNK], True, call.q.dtype)
                                  for i in range(0, rows.numel(), _MASK_ROWS_PER_CHUNK)])
            calls.append(_DenseCall(_rows_index(rows), key_scale, torch.cat(chunks), base, ratio))
        return _Prepared(tables, calls)

    def run(self, prepared, call):
        q, k, v = call.q, call.k, call.v
        out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
        for c in prepared.calls:
            keys = k if c.key_scale is None else k * c.key_scale[:, None]
            qr = _take_rows(q, c.rows)
            o = F.scaled_dot_product_attention(qr, keys, v, attn_mask=c.mask, scale=call.scale)
            if c.base_mask is not None:
                base = F.scaled_dot_product_attention(qr, keys, v, attn_mask=c.base_mask, scale=call.scale)
                o = (o.float() * (1.0 - c.ratio) + base.float() * c.ratio).to(q.dtype)
            if isinstance(c.rows, slice):
                out[:, :, c.rows] = o
            else:
                out.index_copy_(2, c.rows, o)
        return out


def _flex_module():
    try:
        from torch.nn.attention import flex_attention as module
    except ImportError:
        return None
    return module


# Call shapes FlexAttention may compile for: torch.compile stops compiling a function after 8 recompiles by default
# and runs it uncompiled from then on (FlexAttention unfused: every score materialised), so the first call of each
# new shape raises that limit for its own duration.
FLEX_SHAPES = 64


def recompile_room():
    """A context in which torch.compile may compile FlexAttention for up to FLEX_SHAPES shapes."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
        try:
            current = getattr(config, name)
        except AttributeError:
            continue
        return config.patch(**{name: max(current, FLEX_SHAPES)})
    return contextlib.nullcontext()


class FlexPath(Candidate):
    """FlexAttention, compiled once per selector (torch.compile caches one kernel per shape)."""

    name = FLEX
    keeps_data = True

    def __init__(self, devices=("cuda", "cpu")):
        self.devices = tuple(devices)
        self._compiled = None
        self._lock = threading.Lock()
        self._seen: set = set()  # call shapes already compiled for

    def unavailable(self, call):
        if _flex_module() is None:
            return "this torch has no FlexAttention"
        if call.q.device.type not in self.devices:
            return f"not measured on {call.q.device.type}"
        if call.q.shape[-1] != call.v.shape[-1] or call.q.shape[-1] < 16 or call.q.shape[-1] & (call.q.shape[-1] - 1):
            return "FlexAttention wants one head size of 16 or more, a power of two"
        if torch.is_grad_enabled() and call.q.requires_grad:
            return "FlexAttention's CPU kernels are for inference only"
        return None

    def _flex(self):
        with self._lock:
            if self._compiled is None:
                self._compiled = torch.compile(_flex_module().flex_attention, dynamic=False)
            return self._compiled

    def prepare(self, call):
        module = _flex_module()
        tables = call_tables(call.groups, call.layout.total, call.q.device)
        total = call.layout.total
        has_base = bool(tables.base_vis.any())

        qgroup, kclass, self_only = tables.qgroup, tables.kclass, tables.self_only

        def visible(vis):
            def mask_mod(b, h, q_idx, kv_idx):
                g = qgroup[q_idx]
                return vis[g, kclass[kv_idx]] | (self_only[g] & (q_idx == kv_idx))
            return mask_mod

        main = module.create_block_mask(visible(tables.main_vis), None, None, total, total, device=call.q.device)
        base = None
        if has_base:
            base = module.create_block_mask(visible(tables.base_vis), None, None, total, total, device=call.q.device)
        self._flex()
        return _Prepared(tables, block_masks=(main, base))

    def run(self, prepared, call):
        t = prepared.tables
        main_mask, base_mask = prepared.block_masks
        # Plain tensors in the closures (not the tables object): the compiled kernel of a shape then serves
        # every structure of that shape, its tables passed as inputs.
        qgroup, kclass, scale, slot, qbias, krow, kbias = t.qgroup, t.kclass, t.scale, t.slot, t.qbias, t.krow, t.kbias

        def score_mod(score, b, h, q_idx, kv_idx):
            g = qgroup[q_idx]
            c = kclass[kv_idx]
            return score * scale[g, c] + qbias[q_idx, slot[g, c]] + kbias[krow[g], kv_idx]

        def base_score_mod(score, b, h, q_idx, kv_idx):
            return score * scale[qgroup[q_idx], kclass[kv_idx]]

        flex = self._flex()
        shape = (call.q.shape, call.q.dtype, call.q.device, tuple(x.shape for x in t.tensors()))
        with contextlib.nullcontext() if shape in self._seen else recompile_room():
            out = flex(call.q, call.k, call.v, score_mod=score_mod, block_mask=main_mask, scale=call.scale)
            if base_mask is not None:
                base = flex(call.q, call.k, call.v, score_mod=base_score_mod, block_mask=base_mask, scale=call.scale)
        self._seen.add(shape)
        if base_mask is None:
            return out
        ratio = t.blend[qgroup].view(1, 1, -1, 1)  # rows without base: weight 0 on a zero row
        return (out.float() * (1.0 - ratio) + base.float() * ratio).to(call.q.dtype)


def default_candidates(dense_budget: int = DEFAULT_DENSE_BUDGET) -> dict:
    return {GROUPED: GroupedPath(), DENSE: DensePath(dense_budget), FLEX: FlexPath()}


# -- the selector -----------------------------------------------------------------------------------------------
@dataclass
class Choice:
    """What was measured for one key: the path kept, each timed path's median seconds, why others were left out."""

    path: str
    seconds: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"path": self.path, "seconds": dict(self.seconds), "dropped": dict(self.dropped)}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forced_path(value: Optional[str]) -> Optional[str]:
    """The path JOINT_ATTENTION_PATH forces (None: measure), or a ValueError naming the setting and the fix."""
    value = (value or "").strip().lower()
    if value in ("", AUTO):
        return None
    if value not in PATHS:
        raise ValueError(f"{PATH_ENV}={value!r} is not a path: use one of {PATHS + (AUTO,)} or unset it")
    return value


class PathSelector:
    """Chooses, per (device, dtype, shape, plan kind), the fastest exact path by timing them on the first call.

    `clock` (seconds) and `candidates` (name -> `Candidate`) are injectable; `force` forces a path (default:
    the JOINT_ATTENTION_PATH setting); `measure_on` lists the device types measured when nothing is forced
    (`auto` in the setting measures everywhere). Choices live in a table bounded to `max_choices` keys;
    prepared masks live on the structure they belong to (a regional plan: the pack's cache counts them as the plan
    grows) or, for calls without one, in a byte-bounded cache tracked by `registry`."""

    def __init__(self, registry: Optional[MemoryRegistry] = None, candidates: Optional[dict] = None,
                 clock: Callable[[], float] = time.perf_counter, repeats: int = 3, force: Optional[str] = "env",
                 measure_on=("cuda",), max_choices: int = DEFAULT_MAX_CHOICES,
                 prepared_budget: int = DEFAULT_PREPARED_BUDGET):
        setting = os.environ.get(PATH_ENV) if force == "env" else force
        self.force, self.setting_error = None, None
        try:
            self.force = forced_path(setting)
        except ValueError as exc:  # raised where a call would use it: a bad setting must not stop the pack loading
            self.setting_error = exc
        if setting is not None and (setting or "").strip().lower() == AUTO:
            measure_on = None  # every device
        self.measure_on = measure_on
        self.candidates = candidates if candidates is not None else default_candidates()
        if GROUPED not in self.candidates:
            raise ValueError("the grouped engine must be a candidate: it is every call's fallback")
        self.clock = clock
        self.repeats = max(1, int(repeats))
        self.max_choices = int(max_choices)
        self.registry = registry if registry is not None else MemoryRegistry()
        self.prepared_cache = BoundedCache(self.registry, prepared_budget)
        self._choices: dict = {}
        self._lock = threading.RLock()

    # -- per call -------------------------------------------------------------------------------------------
    def attend(self, q, k, v, layout: TokenLayout, spec: CallSpec, kernels, scale: float) -> torch.Tensor:
        """Attention of one planned call on its chosen path; q/k/v [B,H,L,D] -> [B,H,L,D]."""
        if self.setting_error is not None:
            raise self.setting_error
        if spec.observers:  # observed probabilities come from the engine's own log-sum-exps
            return joint_attention(q, k, v, layout, spec, kernels, scale)
        if self.force is not None:
            return self._forced(PlannedCall(q, k, v, layout, spec, kernels, scale))
        key = (q.device, q.dtype, tuple(q.shape), plan_kind(layout, spec))
        choice = self._choices.get(key)
        if choice is not None and choice.path == GROUPED:
            return joint_attention(q, k, v, layout, spec, kernels, scale)
        call = PlannedCall(q, k, v, layout, spec, kernels, scale)
        if choice is None:
            if self.measure_on is not None and q.device.type not in self.measure_on:
                self._remember(key, Choice(GROUPED, dropped={"*": f"not measured on {q.device.type}"}))
                return call.grouped()
            return self._measure(key, call)
        try:
            return self._run(choice.path, call)
        except (RuntimeError, NotImplementedError, ValueError) as exc:  # out of memory included
            return self._drop(key, choice, call, exc)

    def _run(self, name: str, call: PlannedCall) -> torch.Tensor:
        candidate = self.candidates[name]
        return candidate.run(self._prepared(candidate, call), call)

    def _prepared(self, candidate: Candidate, call: PlannedCall):
        """The candidate's data for the call's structure: built once, kept where the structure lives (keyed, like
        the query groups, by the logit modifiers themselves)."""
        if not candidate.keeps_data:
            return candidate.prepare(call)
        spec, device = call.spec, call.q.device
        structure = spec.structure
        if structure is None:
            key = (candidate.name, call.layout, spec.texts_unread, spec.modifiers, str(device), call.q.dtype)
            return self.prepared_cache.get(key, lambda: candidate.prepare(call), owner="attention_paths")
        key = ("path", candidate.name, call.layout, spec.modifiers, str(device), call.q.dtype)
        found = structure.planned.get(key)
        if found is not None:
            return found[0]
        with structure.lock:
            found = structure.planned.get(key)
            if found is not None:
                return found[0]
            prepared = candidate.prepare(call)
            structure.planned[key] = [prepared]  # a list, like the groups beside it: the structure counts what it holds
        structure.grew()
        return prepared

    def _forced(self, call: PlannedCall) -> torch.Tensor:
        candidate = self.candidates[self.force]
        why = candidate.unavailable(call)
        if why is not None:
            raise RuntimeError(f"[joint_attention] {PATH_ENV}={self.force} cannot take this attention call: {why}; "
                               f"unset {PATH_ENV} (or set it to {AUTO}) to let the pack choose")
        return self._run(self.force, call)

    # -- measurement ----------------------------------------------------------------------------------------
    def _measure(self, key, call: PlannedCall) -> torch.Tensor:
        """Prepare, warm up and time every candidate that fits; keep the fastest; return its output."""
        with self._lock:  # one measurement at a time: concurrent timings would measure each other
            choice = self._choices.get(key)
            if choice is not None:
                return call.grouped() if choice.path == GROUPED else self._run(choice.path, call)
            choice = Choice(GROUPED)
            best, best_out = None, None
            for name, candidate in self.candidates.items():
                why = candidate.unavailable(call)
                if why is not None:
                    choice.dropped[name] = why
                    continue
                try:
                    prepared = self._prepared(candidate, call)
                    out = candidate.run(prepared, call)  # untimed: compilation, first-use allocations
                    times = []
                    for _ in range(self.repeats):
                        _synchronize(call.q.device)
                        start = self.clock()
                        candidate.run(prepared, call)
                        _synchronize(call.q.device)
                        times.append(self.clock() - start)
                except Exception as exc:  # noqa: BLE001 - compile errors come in many types; dropped for this key
                    if name == GROUPED:
                        raise
                    choice.dropped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    log.info("[joint_attention] path %s dropped for %s: %s", name, key, choice.dropped[name])
                    continue
                choice.seconds[name] = statistics.median(times)
                if best is None or choice.seconds[name] < choice.seconds[best]:
                    best, best_out = name, out
            choice.path = best
            self._remember(key, choice)
            log.info("[joint_attention] attention path for %s: %s (%s)", key, best,
                     ", ".join(f"{n} {s * 1e3:.2f} ms" for n, s in choice.seconds.items()))
            return best_out

    def _drop(self, key, choice: Choice, call: PlannedCall, exc: Exception) -> torch.Tensor:
        """The chosen path failed on a later call: drop it for this key, take the next fastest measured one."""
        log.warning("[joint_attention] attention path %s failed (%s); dropped for calls like this one", choice.path, exc)
        with self._lock:
            seconds = {n: s for n, s in choice.seconds.items() if n != choice.path}
            dropped = dict(choice.dropped, **{choice.path: f"{type(exc).__name__} after it was chosen"})
            nxt = min(seconds, key=seconds.get) if seconds else GROUPED
            self._remember(key, Choice(nxt, seconds, dropped))
        if isinstance(exc, _OUT_OF_MEMORY) and call.q.device.type == "cuda":
            torch.cuda.empty_cache()
        # Through `attend` again: should the next path fail too, it is dropped the same way, down to the engine.
        return self.attend(call.q, call.k, call.v, call.layout, call.spec, call.kernels, call.scale)

    def _remember(self, key, choice: Choice) -> None:
        with self._lock:
            self._choices.pop(key, None)
            self._choices[key] = choice
            while len(self._choices) > self.max_choices:
                self._choices.pop(next(iter(self._choices)))

    # -- reporting ------------------------------------------------------------------------------------------
    def choices(self) -> dict:
        with self._lock:
            return dict(self._choices)

    def report(self) -> dict:
        """For the memory report: the setting, each key's choice and timings, and the bytes kept for calls
        without a structure (a regional plan's masks are counted with the plan)."""
        with self._lock:
            entries = [{"device": str(key[0]), "dtype": str(key[1]).replace("torch.", ""), "shape": list(key[2]),
                        "kind": repr(key[3]), **choice.as_dict()} for key, choice in self._choices.items()]
        return {"setting": self.force or (AUTO if self.measure_on is None else f"measure on {', '.join(self.measure_on)}"),
                "keys": len(entries), "max_keys": self.max_choices, "prepared_bytes": self.prepared_cache.bytes,
                "choices": entries}

