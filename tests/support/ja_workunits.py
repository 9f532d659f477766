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
from ja_regions import cell_masks, regions_for
from ja_tiny import make_cond, patcher
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

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


# The host's bookkeeping of loaded models: one process-wide list (`current_loaded_models`) that these walk by index
# and edit. ComfyUI calls them from one thread (it runs one prompt at a time; MultiGPU worker threads only run
# forwards), so they take no lock: two samplers loading models at once can walk a list the other shrinks (seen on
# ComfyUI 0.29: IndexError in free_memory). `serialize_model_loading` gives them one lock for a test that samples in
# two threads at once; the forwards, and everything of the pack, stay concurrent.
_MODEL_BOOKKEEPING = ("load_models_gpu", "load_model_gpu", "free_memory", "loaded_models", "cleanup_models_gc",
                      "cleanup_models", "unload_all_models", "unload_model_and_clones")


def serialize_model_loading(monkeypatch) -> None:
    import comfy.model_management as mm

    lock = threading.RLock()

    def locked(fn):
        def call(*args, **kwargs):
            with lock:
                return fn(*args, **kwargs)
        return call

    for name in _MODEL_BOOKKEEPING:
        if hasattr(mm, name):
            monkeypatch.setattr(mm, name, locked(getattr(mm, name)))


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


def patched(tiny, capture=True, mixed_masks=False):
    """Regions (soft masks; with `mixed_masks` one at the image's size and one at the token grid's) + TACA
    (+ capture over every block and step). Returns (model, capture handle or None)."""
    pixels, cells = cell_masks(True)
    if mixed_masks:
        regions = None
        for i, mask in enumerate((pixels[0:1], cells.reshape(2, 4, 6)[1:2])):
            cond = make_cond(tiny, seed=10 + i, n_tokens=5 + i)
            regions = run_node(JointAttentionRegion, cond, mask, 1.0 + i, regions)[0]
    else:
        regions, _ = regions_for(tiny, pixels, [1.0, 2.0])
    single = "odd" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.3, 0.0, 0.6, "all", single,
                     "restricted", "background")[0]
    model = run_node(JointAttentionTACA, model, 1.4, 0.5, "both", "all", "all" if tiny.n_single else "none")[0]
    if not capture:
        return model, None
    model, handle = run_node(JointAttentionCapture, model, "all", "all" if tiny.n_single else "none", 0.0, 1.0)
    return model, handle


def prompts(tiny):
    """Positive and negative conditioning, made anew for every sampling call (threads share no host object
    they need not share). Threads sampling at once also pass noise made beforehand (`ja_tiny.noise_for`):
    the host's `prepare_noise` seeds torch's global generator, so two threads making their noise at once
    can swap it (seen on ComfyUI 0.29 without this pack: 3 of 40 rounds)."""
    return make_cond(tiny, seed=1), make_cond(tiny, seed=2)


def shared_tensors(model) -> list:
    """The tensors every clone of `model` shares: the regions' masks and texts, as the modifier holds them."""
    from joint_attention_pack.attention.regional import RegionalModifier
    from joint_attention_pack.integration.options import find_dispatcher

    dispatcher = find_dispatcher(model.model_options["transformer_options"])
    regional = next(m for m in dispatcher.modifiers if isinstance(m, RegionalModifier))
    return [t for r in regional.regions for t in (r.mask, r.tokens)]


def fingerprint(tensors) -> list:
    return [(t.device, t.data_ptr(), t._version, t.clone()) for t in tensors]


def assert_untouched(tensors, before) -> None:
    for t, (device, ptr, version, data) in zip(tensors, before):
        assert t.device == device  # not moved
        assert t.data_ptr() == ptr  # not given new storage
        assert t._version == version  # not written in place (torch counts every in-place write)
        assert torch.equal(t, data)
