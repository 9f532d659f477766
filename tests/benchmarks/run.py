"""`make bench`: attention cost of every feature, as ratios to plain attention measured in this run.

Rewrites BENCHMARKS.md. Pure torch (imports the pack's `attention/` by path); CPU always, CUDA
(fp16, bf16) too when a GPU is present. Wall-clock numbers are recorded here, never asserted.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # only this process: `attention` is pure torch, no ComfyUI here

sys.path.insert(0, str(Path(__file__).resolve().parent))

import selector as sel  # noqa: E402
from cases import Api, cases  # noqa: E402
from peak import peak_extra_bytes, quiet_native_stderr  # noqa: E402

API = Api("attention")
SELECTOR_MARKER = "selector:cpu"
GPU_MARKER = "gpu"  # the section `make gpu-check` writes (tests/benchmarks/gpu.py); a CPU run keeps it
SELECTOR_TITLE = ("CPU fp32, FLUX dims (24 heads x 128), 1024 image + 256 text tokens, region prompts of 256 tokens: the "
                  "exact path the selector picks (`run.py --selector`)")
SELECTOR_NOTE = """With JOINT_ATTENTION_PATH unset the pack measures only on CUDA devices and runs the grouped engine on the
CPU; this table is what `auto` (measure on every device) does here. Each row is a fresh selector taking one call:
every path that fits is prepared and run once untimed (dense masks built, FlexAttention compiled), then timed 3
times. "vs plain": against plain fused attention over the base text + image tokens, timed right before the row;
margin: the runner-up's median over the pick's; "measuring took": the whole first call, compiles included (a
FlexAttention compile on this CPU takes about a minute per shape and score function; later rows of a shape reuse it).
On a shared machine times drift with its load; the paths of one row run back to back, so compare within a row.
"""

# Qwen-Image: 24 heads x 128 like FLUX, but its Qwen2.5-VL text is not padded: a prompt of about 120 tokens plus
# the closing chat template, region prompts of about 30.
QWEN_TITLE = ("CPU fp32, Qwen-Image dims (24 heads x 128), 1024 image + 128 text tokens (unpadded Qwen2.5-VL prompt), "
              "region prompts of 32 tokens")
# Z-Image-Turbo (NextDiT): 30 heads x 128 (dim 3840), 30 single-stream joint layers over [caption ; image]. Its
# Qwen3-4B text is not padded by the encoder, but the model pads the caption with learned pad tokens to a multiple
# of 32: a detailed prompt of about 150 tokens (Z-Image-Turbo is prompted with long descriptions) plus the chat
# template's 8 gives 160 = 5 x 32; a region prompt of up to about 24 tokens pads to 32. Image tokens are padded to a
# multiple of 32 too; the pack treats those pad tokens as reference tokens (seen by every image and base-text token).
ZIMAGE = "CPU fp32, Z-Image-Turbo dims"
ZIMAGE_TEXT = "160 text tokens (Qwen3-4B prompt and chat template, padded to 5 x 32), region prompts of 32 tokens"
COMMAND = "make bench   (= .venv/bin/python tests/benchmarks/run.py)"


def _once(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


class KernelClock:
    """Seconds spent inside the attention kernels a case calls (CPU only: timing each call on a GPU
    would need a synchronisation per call and change what is measured). Wraps one selector's
    `attend` through an instance attribute for the duration of a `with` block."""

    def __init__(self, kernels):
        self.kernels = kernels
        self.seconds = 0.0

    def __enter__(self):
        inner = type(self.kernels).attend.__get__(self.kernels)

        def attend(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        self.kernels.attend = attend
        return self

    def __exit__(self, *exc):
        del self.kernels.attend


def timed_against(fn, plain, device, repeats, calls=1, kernels=None):
    """(median seconds of `fn`, its ratio to `calls` plain-attention calls, the ratio of its time in
    attention kernels to the same plain calls or None), runs interleaved so that machine drift hits
    both alike."""
    def plain_calls():
        for _ in range(calls):
            plain()

    fn()  # warm-up (kernel choice, allocator)
    plain_calls()
    clock = KernelClock(kernels) if kernels is not None and device.type == "cpu" else None
    case_times, plain_times, kernel_times = [], [], []
    for _ in range(repeats):
        if clock is not None:
            with clock:
                clock.seconds = 0.0
                case_times.append(_once(fn, device))
            kernel_times.append(clock.seconds)
        else:
            case_times.append(_once(fn, device))
        plain_times.append(_once(plain_calls, device))
    # The ratio is the median of each run's ratio to the plain run next to it: a slow spell of
    # the machine then hits both sides of a pair instead of one side of the medians.
    ratio = statistics.median(c / p for c, p in zip(case_times, plain_times))
    kernel_ratio = statistics.median(t / p for t, p in zip(kernel_times, plain_times)) if kernel_times else None
    return statistics.median(case_times), ratio, kernel_ratio


def run_suite(device, dtype, heads, head_dim, n_img, n_txt, region_len, repeats, quick, all_blocks=0, n_ref=0,
              **options):
    """Rows (name, seconds, ratio, floor, kept, peak bytes, note) of one suite. `options`: `grid`,
    `single_stream`, `region_counts` (see `cases`)."""
    rows = []
    plain = None
    plain_pairs = (n_txt + n_img + n_ref) ** 2
    for case in cases(API, device, dtype, heads, head_dim, n_img, n_txt, region_len, quick=quick, all_blocks=all_blocks,
                      n_ref=n_ref, **options):
        floor = case.pairs / (plain_pairs * case.calls)
        if case.skipped:
            rows.append((case.name, None, None, floor, case.kept, None, case.skipped, None))
            print(f"  {case.name:<78} {case.skipped}", flush=True)
            continue
        plain = plain or case.fn  # the first case is plain attention itself
        seconds, ratio, kernel_ratio = timed_against(case.fn, plain, device, repeats, case.calls, case.extra.get("kernels"))
        peak = peak_extra_bytes(case.fn, device)
        rows.append((case.name, seconds, ratio, floor, case.kept, peak, "", kernel_ratio))
        in_kernels = f"  kernels {kernel_ratio:4.2f}x" if kernel_ratio is not None else ""
        print(f"  {case.name:<78} {seconds * 1e3:9.2f} ms  {ratio:5.2f}x  (floor {floor:4.2f}x){in_kernels}  "
              f"peak {peak / 2**20:7.1f} MiB", flush=True)
    return rows


HOST_TITLE = ("Host-side cost per call: the engine's Python and op dispatch, arithmetic taken away (256 image + 64 "
              "text tokens, region prompts of 64, 1 head x 16 dims, one CPU thread)")


def _host_reads_and_ops(fn):
    """(ops the call dispatches, ops that read a device value back to the host) for one call of `fn`."""
    from torch.profiler import profile

    with quiet_native_stderr(), profile() as prof:
        fn()
    events = prof.events()
    top = sum(1 for e in events if e.cpu_parent is None)
    reads = sum(1 for e in events if e.name in ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"))
    return top, reads


def host_suite(repeats=50):
    """What a call costs the host (Python and op dispatch) with almost no arithmetic: the same call
    structure (groups, parts, kernel calls) as at full size, on tiny tensors. On a GPU this time is
    not hidden behind a lone attention call: while it exceeds the kernels' time the stream waits
    for the host. Rows: (name, seconds, ops, host reads)."""
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for case in cases(API, torch.device("cpu"), torch.float32, heads=1, head_dim=16, n_img=256, n_txt=64,
                          region_len=64, quick=False):
            if case.skipped or "all blocks" in case.name:
                continue
            case.fn()  # first call: kernel choice, plan preparation
            times = [_once(case.fn, torch.device("cpu")) for _ in range(repeats)]
            ops, reads = _host_reads_and_ops(case.fn)
            rows.append((case.name, statistics.median(times), ops, reads))
            print(f"  {case.name:<78} {statistics.median(times) * 1e3:7.3f} ms  {ops:4d} ops  {reads} host reads", flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def host_table(rows):
    plain = rows[0][1]
    out = [f"### {HOST_TITLE}", "",
           "| case | host ms per call | vs plain | ops dispatched | host reads of device values |",
           "|---|---:|---:|---:|---:|"]
    for name, seconds, ops, reads in rows:
        out.append(f"| {name} | {seconds * 1e3:.3f} | {seconds / plain:.1f}x | {ops} | {reads} |")
    return "\n".join(out) + "\n"


def table(title, rows):
    out = [f"### {title}", "",
           "| case | median ms | vs plain | exact-FLOP floor | in attention kernels | vs floor | kept memory "
           "| peak extra during the call |",
           "|---|---:|---:|---:|---:|---:|---|---:|"]
    for name, seconds, ratio, floor, kept, peak, note, kernel_ratio in rows:
        if seconds is None:
            out.append(f"| {name} | {note} | - | {floor:.2f}x | - | - | {kept or '-'} | - |")
        else:
            kernels = f"{kernel_ratio:.2f}x" if kernel_ratio is not None else "-"
            out.append(f"| {name} | {seconds * 1e3:.2f} | {ratio:.2f}x | {floor:.2f}x | {kernels} | {ratio / floor:.2f}x "
                       f"| {kept or '-'} | {peak / 2**20:.1f} MiB |")
    return "\n".join(out) + "\n"


def _find(results, suite_prefix, case):
    for title, rows in results.items():
        if title.startswith(suite_prefix) and case in rows:
            return rows[case]
    return None


def verdict(results, suite_prefix, case, target):
    row = _find(results, suite_prefix, case)
    if row is None or row["ratio"] is None:
        return "not measured in this run (needs a GPU)" if suite_prefix.startswith("CUDA") else "not measured in this run"
    ratio, floor = row["ratio"], row["floor"]
    if ratio <= target:
        return f"met: {ratio:.2f}x"
    why = " (the exact-FLOP floor itself is above the target)" if floor > target else ""
    kernels = f", of which {row['kernels']:.2f}x in the attention kernels" if row.get("kernels") is not None else ""
    return f"not met: {ratio:.2f}x{kernels}; floor {floor:.2f}x{why}; engine overhead over the floor {ratio / floor:.2f}x"


def memory_verdict(results, suite_prefix, case, limit_mib, judged=True):
    row, plain = _find(results, suite_prefix, case), _find(results, suite_prefix, "plain attention")
    if row is None or row["peak"] is None:
        return "not measured in this run (needs a GPU)" if suite_prefix.startswith("CUDA") else "not measured in this run"
    extra = (row["peak"] - plain["peak"]) / 2**20
    status = ("met: " if extra <= limit_mib else "not met: ") if judged else ""
    return f"{status}{extra:.1f} MiB above plain attention's own peak (kept between calls: {row['kept']})"


CPU_BF16 = "CPU bfloat16"
CASE_DEFAULTS_2 = "regional, 2 regions, restricted / background / base_ratio 0.2"
CASE_OPEN_2 = "regional, 2 regions, open / background / base_ratio 0.0"
CASE_DEFAULTS_4 = "regional, 4 regions, restricted / background / base_ratio 0.2"
CASE_EVERYTHING_4 = "everything: regional defaults + TACA + text scale + capture, 4 regions"


def targets(results):
    cpu, gpu = "CPU fp32, FLUX dims (24 heads x 128), 1024", "CUDA bfloat16, FLUX"
    rows = [
        ("TACA <= 1.1x (CPU, FLUX dims, 1024 + 256)", verdict(results, cpu, "TACA (gamma 1.2)", 1.1)),
        ("capture of all blocks <= 1.3x (CPU, FLUX dims, 1024 + 256)",
         verdict(results, cpu, "capture of all blocks (57 calls into one buffer)", 1.3)),
        ("regional defaults <= 1.3x (CPU, 2 regions)",
         verdict(results, cpu, CASE_DEFAULTS_2, 1.3)),
        ("`open` + `base_ratio 0` <= 1.15x (CPU, 2 regions)",
         verdict(results, cpu, CASE_OPEN_2, 1.15)),
        ("GPU 4096 + 512, 4 regions, defaults <= 1.15x (bf16)", verdict(results, gpu, CASE_DEFAULTS_4, 1.15)),
        ("GPU, all features together <= 1.35x (bf16, 4 regions)", verdict(results, gpu, CASE_EVERYTHING_4, 1.35)),
        ("GPU, mask and capture memory <= 128 MiB (bf16, all features, 4 regions)",
         memory_verdict(results, gpu, CASE_EVERYTHING_4, 128)),
        ("(a proxy, not the GPU figure: the same case in bf16 on the CPU, whose allocations are the GPU path's except "
         "the kernels' own workspaces)",
         memory_verdict(results, CPU_BF16, CASE_EVERYTHING_4, 128, judged=False)),
    ]
    return "| target | status |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def gap_analysis(results, host_rows):
    """Where the remaining gap comes from, with this run's figures."""
    cpu = "CPU fp32, FLUX dims (24 heads x 128), 1024"
    lines = ["Where the remaining gap comes from (figures from the tables of this run):"]
    floors = [_find(results, cpu, name) for name in (CASE_DEFAULTS_2, CASE_OPEN_2)]
    if all(f is not None for f in floors):
        lines.append(
            f"- The two regional CPU targets sit below their exact-FLOP floors ({floors[0]['floor']:.2f}x for the defaults, "
            f"{floors[1]['floor']:.2f}x for `open` + `base_ratio 0`): 256-token region prompts and the base softmax are work "
            "an exact result needs, so no exact engine can meet them on this shape. Not computing them (trimming region "
            "prompts to their words, dropping the base blend) would change the image, so it is not done.")
    row = _find(results, cpu, CASE_DEFAULTS_2)
    if row is not None and row.get("kernels") is not None:
        lines.append(
            f"- Regional defaults, 2 regions: floor {row['floor']:.2f}x, attention kernels {row['kernels']:.2f}x, whole call "
            f"{row['ratio']:.2f}x. Kernels over the floor: the exact work is split into calls smaller than plain's (one per "
            "key part and query group), which cost more per query-key pair (timed alone on this CPU: 4% more for "
            "512 x 768, 10% more for 256 x 768 than the 1280 x 1280 plain call), on freshly gathered inputs. Outside the "
            "kernels: copies of the keys and values of restricted coverage classes, the weighted combine of the parts, "
            "and first touches of freshly allocated buffers (page faults: in a separate check, keeping freed memory in "
            "the process with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ took about 0.1x off this case).")
    if host_rows:
        host = {name: (seconds, ops) for name, seconds, ops, _ in host_rows}
        plain_s = host["plain attention"][0]
        d4 = host.get(CASE_DEFAULTS_4)
        e4 = host.get(CASE_EVERYTHING_4)
        if d4 and e4:
            lines.append(
                f"- GPU-side, what can be measured here is the host time of a call: {d4[0] * 1e3:.2f} ms and {d4[1]} ops for "
                f"regional defaults with 4 regions, {e4[0] * 1e3:.2f} ms and {e4[1]} ops with every feature, against "
                f"{plain_s * 1e3:.2f} ms for plain attention (host-side table). A lone call whose host time exceeds its "
                "kernels' time leaves the GPU waiting; inside a model forward the other layers' kernels can hide it. "
                "No call reads a device value back to the host after its plan's first call (tested).")
    lines.append(
        "- Not built: FlexAttention block masks (one fused kernel per call on GPU). They need `torch.compile` per "
        "shape; on this CPU a compiled FlexAttention call over 1280 tokens measured about 3x slower than plain SDPA "
        "after a 20 s compile, so it is no CPU fast path, and no GPU was available to check its speed or exactness. "
        "Also tried and not kept: ordering keys by coverage class once per call (one copy of k and v instead of one "
        "per group); on this CPU it measured the same or slower (more, smaller kernel calls).")
    return "\n".join(lines) + "\n"


