"""Region LoRA against core's hook LoRAs: two regions, each with its own LoRA (issue 31, item 3).

One sampling run per way, in the real host on the CPU, at two model sizes: the tests' tiny FLUX.1 and FLUX.1's
dimensions (hidden 3072, 24 heads x 128, mlp ratio 4) at one double and one single block. Ways:
- the pack: Apply Regional Attention with two Region LoRA nodes, one model pass per step;
- core: Create Hook LoRA + Cond Set Props (a mask and a hook group per region prompt) beside the base prompt; core
  runs one pass per group of conditionings with different hooks, each LoRA over the whole image in its pass;
- the pack's regions without LoRAs, for scale.
Wall-clock seconds (after a warm-up run) and the peak of bytes allocated during the run (torch profiler allocation
events) go to BENCHMARKS.md's `region_lora` section; nothing is asserted.

Usage: .venv/bin/python tests/benchmarks/region_lora.py [--no-write]   (`make bench` runs it)
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak import peak_extra_bytes  # noqa: E402
from selector import replace_section  # noqa: E402

MARKER = "region_lora"
STEPS = 2


def _models():
    import comfy.supported_models

    import ja_tiny

    yield "tiny FLUX.1 (hidden 64, 2+2 blocks), 512 x 512", ja_tiny.tiny_flux(), 512
    cfg = dict(image_model="flux", in_channels=16, patch_size=2, out_channels=16, vec_in_dim=ja_tiny.POOLED_DIM,
               context_in_dim=ja_tiny.CONTEXT_DIM, hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=1,
               depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000, qkv_bias=True, guidance_embed=True)
    ja_tiny._as_detected(ja_tiny._flux_params(), cfg, {"txt_ids_dims": []})
    flux = ja_tiny._finish(comfy.supported_models.Flux, cfg, "flux", 16, 1, 1, 0)
    yield "FLUX.1 dims (hidden 3072, 24 x 128), 1+1 blocks, 256 x 256", flux, 256


def _ways(tiny, size):
    import comfy_extras.nodes_hooks as hooks_nodes

    import ja_lora
    from ja_compose import core_nodes
    from ja_nodes import run_node
    from ja_tiny import make_cond, sample
    from joint_attention_pack.nodes.region_lora import JointAttentionRegionLoRA
    from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

    core_nodes()
    base = tiny.patcher
    names = [ja_lora.write_lora(base, f"bench_{size}_{i}.safetensors", "comfy", seed=40 + i, rank=16) for i in range(2)]
    masks = torch.zeros(2, size, size)
    masks[0, :, : size // 2] = 1.0
    masks[1, :, size // 2:] = 1.0
    conds = [make_cond(tiny, seed=10 + i, n_tokens=16) for i in range(2)]
    pos, neg = make_cond(tiny, seed=1, n_tokens=16), make_cond(tiny, seed=2, n_tokens=16)
    kw = dict(seed=0, steps=STEPS, cfg=2.5, width=size, height=size)

    regions = None
    for i in range(2):
        regions = run_node(JointAttentionRegion, conds[i], masks[i:i + 1], 1.0, regions)[0]
    with_loras = regions
    for i in range(2):
        with_loras = run_node(JointAttentionRegionLoRA, with_loras, i + 1, names[i], 1.0, 0.0, 1.0)[0]

    def apply(r):
        return run_node(JointAttentionRegionalApply, base, r, 0.2, 0.0, 1.0, "all", "all", "restricted",
                        "background")[0]

    pack, plain = apply(with_loras), apply(regions)
    hooked = list(pos)
    for i in range(2):
        group = hooks_nodes.CreateHookLora().create_hook(names[i], 1.0, 0.0)[0]
        hooked += hooks_nodes.ConditioningSetProperties().set_properties(conds[i], 1.0, "default", masks[i:i + 1],
                                                                       group)[0]
    return {
        "Region LoRA (one pass)": lambda: sample(pack, pos, neg, **kw),
        "core hook LoRAs (Cond Set Props, pass per hook group)": lambda: sample(base, hooked, neg, **kw),
        "regions without LoRAs": lambda: sample(plain, pos, neg, **kw),
    }


def measure() -> str:
    import ja_host

    ja_host.boot()
    ja_host.load_pack()
    lines = []
    for title, tiny, size in _models():
        lines += [f"**{title}**, {STEPS} steps, cfg 2.5, two half-image regions with a rank-16 LoRA each:", "",
                  "| way | seconds per run | peak allocated (MiB) |", "|---|---|---|"]
        for way, run in _ways(tiny, size).items():
            run()  # warm-up: LoRA files read, plans made, hooks registered
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            peak = peak_extra_bytes(run, torch.device("cpu")) / 2**20
            lines.append(f"| {way} | {seconds:.3f} | {peak:.1f} |")
        lines.append("")
    header = (f"Region LoRA against core's hook LoRAs, measured {datetime.date.today()} on {platform.machine()} CPU "
              f"(torch {torch.__version__}, {torch.get_num_threads()} threads) by `tests/benchmarks/region_lora.py` "
              "(`make bench`), one run each after a warm-up, on a shared machine (wall-clock numbers vary).")
    return header + "\n\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = measure()
    print(body, file=sys.__stdout__)  # the host installs its own stdout logger on boot
    if not args.no_write:
        page = ROOT / "BENCHMARKS.md"
        page.write_text(replace_section(page.read_text(), MARKER, "## Region LoRA\n\n" + body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
