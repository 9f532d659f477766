"""Region LoRAs: each LoRA's term added on its region's tokens only, in the one model pass.

A LoRA changes a linear layer `y = f(x)` into `y = f(x) + h(x)`. Here the layers a region LoRA targets are wrapped
through the patcher's injections (`ModelPatcher.set_injections`, on the clone; the weights are never merged or
copied) so that `y = f(x) + sum_k w_k(token) * h_k(x)`: `w_k` is the weight of LoRA k's region on each token
(attention/token_weights.py: mask x strength on image tokens, 1 on the region's own text, 0 elsewhere), times the
LoRA's strength, on positive rows and inside the LoRA's step window only.

`h` is the host's own adapter math where the host has the bypass form (`comfy.weight_adapter.bypass`, ComfyUI 0.29
on: LoRA, LoHa, LoKr, ... as the host loads them); on hosts without it, plain LoRA (up, down, alpha, optional mid),
and other adapter kinds are refused by name. DoRA rescales the whole merged weight, which no per-token term can
express: refused on every host.

Linear layers get no `transformer_options`, so the forward's state reaches them through a context variable the
APPLY_MODEL wrapper sets around the model call (each thread, MultiGPU workers included, sets its own).
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import importlib.util
import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from ..attention.blocks import BlockSelectionError, parse_blocks
from ..attention.forward import COND
from ..attention.regional import forward_token_masks
from ..attention.token_weights import SHARED, region_weights, stream_layout, stream_weights

log = logging.getLogger("joint_attention")

INJECTION_KEY = "joint_attention_region_lora"
_FORWARD = contextvars.ContextVar("joint_attention_region_lora_forward", default=None)
_PREFIX = "diffusion_model."


@contextlib.contextmanager
def forward_context(state):
    """The forward's state for the wrapped layers below, while the model runs."""
    token = _FORWARD.set(state)
    try:
        yield
    finally:
        _FORWARD.reset(token)


@dataclass(frozen=True)
class RegionLoRA:
    """What the Region LoRA node puts on a region: a LoRA file, its strength, its step window (percent of the
    schedule) and its blocks (selections as the Apply node's double_blocks / single_blocks read them). The Apply node
    turns the window into sigmas and the selections into blocks with its model."""

    name: str
    path: str
    strength: float
    start_percent: float = 0.0
    end_percent: float = 1.0
    double_blocks: str = "all"
    single_blocks: str = "all"
    # A LoRA state dict already in memory (core's Create Hook LoRA holds the file's tensors), read instead of `path`.
    state_dict: Optional[dict] = field(default=None, compare=False, repr=False)


class RegionLoRAError(ValueError):
    pass


def host_has_bypass() -> bool:
    """Whether the host ships the bypass form of its weight adapters (every adapter kind gives its term h(x))."""
    return importlib.util.find_spec("comfy.weight_adapter.bypass") is not None


def _host_term(adapter):
    """The host adapter's additive term on its own (bypass form), or why it has none."""
    from comfy.weight_adapter.base import WeightAdapterBase

    kind = type(adapter)
    if kind.g is not WeightAdapterBase.g or kind.bypass_forward is not WeightAdapterBase.bypass_forward:
        return None, f"{kind.__name__} transforms the layer's output as a whole (no additive term per token)"
    if kind.h is WeightAdapterBase.h:
        return None, f"{kind.__name__} has no additive term"
    term = copy.copy(adapter)  # the host sets these on its hook; here they are this layer's, on our own copy
    term.multiplier, term.is_conv, term.conv_dim, term.kw_dict = 1.0, False, 0, {}
    return term, ""


def _plain_lora(adapter):
    """(up, down, scale, mid) of a plain LoRA, or why it is not one."""
    kind = type(adapter).__name__
    weights = getattr(adapter, "weights", None)
    if kind != "LoRAAdapter" or not isinstance(weights, (tuple, list)) or len(weights) < 4:
        return None, (f"it is a {kind}; this ComfyUI has no bypass adapters (0.29 and later do), so region LoRAs take "
                      "plain LoRA files here")
    up, down, alpha, mid = weights[:4]
    reshape = weights[5] if len(weights) > 5 else None
    if reshape is not None:
        return None, "it reshapes the layer's weight"
    rank = down.shape[0]
    scale = (float(alpha) / rank) if alpha is not None else 1.0
    return (up.flatten(1), down.flatten(1), scale, None if mid is None else mid.flatten(1)), ""