# `--family` names (and the host-side table's).
FAMILIES = ("flux", "sd35", "qwen_image", "z_image")
HOST = "host"


def suites(quick):
    """(family, title, run_suite arguments) of every suite, in the report's order."""
    cpu = torch.device("cpu")
    flux, sd35 = dict(heads=24, head_dim=128), dict(heads=38, head_dim=64)
    qwen = dict(heads=24, head_dim=128)
    zimage = dict(heads=30, head_dim=128, n_txt=160, region_len=32, single_stream=True)
    out = [
        ("flux", "CPU fp32, FLUX dims (24 heads x 128), 1024 image + 256 text tokens, region prompts of 256 tokens",
         dict(device=cpu, dtype=torch.float32, n_img=1024, n_txt=256, region_len=256, all_blocks=0 if quick else 57, **flux)),
        ("sd35", "CPU fp32, SD3.5-L dims (38 heads x 64), 1024 image + 333 text tokens (77 CLIP + 256 T5), region prompts "
         "of 154 tokens",
         dict(device=cpu, dtype=torch.float32, n_img=1024, n_txt=333, region_len=154, **sd35)),
        ("qwen_image", QWEN_TITLE, dict(device=cpu, dtype=torch.float32, n_img=1024, n_txt=128, region_len=32, **qwen)),
        ("z_image", f"{ZIMAGE} (30 heads x 128, one joint stream), 1024 image (512x512) + {ZIMAGE_TEXT}",
         dict(device=cpu, dtype=torch.float32, n_img=1024, **zimage)),
    ]
    if not quick:
        out.append(("flux", "CPU fp32, FLUX dims, 4096 image + 512 text tokens (1024x1024), region prompts of 512 tokens; "
                    "the two main settings, 3 runs",
                    dict(device=cpu, dtype=torch.float32, n_img=4096, n_txt=512, region_len=512, quick=True, repeats=3, **flux)))
        out.append(("sd35", "CPU fp32, SD3.5-L dims, 4096 image + 333 text tokens (1024x1024), region prompts of 154 tokens; "
                    "the two main settings, 3 runs",
                    dict(device=cpu, dtype=torch.float32, n_img=4096, n_txt=333, region_len=154, quick=True, repeats=3, **sd35)))
        out.append(("z_image", f"{ZIMAGE}, 4096 image (1024x1024) + {ZIMAGE_TEXT}; the two main settings, 3 runs",
                    dict(device=cpu, dtype=torch.float32, n_img=4096, quick=True, repeats=3, **zimage)))
        # A size whose image tokens need pads (4096 has none): only what the pads change, with 2 regions.
        out.append(("z_image", f"{ZIMAGE}, 3952 image (832x1216: 76 x 52) + 16 image pad tokens (reference tokens, seen by "
                    f"every image and base-text token) + {ZIMAGE_TEXT}; the two main settings, 2 regions, 3 runs",
                    dict(device=cpu, dtype=torch.float32, n_img=76 * 52, n_ref=16, grid=(76, 52), region_counts=(2,),
                         quick=True, repeats=3, **zimage)))
        out.append(("flux", f"{CPU_BF16}, FLUX dims, 4096 image + 512 text tokens, region prompts of 512 tokens: the GPU "
                    "targets' shape and dtype on the CPU, for their memory (CPU bf16 timings are no GPU figures); the two "
                    "main settings, 3 runs",
                    dict(device=cpu, dtype=torch.bfloat16, n_img=4096, n_txt=512, region_len=512, quick=True, repeats=3,
                         **flux)))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        for dtype in (torch.float16, torch.bfloat16):
            name = str(dtype).replace("torch.", "")
            out.append(("flux", f"CUDA {name}, FLUX dims, 4096 image + 512 text tokens (1024x1024), region prompts of 512 "
                        "tokens",
                        dict(device=gpu, dtype=dtype, n_img=4096, n_txt=512, region_len=512, all_blocks=57, repeats=20, **flux)))
            out.append(("sd35", f"CUDA {name}, SD3.5-L dims, 4096 image + 333 text tokens (1024x1024), region prompts of 154 "
                        "tokens",
                        dict(device=gpu, dtype=dtype, n_img=4096, n_txt=333, region_len=154, repeats=20, **sd35)))
    return out


