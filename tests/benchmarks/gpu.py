"""`make gpu-check`'s benchmark: the GPU tables of BENCHMARKS.md, bounded to about 8 minutes on one GPU.

Refuses (exit 2, a message on stderr) where torch sees no CUDA device. On one, in bfloat16:
1. attention of one call, FLUX.1 dims, 4096 image + 512 text tokens, 1 / 2 / 4 / 8 regions, against plain flash
   attention, with the dense-mask and one-pass-per-region baselines in the same run, and allocator peaks;
2. whole-step time: a FLUX-style stack at real dims (2 double + 4 single blocks, random weights,
   tests/benchmarks/model.py), with and without each feature, attention on the path the selector picks;
3. which exact path the selector picks per case (grouped engine, dense mask, FlexAttention), and by how much;
4. the other families' attention at their real dims (SD3.5-L, Qwen-Image, Z-Image-Turbo), 2 and 4 regions.
Parts past the time bound are reported as not run. Only the section between the `gpu` markers of
BENCHMARKS.md is rewritten. `--smoke` runs every part on the CPU at tiny sizes (a test of this script).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # `attention` is pure torch: no ComfyUI in this process
sys.path.insert(0, str(HERE))

import selector as sel  # noqa: E402
from cases import DEFAULTS, TACA_GAMMA, TEXT_SCALE, Api, region_masks  # noqa: E402
from model import Stack  # noqa: E402
from peak import peak_extra_bytes  # noqa: E402
from run import run_suite, table, timed_against  # noqa: E402

COMMAND = "make gpu-check   (= tests/gpu, then .venv/bin/python tests/benchmarks/gpu.py)"
MARKER = "gpu"
BUDGET_S = 330  # the benchmark's share of the 8 minutes (tests/gpu, with its compiles, runs before it); a part running
# when the bound passes finishes (a FlexAttention compile may take a minute), later parts are left out
REFUSAL = ("[gpu-check] no CUDA device: torch {torch} (CUDA build: {cuda}) sees none on this machine. make gpu-check "
           "measures a GPU; run it where `python -c \"import torch; print(torch.cuda.is_available())\"` prints True. "
           "CPU figures come from `make bench`.")


def refusal() -> str:
    return REFUSAL.format(torch=torch.__version__, cuda=torch.version.cuda or "none")


def load_api(prefix="attention"):
    return Api(prefix), importlib.import_module(f"{prefix}.paths")


# Real dims of each family (heads x head size; text tokens; region prompt tokens), as `make bench` names them.
FAMILIES = {
    "FLUX.1": dict(heads=24, head_dim=128, n_txt=512, region_len=512),
    "SD3.5-L": dict(heads=38, head_dim=64, n_txt=333, region_len=154),
    "Qwen-Image": dict(heads=24, head_dim=128, n_txt=128, region_len=32),
    "Z-Image-Turbo": dict(heads=30, head_dim=128, n_txt=160, region_len=32, single_stream=True),
}
SMOKE = dict(heads=2, head_dim=16, n_txt=8, region_len=4)


def whole_step(api, paths, candidates, device, dtype, n_img, n_txt, region_len, region_counts, repeats, deadline,
               hidden=3072, heads=24, n_double=2, n_single=4):
    """Rows (name, seconds, ratio to the plain forward, peak extra bytes, note) of one stack's forward."""
    torch.manual_seed(0)
    stack = Stack(hidden, heads, n_double, n_single).to(device, dtype).eval()
    grid = (int(math.isqrt(n_img)),) * 2
    head_dim = hidden // heads
    scale = 1.0 / math.sqrt(head_dim)
    kernels = api.KernelSelector()
    selector = paths.PathSelector(candidates=candidates, force="auto", repeats=3)
    img = torch.randn(1, n_img, hidden, device=device, dtype=dtype)
    txt = torch.randn(1, n_txt, hidden, device=device, dtype=dtype)

    def plain_attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    def engine(layout, spec):
        return lambda q, k, v: selector.attend(q, k, v, layout, spec, kernels, scale)

    text_scale = api.TextScaleModifier(api.Gate(numbers=frozenset(range(n_double + n_single))), TEXT_SCALE, "scale", None)

    def scaled(x, n_text, number):
        stream = api.TextStream(x, 0, n_text)
        text_scale.edit_text(state, api.BlockRef("double" if number < n_double else "single", number, number), stream)
        return stream.tensor

    state = api.ForwardState("flux", n_txt, n_txt, (), n_img, grid, (0,), 1.0, n_double, n_single)
    plain_layout = api.TokenLayout(n_txt, n_img, 0, (), grid)

    def forward(text, attend, edit=None):
        return lambda: stack(img, text, attend, edit)

    plain = forward(txt, plain_attend)
    features = [
        ("plain attention (no feature)", plain),
        (f"TACA (gamma {TACA_GAMMA})", forward(txt, engine(plain_layout, api.spec(gamma=TACA_GAMMA)))),
        (f"text scale (x{TEXT_SCALE} before every block)", forward(txt, plain_attend, scaled)),
        ("capture of every block", forward(txt, engine(plain_layout, api.spec(sink=api.CaptureSink(n_img, device))))),
    ]
    for n in region_counts:
        layout = api.TokenLayout(n_txt, n_img, 0, (region_len,) * n, grid)
        with_regions = torch.cat([txt, torch.randn(1, n * region_len, hidden, device=device, dtype=dtype)], dim=1)
        plan = api.RegionalPlan(region_masks(n, grid).to(device), [1.0] * n, *DEFAULTS)
        regional = api.spec(texts_unread=False, structure=plan)
        everything = api.spec(texts_unread=False, structure=plan, gamma=TACA_GAMMA,
                              sink=api.CaptureSink(n_img, device))
        dense = torch.zeros(1, heads, layout.total, layout.total, device=device, dtype=dtype)  # the baseline's mask
        features += [
            (f"regional defaults, {n} regions", forward(with_regions, engine(layout, regional))),
            (f"uncond row of CFG (region texts isolated), {n} regions",
             forward(with_regions, engine(layout, api.spec(texts_unread=True)))),
            (f"everything (regional defaults + TACA + text scale + capture), {n} regions",
             forward(with_regions, engine(layout, everything), scaled)),
            (f"baseline: dense [B,H,L,L] mask, {n} regions",
             forward(with_regions, lambda q, k, v, dense=dense: F.scaled_dot_product_attention(q, k, v, attn_mask=dense))),
            (f"baseline: one pass per region, {n} regions", lambda n=n: [plain() for _ in range(n + 1)]),
        ]
    rows = []
    for name, fn in features:
        if time.monotonic() > deadline:
            rows.append((name, None, None, None, "not run: the run's time bound was reached"))
            continue
        fn()  # untimed: the selector measures the paths of each new call kind here, compiles included
        seconds, ratio, _ = timed_against(fn, plain, device, repeats)
        peak = _peak(fn, device)
        rows.append((name, seconds, ratio, peak, ""))
        print(f"  {name:<78} {seconds * 1e3:9.2f} ms  {ratio:5.2f}x  peak {peak / 2**20:8.1f} MiB", flush=True)
    picks = {describe_key(key): choice.path for key, choice in selector.choices().items()}
    return rows, picks