class _Term:
    """One LoRA's term on one layer: the region it belongs to, its strength, its window, the output slice."""

    def __init__(self, region: int, strength: float, window: tuple, out_slice, host_term=None, plain=None):
        self.region, self.strength, self.window, self.out_slice = region, strength, window, out_slice
        self.host_term, self.plain = host_term, plain
        self._on: dict = {}  # (device, dtype) -> the term's tensors there

    def tensors(self) -> list:
        if self.plain is not None:
            return [t for t in self.plain if torch.is_tensor(t)]
        weights = getattr(self.host_term, "weights", ())
        return [t for t in (weights if isinstance(weights, (tuple, list)) else (weights,)) if torch.is_tensor(t)]

    def _moved(self, device, dtype, registry):
        key = (str(device), dtype)
        found = self._on.get(key)
        if found is None:
            def move(t):
                return (t.to(device=device, dtype=dtype) if torch.is_tensor(t) else t)
            if self.plain is not None:
                up, down, scale, mid = self.plain
                found = (move(up), move(down), scale, move(mid))
                tensors = [t for t in found if torch.is_tensor(t)]
            else:
                found = copy.copy(self.host_term)
                weights = found.weights
                found.weights = type(weights)(move(w) for w in weights) if isinstance(weights, (tuple, list)) else move(weights)
                tensors = [t for t in (found.weights if isinstance(found.weights, (tuple, list)) else (found.weights,))
                           if torch.is_tensor(t)]
            if registry is not None:
                for t in tensors:
                    registry.track(t, "region_lora:weights", "patch")
            found = self._on.setdefault(key, found)
        return found

    def __call__(self, x, base_out, registry):
        moved = self._moved(x.device, x.dtype, registry)
        if self.plain is None:
            return moved.h(x, base_out)
        up, down, scale, mid = moved
        hidden = F.linear(x, down)
        if mid is not None:
            hidden = F.linear(hidden, mid)
        return F.linear(hidden, up) * scale

    def release(self):
        self._on.clear()


class RegionLoRALayers:
    """The region LoRAs of one model: their terms per wrapped layer, and the injection that wraps the layers."""

    def __init__(self, regions, terms: dict, roles: dict, registry=None):
        self.regions = regions  # the regions, in the order of the regional modifier (token_weights' region index)
        self.terms = terms  # layer path -> [_Term]
        self.roles = roles  # layer path -> role
        self.registry = registry
        self._wrapped: dict = {}  # layer path -> (module, forward it had)
        if registry is not None:
            registry.add_holder(self)
            for layer in terms.values():
                for term in layer:
                    for t in term.tensors():
                        registry.track(t, "region_lora:weights", "patch")

    def __deepcopy__(self, memo):
        return self  # immutable after construction; 0.3.75 deep-copies model_options

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.terms.values() for term in layer
                   for t in term.tensors())

    def injection(self):
        import comfy.patcher_extension

        return comfy.patcher_extension.PatcherInjection(inject=self.inject, eject=self.eject)

    def inject(self, model_patcher):
        dm = model_patcher.model.diffusion_model
        for path in self.terms:
            if path in self._wrapped:
                continue
            module = dm.get_submodule(path)
            original = module.forward
            module.forward = _WrappedForward(self, path, original)
            self._wrapped[path] = (module, original)

    def eject(self, model_patcher):
        for module, original in self._wrapped.values():
            module.forward = original
        self._wrapped.clear()

    def release(self, lifetime=None, owner=None):
        if lifetime in (None, "patch") and owner in (None, "region_lora:weights"):
            for layer in self.terms.values():
                for term in layer:
                    term.release()

    # -- per forward -------------------------------------------------------------------------------------------------
    def weights(self, state, term: _Term, role: str, length: int, rows: int):
        """[rows, length] weights of `term`'s region on the tokens a layer of `role` sees; None when zero."""
        high, low = term.window
        if not low <= state.sigma <= high:
            return None
        kinds = state.row_kinds
        if len(kinds) != rows:
            raise RegionLoRAError(f"a layer saw a batch of {rows} rows, the forward has {len(kinds)}")
        if COND not in kinds:
            return None
        cache = state.owned(self, dict)
        key = (term.region, role, length, rows)
        found = cache.get(key)
        if found is None:
            layout = stream_layout(state.layout_for, state.n_context, state.n_img, role, length)
            region = self.regions[term.region]
            per_item = {}
            out = []
            for kind, item in zip(kinds, state.row_items or (0,) * rows):
                if kind != COND:
                    out.append(torch.zeros(length, device=state.device))
                    continue
                if item not in per_item:
                    tm = forward_token_masks([region.mask], state, item, state.device)[0]
                    per_item[item] = stream_weights(region_weights(layout, term.region, tm * region.strength), layout,
                                                    role)
                out.append(per_item[item])
            found = cache[key] = torch.stack(out)
        return found