FAMILIES_MARKER = "families:cpu"
# Every family's own attention dims (heads x head size of its released checkpoints, one stream or two, its text length
# as ComfyUI's encoder gives it), each at 1024 image tokens (512x512 for 8x VAEs with patch 2 and 16 px latents;
# 1024x1024 for HunyuanImage 2.1's 32x VAE), so the families compare at one image size on this CPU. Region prompts are
# as long as the family's prompt when its encoder pads, else 32 tokens. (family, heads, head size, text tokens, region
# tokens, one stream, what the text is)
FAMILY_DIMS = (
    ("LongCat-Image", 24, 128, 512, 512, False, "Qwen2.5-VL prompt padded to 512"),
    ("Mage-Flow", 24, 128, 128, 32, False, "Qwen3-VL-4B prompt and closing template"),
    ("HunyuanImage 2.1", 28, 128, 128, 32, False, "Qwen2.5-VL prompt, 1024x1024 through its 32x VAE"),
    # Video: 1024 tokens are e.g. 4 latent frames of 16 x 16 tokens (a few frames of a 256 px clip); a 480p clip of
    # 73 frames is ~30k tokens, where the costs scale as the image tables' larger sizes show.
    ("HunyuanVideo 1.0", 24, 128, 128, 32, False, "LLaVA-Llama-3 prompt after its dropped template; 1024 video tokens"),
    ("HunyuanVideo 1.5", 16, 128, 128, 32, False, "Qwen2.5-VL prompt and byT5 glyphs; 1024 video tokens"),
    ("HiDream I1", 20, 128, 384, 384, False, "T5 128 + Llama 128 + the block's Llama layer 128"),
    ("Krea 2", 48, 128, 128, 32, True, "Qwen3-VL-4B prompt through its text adapter"),
    ("Ideogram 4", 18, 256, 128, 32, True, "Qwen3-VL-8B prompt"),
    ("AuraFlow", 12, 256, 264, 264, False, "8 register tokens + Pile-T5 padded to 256"),
    ("Lens", 24, 64, 128, 32, False, "GPT-OSS prompt after its dropped template"),
    ("JoyImage-Edit", 24, 128, 128, 32, False, "Qwen3-VL-8B prompt after its dropped template"),
    ("OmniGen2", 21, 120, 128, 32, True, "Qwen2.5-VL-3B prompt with its template"),
    ("Boogu", 28, 120, 128, 32, False, "Qwen3-VL-8B prompt with its template"),
)