def describe_key(key) -> str:
    """A selector key (device, dtype, shape, plan kind) in words."""
    structure, n_regions, _, tempered = key[3]
    kind = " / ".join(str(x) for x in structure[1:3]) if isinstance(structure, tuple) else f"region texts {structure}"
    return f"{key[2][2]} tokens, {n_regions} regions, {kind}{' + TACA' if tempered else ''}"


def _peak(fn, device):
    return peak_extra_bytes(fn, device) if device.type == "cuda" else 0  # CPU rows: no profiler pass here


def whole_step_table(title, rows, picks):
    out = [f"### {title}", "", "| case | median ms per forward | vs plain forward | peak extra during the forward |",
           "|---|---:|---:|---:|"]
    for name, seconds, ratio, peak, note in rows:
        if seconds is None:
            out.append(f"| {name} | {note} | - | - |")
        else:
            out.append(f"| {name} | {seconds * 1e3:.2f} | {ratio:.2f}x | {peak / 2**20:.1f} MiB |")
    if picks:
        out += ["", "Paths the selector kept in these forwards: " + "; ".join(f"{k}: {v}" for k, v in picks.items()) + "."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--require-cuda", action="store_true", help="only check that a CUDA device is there")
    parser.add_argument("--smoke", action="store_true", help="every part on the CPU at tiny sizes (tests this script)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="the file whose GPU section is rewritten")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="seconds after which parts are left out")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(refusal(), file=sys.stderr)
        return 2
    if args.require_cuda:
        print(f"[gpu-check] CUDA device: {torch.cuda.get_device_name(0)}")
        return 0
    deadline = time.monotonic() + args.budget_s
    api, paths = load_api()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    n_img = 64 if args.smoke else 4096
    repeats = 2 if args.smoke else 10
    counts = (2,) if args.smoke else (1, 2, 4, 8)
    candidates = paths.default_candidates(dense_budget=8 * 2**30)
    if args.smoke:
        candidates.pop(paths.FLEX)  # compiling on the CPU takes minutes; tests/attention covers it
    families = {name: dict(SMOKE, single_stream=dims.get("single_stream", False)) for name, dims in FAMILIES.items()} \
        if args.smoke else FAMILIES
    dname = "float32" if args.smoke else "bfloat16"
    where = "CPU (smoke run, tiny sizes)" if args.smoke else "CUDA"
    sections = []
    started = time.monotonic()

    flux = families["FLUX.1"]
    title = (f"{where} {dname}, FLUX.1 dims ({flux['heads']} heads x {flux['head_dim']}), {n_img} image + "
             f"{flux['n_txt']} text tokens, region prompts of {flux['region_len']} tokens: one attention call")
    print(title, flush=True)
    rows = run_suite(device, dtype, n_img=n_img, quick=True, repeats=repeats, region_counts=counts,
                     dense_limit=8 * 2**30, **flux)
    sections.append(table(title, rows))

    hidden, heads = (32, 2) if args.smoke else (3072, 24)
    title = (f"{where} {dname}, whole step: a FLUX-style stack at {'tiny' if args.smoke else 'real'} dims (hidden "
             f"{hidden}, {heads} heads, 2 double + 4 single blocks, random weights), {n_img} image + {flux['n_txt']} "
             f"text tokens, region prompts of {flux['region_len']}")
    print(title, flush=True)
    rows, picks = whole_step(api, paths, candidates, device, dtype, n_img, flux["n_txt"], flux["region_len"], counts,
                             repeats, deadline, hidden=hidden, heads=heads)
    sections.append(whole_step_table(title, rows, picks))

    title = f"{where} {dname}, FLUX.1 dims, {n_img} image + {flux['n_txt']} text tokens: the path the selector picks"
    print(title, flush=True)
    rows = sel.selector_suite(paths, api, device, dtype, flux["heads"], flux["head_dim"], n_img, flux["n_txt"],
                              flux["region_len"], region_counts=counts, candidates=candidates, deadline=deadline)
    sections.append(sel.selector_table(title, rows, list(candidates)))

    for name in ("Z-Image-Turbo",) if args.smoke else ("SD3.5-L", "Qwen-Image", "Z-Image-Turbo"):
        dims = dict(families[name])
        title = (f"{where} {dname}, {name} dims ({dims['heads']} heads x {dims['head_dim']}), {n_img} image + "
                 f"{dims['n_txt']} text tokens, region prompts of {dims['region_len']}: one attention call")
        if time.monotonic() > deadline:
            sections.append(f"### {title}\n\nNot run: the run's time bound was reached.\n")
            continue
        print(title, flush=True)
        rows = run_suite(device, dtype, n_img=n_img, quick=True, repeats=repeats, region_counts=counts if args.smoke
                         else (2, 4), dense_limit=8 * 2**30, **dims)
        sections.append(table(title, rows))

    device_name = "CPU" if args.smoke else torch.cuda.get_device_name(0)
    header = (f"## GPU\n\nProduced by `{COMMAND}` on {datetime.date.today().isoformat()} in "
              f"{time.monotonic() - started:.0f} s.\n\n"
              f"- device: {device_name}; torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}; "
              f"{platform.platform()}\n"
              "- ratios as in the CPU tables: each run of a case paired with a plain run right after it. Whole-step "
              "rows time the stack's forward; attention in feature rows runs on the path the pack's selector kept "
              "for that kind of call after measuring every exact path on this device (its measurement happens in "
              "an untimed first forward)\n"
              "- peaks: the CUDA allocator's peak counter during one run, above what was allocated before it\n")
    body = header + "\n" + "\n".join(sections)
    path = Path(args.output)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(sel.replace_section(text, MARKER, body))
    print(f"[gpu-check] wrote the GPU section of {path} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
