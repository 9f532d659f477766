"""ComfyUI's MultiGPU work units on whatever devices this machine has.

The host's own code runs unchanged: its node "MultiGPU CFG Split" (`comfy_extras/nodes_multigpu.py`,
which calls `comfy.multigpu.create_multigpu_deepclones`), `ModelPatcher.deepclone_multigpu`, and the
sampler's work-unit branch (`comfy.samplers._calc_cond_batch_multigpu`, one worker thread per device).
Only the host's device enumeration (`comfy.model_management.get_all_torch_devices`) is substituted, so
that a machine with one CPU (or one GPU) offers two devices: `torch.device("cpu")` and
`torch.device("cpu", 0)` are two devices to ComfyUI (distinct keys, distinct worker threads) and one
to torch.
"""
from __future__ import annotations

import importlib
import inspect
import threading
import uuid

import torch

from ja_nodes import run_node

CPU_PAIR = (torch.device("cpu"), torch.device("cpu", 0))


def twin(model):
    """The patched model over a second, freshly loaded copy of its weights: the same model options (the
    pack's dispatcher, modifiers, wrappers, callbacks), another BaseModel, as a MultiGPU device clone is.

    The host keeps per-run state on the BaseModel (`current_patcher`, set by `pre_run`, cleared by
    `cleanup`), so it cannot run one BaseModel in two samplers at once, with or without the pack; two
    threads sampling one patched model at once sample it over two copies of the weights. The copy comes
    from the model's `cached_patcher_init` (tests/support/ja_tiny.py sets it as the host's loaders do)."""
    init = getattr(model, "cached_patcher_init", None) or model.model.ja_reload
    fresh = init[0](*init[1])
    if "model_override" in inspect.signature(model.clone).parameters:  # ComfyUI 0.29: the host's own way
        made = model.clone(model_override=fresh.get_clone_model_override())
    else:  # 0.3.75: a clone, given the fresh model and its own (empty) backups, as match_multigpu_clones does
        made = model.clone()
        made.model = fresh.model
        made.backup, made.object_patches_backup = {}, {}
        for name, empty in (("backup_buffers", dict), ("hook_backup", dict), ("pinned", set)):
            if hasattr(made, name):
                setattr(made, name, empty())
    if hasattr(made, "clone_base_uuid"):
        made.clone_base_uuid = uuid.uuid4()  # other weights: never taken for a loaded clone of `model`
    return made


def work_units_missing() -> str:
    """Why this host has no MultiGPU work units, or "" when it has them."""
    import comfy.patcher_extension

    for module in ("comfy.multigpu", "comfy_extras.nodes_multigpu"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"this ComfyUI has no {module} (MultiGPU work units came with ComfyUI 0.29)"
    if not hasattr(comfy.patcher_extension.CallbacksMP, "ON_DEEPCLONE_MULTIGPU"):
        return "this ComfyUI has no ON_DEEPCLONE_MULTIGPU callback"
    return ""


def substitute_devices(monkeypatch, devices) -> None:
    """The host enumerates `devices` (and nothing else of it changes)."""
    import comfy.model_management

    listed = list(devices)

    def get_all_torch_devices(exclude_current=False):
        current = comfy.model_management.get_torch_device()
        return [d for d in listed if not (exclude_current and d == current)]

    monkeypatch.setattr(comfy.model_management, "get_all_torch_devices", get_all_torch_devices)


def cfg_split(model, max_gpus: int = 2):
    """The model through the host's "MultiGPU CFG Split" node."""
    nodes = importlib.import_module("comfy_extras.nodes_multigpu")
    return run_node(nodes.MultiGPUCFGSplitNode, model, max_gpus)[0]


def unload_all() -> None:
    import comfy.model_management

    comfy.model_management.unload_all_models()


class ForwardLog:
    """An APPLY_MODEL wrapper (the host's public wrapper API) that writes down, per model forward, the
    thread, the work-unit device the host gave it (`transformer_options["multigpu_thread_device"]`, None
    outside work units) and the row kinds (`cond_or_uncond`)."""

    KEY = "ja_test_forward_log"

    def __init__(self):
        self.lock = threading.Lock()
        self.forwards: list = []

    def attach(self, patcher):
        import comfy.patcher_extension

        patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, self.KEY, self)
        return self

    def __call__(self, executor, *args, **kwargs):
        options = kwargs.get("transformer_options")
        if options is None and len(args) > 5:
            options = args[5]
        options = options or {}
        device = options.get("multigpu_thread_device")
        with self.lock:
            self.forwards.append((threading.current_thread().name, None if device is None else str(device),
                                  tuple(options.get("cond_or_uncond") or ())))
        return executor(*args, **kwargs)

    def clear(self):
        with self.lock:
            self.forwards.clear()