def families_section(repeats=3, only=()) -> str:
    """The per-family table: the two main settings at each family's own dims (quick suites), in one run."""
    cpu = torch.device("cpu")
    parts = [f"## Families at their own dims\n\nMeasured in one run by `.venv/bin/python tests/benchmarks/run.py --families` "
             "(this section only; a full `make bench` runs it too): each "
             "family's heads x head size and text length, 1024 image tokens, CPU fp32, the two main settings, "
             f"{repeats} runs. Ratios are against plain attention at the same dims.\n"]
    for name, heads, head_dim, n_txt, region_len, one_stream, text in FAMILY_DIMS:
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        title = (f"CPU fp32, {name} ({heads} heads x {head_dim}, {'one joint stream' if one_stream else 'dual-stream'}),"
                 f" 1024 image + {n_txt} text tokens ({text}), region prompts of {region_len} tokens")
        print(title, flush=True)
        rows = run_suite(device=cpu, dtype=torch.float32, heads=heads, head_dim=head_dim, n_img=1024, n_txt=n_txt,
                         region_len=region_len, repeats=repeats, quick=True, single_stream=one_stream)
        parts.append(table(title, rows))
    return "\n".join(parts)


def selector_section(with_flex: bool) -> str:
    """The CPU selector table (FLUX dims, 2 and 4 regions), with its note."""
    import attention.paths as paths_module

    print(SELECTOR_TITLE, flush=True)
    candidates = paths_module.default_candidates()
    if not with_flex:
        candidates.pop(paths_module.FLEX)
    rows = sel.selector_suite(paths_module, API, torch.device("cpu"), torch.float32, heads=24, head_dim=128, n_img=1024,
                              n_txt=256, region_len=256, candidates=candidates)
    return sel.selector_table(SELECTOR_TITLE, rows, list(candidates)) + "\n" + SELECTOR_NOTE


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer suites, settings and repeats (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", help="where to write the report (default BENCHMARKS.md; with --family, print only "
                        "unless this is given)")
    parser.add_argument("--family", action="append", choices=FAMILIES + (HOST,),
                        help="run only the suites of this family (repeatable; `host`: the host-side table)")
    parser.add_argument("--selector", action="store_true",
                        help="only the CPU table of the path selector: rewrites its section of the report, nothing else")
    parser.add_argument("--no-flex", action="store_true", help="leave FlexAttention out of the selector table")
    parser.add_argument("--families", action="store_true",
                        help="only the table of every family at its own dims: rewrites its section, nothing else")
    parser.add_argument("--only", action="append", help="with --families: print only the tables of the families whose "
                        "names start with this (repeatable), to add a new family's rows without measuring the others")
    args = parser.parse_args()
    if args.families and args.only:  # a new family's rows, printed for its place in the section (nothing written)
        print(families_section(only=tuple(args.only)))
        return 0
    if args.families:
        output = Path(args.output or ROOT / "BENCHMARKS.md")
        section = families_section()
        if not args.no_write:
            output.write_text(sel.replace_section(output.read_text() if output.exists() else "", FAMILIES_MARKER, section))
            print(f"[bench] wrote the families section of {output}")
        return 0
    if args.selector:
        output = Path(args.output or ROOT / "BENCHMARKS.md")
        section = selector_section(not args.no_flex)
        if not args.no_write:
            output.write_text(sel.replace_section(output.read_text() if output.exists() else "", SELECTOR_MARKER, section))
            print(f"[bench] wrote the selector section of {output}")
        return 0
    if args.output is None and not args.family:
        args.output = str(ROOT / "BENCHMARKS.md")
    torch.manual_seed(0)
    sections, results = [], {}
    default_repeats = 3 if args.quick else 7
    for family, title, kw in suites(args.quick):
        if args.family and family not in args.family:
            continue
        print(title, flush=True)
        kw.setdefault("quick", args.quick)
        kw.setdefault("repeats", default_repeats)
        rows = run_suite(**kw)
        results[title] = {name: dict(ratio=ratio, floor=floor, peak=peak, kept=kept, kernels=kernel_ratio)
                          for name, _, ratio, floor, kept, peak, _, kernel_ratio in rows}
        sections.append(table(title, rows))
    host_rows = []
    if not args.family or HOST in args.family:
        print(HOST_TITLE, flush=True)
        host_rows = host_suite(repeats=10 if args.quick else 50)
        sections.append(host_table(host_rows))
    if not torch.cuda.is_available():
        sections.append("### CUDA\n\nNo GPU was available to this run; GPU figures are not recorded (none are estimated).\n")
    header = f"""# Benchmarks

Produced by `{COMMAND}` on {datetime.date.today().isoformat()}; every ratio is against plain fused attention
(`scaled_dot_product_attention` over the base text + image tokens, no region texts) measured in the same process.
The cases are defined once in `tests/benchmarks/cases.py`; `tests/benchmarks/test_bench_cases.py` (part of
`make test`) runs every engine case at small sizes against the dense float64 reference.

- machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}
- torch {torch.__version__}; CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}
- cases: one attention call of one block, batch 1 (a cond row), unless the name says otherwise; after a warm-up,
  each run of a case is paired with a plain-attention run right after it; "median ms" is the median of the case's
  runs, "vs plain" the median of the per-pair ratios, so machine drift cancels out. On the 2-core CI-class
  machine (a VM whose speed drifts by tens of percent over minutes) ratios still move by about +-10% between
  runs; compare cases within one run
- "exact-FLOP floor": query-key pairs an exact evaluation must touch, relative to plain (capture's recomputed
  text logits count half a pair: no value product). Region prompts add tokens (FLUX's T5 prompts are at least 256
  tokens in ComfyUI), and `base_ratio` adds a second softmax over [base ; image], so the defaults cannot reach
  plain cost exactly. "vs floor" (= vs plain / floor) is the engine's own overhead.
- "in attention kernels" (CPU): the time the case spent inside the fused attention kernel calls, as a ratio to
  the same plain run; the rest of "vs plain" is everything around them (gathers, combining parts, capture)
- host-side table: the same calls on tiny tensors, so what remains is Python and op dispatch; "host reads"
  count ops that copy a device value back to the host (each one stalls a GPU stream until it drains)
- kept memory: what the case holds between calls (the regional plan, the capture buffer, the dense mask of the
  baseline). Peak extra: the most bytes allocated at once during one run of the case, its output included
  (CPU: the profiler's allocation events; CUDA: the allocator's peak counter); compare with plain attention's row
- text scale multiplies the text stream before a block; the block's attention is then plain, so its row is that
  edit plus the call. Z-Image-Turbo's joint layers have one stream for text and image: there the edit is a copy of
  that stream with its text tokens scaled
- dims: each family's heads x head size and text length, named in each table's title. Z-Image-Turbo pads its caption
  and its image tokens to multiples of 32 with learned pad tokens: caption pads count as text, image pads are
  reference tokens (seen by every image and base-text token, as regional attention treats them); its 832x1216 table
  has 16 of them

## Targets (issues 4, 5, 8) and where they stand

{targets(results)}
{gap_analysis(results, host_rows)}
"""
    text = header + "\n".join(sections)
    if not args.family:
        text = sel.replace_section(text, SELECTOR_MARKER, selector_section(True))
        text = sel.replace_section(text, FAMILIES_MARKER, families_section())
    old = Path(args.output).read_text() if args.output and Path(args.output).exists() else ""
    if f"<!-- {GPU_MARKER}:start -->" in old:  # measured by make gpu-check on a GPU: kept until it runs again
        kept = old.split(f"<!-- {GPU_MARKER}:start -->", 1)[1].split(f"<!-- {GPU_MARKER}:end -->", 1)[0]
        text = sel.replace_section(text, GPU_MARKER, kept.strip("\n"))
    if args.output and not args.no_write:
        Path(args.output).write_text(text)
        print(f"[bench] wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