class _WrappedForward:
    """A wrapped layer's forward: the layer's own output plus each region LoRA's term times its token weights."""

    def __init__(self, owner: RegionLoRALayers, path: str, original):
        self.owner, self.path, self.original = owner, path, original

    @torch.compiler.disable
    def __call__(self, x, *args, **kwargs):
        out = self.original(x, *args, **kwargs)
        state = _FORWARD.get()
        if state is None:
            return out  # the model runs outside a patched forward (no regions): the plain layer
        role = self.owner.roles[self.path]
        if x.ndim != 3:
            raise RegionLoRAError(f"[Region LoRA] layer {self.path} got input of shape {tuple(x.shape)}; region LoRAs "
                                  "wrap layers over token sequences [batch, tokens, features]")
        added = None
        for term in self.owner.terms[self.path]:
            try:
                w = self.owner.weights(state, term, role, x.shape[1], x.shape[0])
            except ValueError as exc:
                raise RegionLoRAError(f"[Region LoRA] layer {self.path}: {exc}") from None
            if w is None:
                continue
            if added is None:
                added = out.clone()
            target = added[..., term.out_slice]
            target += term(x, target, self.owner.registry) * (w * term.strength).to(out.dtype)[..., None]
        return out if added is None else added


# -- building the terms from LoRA files ---------------------------------------------------------------------------------
def load_adapters(model, lora: RegionLoRA) -> dict:
    """The host's adapters of a LoRA for `model`'s diffusion model: {weight key: adapter}. A file is loaded as core's
    LoRA loader loads it (same key map, same format conversion); a hook's state dict as core's weight hooks load it
    (same key map, no conversion)."""
    import comfy.lora
    import comfy.utils

    state_dict = lora.state_dict
    if state_dict is None:
        state_dict = comfy.utils.load_torch_file(lora.path, safe_load=True)
        convert = getattr(__import__("comfy.lora_convert").lora_convert, "convert_lora", None)
        if convert is not None:
            state_dict = convert(state_dict)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    return comfy.lora.load_lora(state_dict, key_map, log_missing=False)


def hook_loras(hooks) -> tuple:
    """The region LoRAs of core's HOOKS on a region's prompt (Create Hook LoRA / Create Hook LoRA (MO), put on the
    conditioning by Cond Set Props or a hooked CLIP): (RegionLoRAs, "") or ((), why they cannot act per token).

    Core applies a conditioning's hooks while it evaluates that conditioning; on a region that is the region's
    tokens, which is what a region LoRA does. Scheduled hooks (keyframes) are refused: the Region LoRA node's
    start_percent / end_percent set the steps."""
    from comfy.hooks import WeightHook

    out = []
    for i, hook in enumerate(getattr(hooks, "hooks", None) or ()):
        label = f"hook {i + 1} ({type(hook).__name__})"
        if not isinstance(hook, WeightHook):
            return (), (f"carries {label}, which is not a LoRA hook; region prompts take LoRA hooks only (Create Hook "
                        "LoRA); put other hooks on the main prompt")
        if not hook.need_weight_init or not isinstance(hook.weights, dict):
            return (), (f"carries {label} with whole model weights (Create Hook Model as LoRA), which no per-token "
                        "term can apply; use a LoRA file (Create Hook LoRA or the Region LoRA node)")
        keyframes = getattr(getattr(hook, "hook_keyframe", None), "keyframes", ())
        if keyframes:
            return (), (f"carries {label} with {len(keyframes)} scheduled keyframe(s), which region LoRAs do not "
                        "follow; remove the keyframes and set the steps with a Region LoRA node's start_percent / "
                        "end_percent (or load the LoRA there)")
        strength = float(hook.strength_model)  # its own strength times the keyframes' factor, 1 without keyframes
        if strength != 0.0:
            out.append(RegionLoRA(f"Create Hook LoRA {i + 1}", "", strength, state_dict=hook.weights))
    return tuple(out), ""


