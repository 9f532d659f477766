"""Peak memory of one call, for the benchmarks (run.py, gpu.py, region_lora.py).

A module of its own: region_lora.py runs in the real host and cannot import run.py, which puts the repository root
on sys.path (its `nodes` package would shadow ComfyUI's)."""
from __future__ import annotations

import contextlib
import os
import sys

import torch


@contextlib.contextmanager
def quiet_native_stderr():
    """The profiler's native start/stop log lines go straight to fd 2; keep the bench output readable."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_extra_bytes(fn, device):
    """Peak of the bytes allocated while `fn` runs, above what was allocated before (its outputs
    included). CUDA: the allocator's peak counter. CPU: allocation events of the profiler."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import profile

    with quiet_native_stderr(), profile(profile_memory=True) as prof:
        fn()
    events = []

    def walk(node):
        if type(node.extra_fields).__name__ == "_ExtraFields_Allocation" and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    live = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        live += size
        peak = max(peak, live)
    return peak
