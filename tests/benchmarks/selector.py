"""Which exact path the pack's selector picks per case, and by how much (BENCHMARKS.md's selector tables).

Pure torch. Each case is one planned call; a fresh `PathSelector` measuring on every device (`auto`) takes
it, exactly as on a user's machine: every path that fits is prepared and warmed up untimed (mask building,
compilation), then timed; the table shows each path's median, the pick, and the runner-up's margin.
"""
from __future__ import annotations

import math
import re
import statistics
import time

import torch
import torch.nn.functional as F
from cases import DEFAULTS, TACA_GAMMA, region_masks

SETTINGS = (DEFAULTS, ("open", "background", 0.0))


def selector_cases(api, device, dtype, heads, head_dim, n_img, n_txt, region_len, region_counts=(2, 4), n_ref=0,
                   settings=SETTINGS, seed=0):
    """(name, q, k, v, layout, spec) of the planned calls one suite measures."""
    g = torch.Generator().manual_seed(seed)
    grid = (int(math.isqrt(n_img)),) * 2

    def qkv(total):
        return [torch.randn(1, heads, total, head_dim, generator=g).to(device, dtype) for _ in range(3)]

    plain_layout = api.TokenLayout(n_txt, n_img, n_ref, (), grid)
    q, k, v = qkv(plain_layout.total)
    yield f"TACA (gamma {TACA_GAMMA})", q, k, v, plain_layout, api.spec(gamma=TACA_GAMMA)
    for n in region_counts:
        layout = api.TokenLayout(n_txt, n_img, n_ref, (region_len,) * n, grid)
        q, k, v = qkv(layout.total)
        masks = region_masks(n, grid).to(device)
        for ia, gp, br in settings:
            plan = api.RegionalPlan(masks, [1.0] * n, ia, gp, br)
            yield (f"regional, {n} regions, {ia} / {gp} / base_ratio {br}", q, k, v, layout,
                   api.spec(texts_unread=False, structure=plan))
        plan = api.RegionalPlan(masks, [1.0] * n, *DEFAULTS)
        yield (f"regional defaults + TACA, {n} regions", q, k, v, layout,
               api.spec(texts_unread=False, structure=plan, gamma=TACA_GAMMA))
        yield f"uncond row of CFG (region texts isolated), {n} regions", q, k, v, layout, api.spec(texts_unread=True)


def _plain_seconds(q, k, v, repeats):
    """Median seconds of plain fused attention over the base text + image tokens (the unit of every table)."""
    def once():
        if q.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)
        if q.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def selector_suite(paths_module, api, device, dtype, heads, head_dim, n_img, n_txt, region_len, repeats=3,
                   candidates=None, deadline=None, **options):
    """Rows (case, {path: seconds}, {path: why dropped}, picked, plain seconds, seconds the measurement took).
    `candidates`: the paths (default: every one), shared by the suite's selectors so that a compiled kernel serves
    every case of its shape. Plain attention is timed again before each case: on a machine whose speed drifts,
    each row's ratios then compare times taken close together."""
    rows = []
    candidates = candidates if candidates is not None else paths_module.default_candidates()
    kernels = api.KernelSelector()
    base = None
    for name, q, k, v, layout, spec in selector_cases(api, device, dtype, heads, head_dim, n_img, n_txt, region_len,
                                                      **options):
        if deadline is not None and time.monotonic() > deadline:
            rows.append((name, {}, {"*": "not run: the run's time bound was reached"}, None, None, None))
            continue
        if base is None:
            base = [t[..., : n_txt + n_img, :] for t in (q, k, v)]  # the base text + image tokens of the first case
        plain = _plain_seconds(*base, max(repeats, 5))
        selector = paths_module.PathSelector(candidates=candidates, force="auto", repeats=repeats)
        started = time.perf_counter()
        with torch.no_grad():
            selector.attend(q, k, v, layout, spec, kernels, 1.0 / math.sqrt(head_dim))
        took = time.perf_counter() - started
        (choice,) = selector.choices().values()
        rows.append((name, dict(choice.seconds), dict(choice.dropped), choice.path, plain, took))
        times = "  ".join(f"{p} {s * 1e3:8.2f} ms" for p, s in choice.seconds.items())
        print(f"  {name:<66} {times}  -> {choice.path}  (measured in {took:.1f} s)", flush=True)
        for path, why in choice.dropped.items():
            print(f"      {path} dropped: {why}", flush=True)
    return rows


def selector_table(title, rows, path_names):
    head = " | ".join(f"{p} ms (vs plain)" for p in path_names)
    out = [f"### {title}", "", f"| case | {head} | picked | margin over the runner-up | measuring took |",
           "|---|" + "---:|" * len(path_names) + "---|---:|---:|"]
    for name, seconds, dropped, picked, plain, took in rows:
        cells = []
        for p in path_names:
            if p in seconds:
                cells.append(f"{seconds[p] * 1e3:.2f} ({seconds[p] / plain:.2f}x)")
            else:
                why = dropped.get(p) or dropped.get("*") or "-"
                cells.append("not run: " + re.sub(r"\s+", " ", why).replace("|", "/")[:80])
        if picked is None:
            out.append(f"| {name} | {' | '.join(cells)} | - | - | - |")
            continue
        others = sorted(s for p, s in seconds.items() if p != picked)
        margin = f"{others[0] / seconds[picked]:.2f}x" if others else "only path"
        out.append(f"| {name} | {' | '.join(cells)} | **{picked}** | {margin} | {took:.1f} s |")
    return "\n".join(out) + "\n"


def replace_section(text: str, marker: str, body: str) -> str:
    """`text` with the part between `<!-- marker:start -->` and `<!-- marker:end -->` replaced by `body`
    (appended with its markers when absent): a sub-run rewrites its own tables and nothing else."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    return text.rstrip("\n") + "\n\n" + block