def build_layers(node: str, model, family, regions, sigma_of, registry=None):
    """RegionLoRALayers for the LoRAs the regions carry, or None when none acts (all at strength 0).

    `sigma_of(percent)` converts a step window. A LoRA's keys in blocks its selections leave out are not applied.
    Refused, naming the LoRA and the keys: keys of layers whose output every token of a stream shares (modulation) or
    outside the blocks, adapter kinds with no per-token term, DoRA."""
    dm = family.diffusion_model(model)
    n_double, n_single = family.block_counts(dm)
    bypass = host_has_bypass()
    terms: dict = {}
    roles: dict = {}
    for r, region in enumerate(regions):
        for lora in region.adapters:
            if lora.strength == 0.0:
                continue
            adapters = load_adapters(model, lora)
            if not adapters:
                raise RegionLoRAError(f"[{node}] input 'regions': LoRA {lora.name!r} (region {r + 1}) has no key for "
                                      "this model's diffusion model; choose a LoRA trained for this model")
            window = (float(sigma_of(lora.start_percent)), float(sigma_of(lora.end_percent)))
            chosen = _chosen_blocks(node, lora, r, n_double, n_single)
            shared, outside, kinds = [], [], []
            for key, adapter in adapters.items():
                name, out_slice = key, slice(None)
                if isinstance(key, tuple):
                    name, offset = key[0], key[1]
                    if offset is not None:
                        dim, start, size = offset[:3]
                        if dim != 0:
                            kinds.append(f"{name} (a slice along input features)")
                            continue
                        out_slice = slice(start, start + size)
                if not name.startswith(_PREFIX) or not name.endswith(".weight"):
                    outside.append(name)
                    continue
                path = name[len(_PREFIX):-len(".weight")]
                block = family.adapter_block(path)
                if block is not None and block not in chosen:
                    continue  # a block the LoRA's selection leaves out: the layer keeps its own weights there
                role = family.adapter_role(path, dm)
                if role == SHARED:
                    shared.append(path)
                    continue
                if role is None:
                    outside.append(path)
                    continue
                if isinstance(adapter, tuple):
                    kinds.append(f"{path} (a full-weight '{adapter[0]}' patch)")
                    continue
                if any(k.endswith(".dora_scale") for k in getattr(adapter, "loaded_keys", ())):
                    kinds.append(f"{path} (DoRA rescales the merged weight as a whole)")
                    continue
                host_term, plain, why = None, None, ""
                if bypass:
                    host_term, why = _host_term(adapter)
                else:
                    plain, why = _plain_lora(adapter)
                if host_term is None and plain is None:
                    kinds.append(f"{path} ({why})")
                    continue
                terms.setdefault(path, []).append(_Term(r, float(lora.strength), window, out_slice, host_term, plain))
                roles[path] = role
            _refuse(node, lora, r, family, shared, outside, kinds)
    if not terms:
        return None
    return RegionLoRALayers(tuple(regions), terms, roles, registry)


def _chosen_blocks(node, lora, r, n_double, n_single) -> frozenset:
    """{("double" | "single", index)} the LoRA's block selections choose on this model."""
    chosen = set()
    for kind, text, count in (("double", lora.double_blocks, n_double), ("single", lora.single_blocks, n_single)):
        what = f"{kind}_blocks"
        if not count and (text or "").strip().lower() not in ("", "all", "none", "odd", "even"):
            raise RegionLoRAError(f"[{node}] input 'regions': LoRA {lora.name!r} (region {r + 1}) has {what} "
                                  f"{text!r}, but this model has no {kind} blocks; set it to all or none on its "
                                  "Region LoRA node")
        try:
            chosen.update((kind, i) for i in parse_blocks(text, count, what))
        except BlockSelectionError as exc:
            raise RegionLoRAError(f"[{node}] input 'regions': LoRA {lora.name!r} (region {r + 1}): {exc}; fix it on "
                                  "its Region LoRA node") from None
    return frozenset(chosen)


def _listed(keys) -> str:
    keys = sorted(set(keys))
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _refuse(node, lora, r, family, shared, outside, kinds):
    where = f"[{node}] input 'regions': LoRA {lora.name!r} (region {r + 1})"
    if not family.adapter_roles:
        raise RegionLoRAError(f"{where}: region LoRAs are not mapped for {family.name} models yet (which layers act "
                              "on image, text or joint tokens); load the LoRA globally with the LoRA loader instead")
    if shared:
        raise RegionLoRAError(f"{where} targets modulation layers ({_listed(shared)}), whose output every token of a "
                              "stream shares (it comes from the timestep and pooled text), so no per-token weight can "
                              "keep it inside the region; use a LoRA trained without them (most trainers' default "
                              "for attention and MLP layers), or load this one globally with the LoRA loader")
    if outside:
        raise RegionLoRAError(f"{where} targets layers with no per-token role ({_listed(outside)}): layers outside "
                              "the transformer blocks, which run before the region's tokens are told apart, or layers "
                              "that see tokens out of sequence (routed experts); use a LoRA trained on the blocks' "
                              "attention and MLP layers, or load this one globally with the LoRA loader")
    if kinds:
        raise RegionLoRAError(f"{where} has keys a per-token term cannot apply: {_listed(kinds)}; use a plain LoRA "
                              "(or, on ComfyUI 0.29 and later, LoHa / LoKr), or load this one globally")


def sigma_converter(model):
    sampling = model.get_model_object("model_sampling")
    return lambda percent: sampling.percent_to_sigma(percent) if percent > 0 else math.inf
