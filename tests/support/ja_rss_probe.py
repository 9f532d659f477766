"""Peak resident memory of one pack operation, measured in a fresh process.

Usage: python ja_rss_probe.py SCENARIO [ARG]  -> prints one JSON line {"extra_peak": bytes, ...}

The process boots the host and prepares the inputs, then resets the kernel's peak-RSS mark
(/proc/self/clear_refs "5"), runs the operation and reads VmHWM: the peak is the operation's own,
whatever happened before. Run by tests/nodes/test_memory_bounds.py.
"""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ja_host  # noqa: E402
from ja_nodes import run_node  # noqa: E402


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(run):
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    result = run()
    peak = _status("VmHWM")
    return peak - before, result


def canvas(n_regions: int, size: int):
    import torch

    from ja_tiny import tiny_clip
    from joint_attention_pack.nodes import canvas_state
    from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas

    clip = tiny_clip()
    g = torch.Generator().manual_seed(0)
    cells = size // canvas_state.CELL
    drawn = []
    for i in range(n_regions):
        mask = torch.zeros(cells, cells)
        y, x = torch.randint(0, cells // 2, (2,), generator=g).tolist()
        mask[y:y + cells // 3, x:x + cells // 3] = 1
        drawn.append({"prompt": f"region {i}", "mask": mask})
    value = canvas_state.encode_value(size, size, drawn)
    run_node(JointAttentionRegionCanvas, clip, 64, 64, value)  # warm up code paths at a small size
    extra, out = measure(lambda: run_node(JointAttentionRegionCanvas, clip, size, size, value))
    masks = out.args[1]
    return {"extra_peak": extra, "masks_bytes": masks.numel() * masks.element_size(),
            "regions": len(out.args[0])}


def words(count: int):
    from ja_tiny import build, sample, tiny_clip
    from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps

    clip = tiny_clip()
    tiny = build("flux")
    prompt = "a sunny meadow"
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    model, handle = run_node(JointAttentionCapture, tiny.patcher, "all", "all", 0.0, 1.0)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=128, height=128)
    text = ",".join(["sunny"] * count)
    extra, out = measure(lambda: run_node(JointAttentionMaps, handle, {"samples": latent}, text, "", clip, prompt))
    return {"extra_peak": extra, "maps": int(out.args[1].shape[0])}


if __name__ == "__main__":
    ja_host.boot()
    ja_host.load_pack()
    scenario, *args = sys.argv[1:]
    numbers = [int(a) for a in args]
    print(json.dumps({"canvas": canvas, "words": words}[scenario](*numbers)))
