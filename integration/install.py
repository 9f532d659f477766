"""Installing the pack on a model: a clone with the pack's attention override, block hooks and wrappers.

Only official extension points are used, always on a clone:
- `transformer_options["optimized_attention_override"]` for attention (integration/override.py; chained to any
  override already installed);
- the family's block hooks (families/: `patches_replace["dit"]` block patches, or NextDiT's wrapped layer lists),
  which tell the dispatcher which block runs and let features edit block inputs (integration/blocks.py);
- an APPLY_MODEL wrapper that describes each forward and appends region texts to the context
  (integration/forward.py), and an OUTER_SAMPLE wrapper that holds the run's state;
- `transformer_options["patches"]["joint_attention"]`, which makes ComfyUI move the dispatcher's tensors with the
  model (`model_patches_to`).
"""
from __future__ import annotations

import logging
import threading
from functools import partial

import comfy.patcher_extension

from ..families import model_family
from .blocks import HOOKS
from .forward import apply_model_wrapper
from .options import OVERRIDE_KEY, PACK_KEY, RUN_KEY, find_dispatcher
from .override import AttentionOverride
from .runtime import MEMORY
from .workunits import install_callbacks as install_workunit_callbacks

log = logging.getLogger("joint_attention")


def install(model, modifier):
    """Return a clone of `model` whose dispatcher also runs `modifier`."""
    family = model_family(model)  # raises a clear error for unsupported models
    m = model.clone()
    # Newer ComfyUI copies model_options shallowly on clone: copy what we edit.
    options = dict(m.model_options.get("transformer_options", {}))
    m.model_options = {**m.model_options, "transformer_options": options}
    current = options.get(OVERRIDE_KEY)
    mine = find_dispatcher(options)
    if mine is not None:
        if current is not mine:
            log.warning(
                "[joint_attention] another attention override was installed after this pack's node; "
                "it keeps running around the pack's attention"
            )
        dispatcher = mine.with_modifier(modifier)
        dispatcher.previous = mine.previous if current is mine else current
    else:
        # One path selector per process: what it measured on this device serves every patched model.
        dispatcher = AttentionOverride([modifier], previous=current, paths=MEMORY.paths)
    options[OVERRIDE_KEY] = dispatcher
    patches = dict(options.get("patches", {}))
    patches[PACK_KEY] = [dispatcher]
    options["patches"] = patches
    family.hook_blocks(m, HOOKS)
    _install_wrappers(m)
    return m


class RunState:
    """Per-sampling-run data (captured maps, step caches), registered as lifetime "run".

    Released when the run ends, also when it raises or is interrupted."""

    def __init__(self, registry):
        self.items: dict = {}
        self.registry = registry
        self._on_success: list = []
        # MultiGPU work units run one step's forwards on several devices at once, in worker threads.
        self._lock = threading.RLock()
        registry.add_holder(self)

    def keep(self, key, value, owner: str, on_success=None):
        """Hold `value` for this run; `on_success` runs (before release) only if the run completes."""
        self.registry.track_all(value, owner, "run")
        with self._lock:
            self.items[key] = value
            if on_success is not None:
                self._on_success.append(on_success)
        return value

    def setdefault(self, key, factory, owner: str, on_success=None):
        """The value kept under `key`, made by `factory()` and kept if there is none yet; `on_success(value)`
        is registered with the value that was made, so it runs once however many threads asked at once."""
        with self._lock:
            if key in self.items:
                return self.items[key]
            value = factory()
            callback = None if on_success is None else partial(on_success, value)
            return self.keep(key, value, owner, on_success=callback)

    def succeeded(self):
        with self._lock:
            callbacks = list(self._on_success)
        for callback in callbacks:
            callback()

    def release(self, lifetime=None, owner=None):
        if lifetime in (None, "run"):
            with self._lock:
                self.items.clear()
                self._on_success.clear()


def _outer_sample_wrapper(executor, *args, **kwargs):
    guider = executor.class_obj
    run = RunState(MEMORY.registry)
    original = guider.model_options
    options = {**original.get("transformer_options", {}), RUN_KEY: run}
    guider.model_options = {**original, "transformer_options": options}
    try:
        output = executor(*args, **kwargs)
        run.succeeded()
        return output
    finally:
        guider.model_options = original
        run.release()


def _install_wrappers(m):
    wrappers = comfy.patcher_extension.WrappersMP
    for kind, fn in ((wrappers.APPLY_MODEL, apply_model_wrapper), (wrappers.OUTER_SAMPLE, _outer_sample_wrapper)):
        if not m.get_wrappers(kind, PACK_KEY):
            m.add_wrapper_with_key(kind, PACK_KEY, fn)
    detach = comfy.patcher_extension.CallbacksMP.ON_DETACH
    if not m.get_callbacks(detach, PACK_KEY):
        m.add_callback_with_key(detach, PACK_KEY, MEMORY.on_detach)
    install_workunit_callbacks(m)  # MultiGPU device clones (integration/workunits.py), where the host has them
