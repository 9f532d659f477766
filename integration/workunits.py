"""ComfyUI's MultiGPU work units (core `comfy/multigpu.py`, node "MultiGPU CFG Split") and the pack.

With work units the sampler deep-clones the model once per extra device
(`ModelPatcher.deepclone_multigpu`) and runs the forwards of each step on all devices at once, in
worker threads: typically the cond rows on the first device and the uncond rows on the second. Every
device's forward reads the sampling `transformer_options` of the main model, so all devices share
the patched model's one dispatcher, its modifiers and the run's state. That is correct by
construction, not by copying:

- the dispatcher never holds device tensors and never moves anything: its `to(device)` (ComfyUI's
  `model_patches_to` / `cast_transformer_options`, called per device and per forward) returns it
  unchanged, and the modifiers' tensors (region masks and texts) stay on the CPU where the nodes made
  them. What a device needs (token masks, plans, region texts) is derived into the pack's bounded
  cache keyed by device, once per device, and only read afterwards;
- caches and per-run state are safe under concurrent use (attention/memory.py, attention/regional.py
  plan growth, integration/install.py RunState, attention/capture.py per-device capture buffers).

The host's callbacks for device clones (`CallbacksMP.ON_DEEPCLONE_MULTIGPU`,
`ON_MATCH_MULTIGPU_CLONES`, ComfyUI 0.29 and later; feature-detected, absent on 0.3.75) make sure a
device clone carries the main model's dispatcher itself (never a copy that a later node or host change
could make diverge) and record which devices a patched model runs on (`work_unit_devices`).
"""
from __future__ import annotations

import logging
import threading
import weakref

from ..families import family_of_base
from .options import OVERRIDE_KEY, PACK_KEY, find_dispatcher

log = logging.getLogger("joint_attention")

CALLBACK_NAMES = ("ON_DEEPCLONE_MULTIGPU", "ON_MATCH_MULTIGPU_CLONES")

_lock = threading.Lock()
_devices: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # dispatcher -> set of device names


def host_has_work_units() -> bool:
    """True when the host offers the device-clone callbacks (ComfyUI's MultiGPU work units)."""
    import comfy.patcher_extension

    return all(hasattr(comfy.patcher_extension.CallbacksMP, name) for name in CALLBACK_NAMES)


def work_unit_devices(dispatcher) -> list:
    """The devices device clones of models patched with `dispatcher` were made for (sorted names)."""
    with _lock:
        return sorted(_devices.get(dispatcher, ()))


def _dispatcher_of(patcher):
    return find_dispatcher(patcher.model_options.get("transformer_options"))


def _share_dispatcher(main, clone) -> None:
    """The clone's transformer_options point at the main model's dispatcher (the same object), and its
    device is recorded."""
    mine = _dispatcher_of(main)
    if mine is None:
        return
    options = clone.model_options.get("transformer_options")
    if options is None:
        return
    theirs = _dispatcher_of(clone)
    if theirs is not mine:
        # The host copied the model options some other way than ComfyUI 0.29 does: point them back.
        options = dict(options)
        patches = dict(options.get("patches", {}))
        patches[PACK_KEY] = [mine]
        options["patches"] = patches
        if options.get(OVERRIDE_KEY) is theirs:
            options[OVERRIDE_KEY] = mine
        clone.model_options = {**clone.model_options, "transformer_options": options}
    with _lock:
        _devices.setdefault(mine, set()).add(str(clone.load_device))


def _rebind(clone) -> None:
    """Hooks that hold layers (Z-Image / Lumina-2's wrapped layer lists) wrap the device clone's own layers."""
    family = family_of_base(getattr(clone, "model", None))
    if family is not None:
        family.rebind(clone)


def on_deepclone_multigpu(main, clone) -> None:
    _share_dispatcher(main, clone)
    _rebind(clone)


def on_match_multigpu_clones(main, clone) -> None:
    _share_dispatcher(main, clone)
    _rebind(clone)


def install_callbacks(patcher) -> None:
    """Add the pack's device-clone callbacks to a patched model; nothing on hosts without work units."""
    if not host_has_work_units():
        return
    import comfy.patcher_extension

    callbacks = comfy.patcher_extension.CallbacksMP
    for name, fn in (("ON_DEEPCLONE_MULTIGPU", on_deepclone_multigpu),
                     ("ON_MATCH_MULTIGPU_CLONES", on_match_multigpu_clones)):
        kind = getattr(callbacks, name)
        if not patcher.get_callbacks(kind, PACK_KEY):
            patcher.add_callback_with_key(kind, PACK_KEY, fn)
