"""Adapter between the pure-torch dispatcher and ComfyUI's ModelPatcher.

Only official extension points are used, always on a clone:
- `transformer_options["optimized_attention_override"]` for attention (chained to any
  override already installed);
- `patches_replace["dit"]` block patches, which tell the dispatcher which block runs
  (portable: SD3 never sets `block_index`) and let modifiers edit block inputs;
- an APPLY_MODEL wrapper that describes each forward (layout, rows, sigma) and appends
  region texts to the context;
- `transformer_options["patches"]["joint_attention"]`, which makes ComfyUI move the
  dispatcher's tensors with the model (`model_patches_to`).
"""
from __future__ import annotations

import logging
import math
import threading
from functools import partial

import comfy.patcher_extension
import torch

from ..attention.dispatcher import JointAttentionDispatcher
from ..attention.forward import ATTENTION, BLOCKS, COND, BlockRef, ForwardState, TextStream
from ..attention.regional import MaskBatchMismatch
from . import nextdit, override_slot, reach
from .families import block_counts, family_of_base, model_family
from .options import (  # noqa: F401 (the keys are part of host's interface for the nodes)
    BLOCK_KEY,
    DIFFUSION_MODEL_KEY,
    FORWARD_KEY,
    KEYS_KEY,
    OVERRIDE_KEY,
    PACK_KEY,
    POOLED_KEY,
    RECORD_KEY,
    REFINER_KEY,
    find_dispatcher,
)
from .runtime import MEMORY
from .workunits import install_callbacks as install_workunit_callbacks

log = logging.getLogger("joint_attention")

def model_text(model_patcher, tokens: torch.Tensor, options: dict) -> torch.Tensor:
    """`tokens` [T, C] as the model sees a prompt with these tokens: run through the sampler's own
    conditioning path (`encode_model_conds` -> the model's `extra_conds`), which e.g. left-pads FLUX.2
    text to 512 tokens. Returns `tokens` itself when the model leaves text unchanged."""
    import comfy.sampler_helpers
    import comfy.samplers

    base = model_patcher.model
    channels = getattr(base.latent_format, "latent_channels", 4)
    noise = torch.zeros(1, channels, 8, 8)
    conds = comfy.sampler_helpers.convert_cond([[tokens[None], dict(options)]])
    conds = comfy.samplers.encode_model_conds(base.extra_conds, conds, noise, torch.device("cpu"), "positive")
    seen = conds[0]["model_conds"].get("c_crossattn")
    seen = getattr(seen, "cond", None)
    if not torch.is_tensor(seen) or seen.ndim != 3 or seen.shape[-1] != tokens.shape[-1]:
        return tokens
    seen = seen[0].to(tokens.dtype)
    return tokens if seen.shape == tokens.shape and torch.equal(seen, tokens) else seen


def normalise_qkv(args, kwargs):
    """q, k, v as [B,H,L,D] whatever ComfyUI's caller passed (FLUX: [B,H,L,D] with skip_reshape;
    SD3: [B,L,H*D] with heads)."""
    q, k, v = args[0], args[1], args[2]
    heads = args[3] if len(args) > 3 else kwargs.get("heads")
    if kwargs.get("skip_reshape", False):
        return q, k, v
    b = q.shape[0]
    return tuple(t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))


# torch.compile (core's TorchCompileModel compiles the whole diffusion model): the pack's hooks read per-step Python
# state (sigma, windows, counters), which traced code would specialise on, recompiling every step (and 0.29's guard
# filter drops guards on transformer_options, so a specialised trace could even be reused for the wrong step). The
# hooks run eagerly instead; the blocks they call are compiled as usual (recursive=False: only the hook's own frame).
_outside_compile = torch.compiler.disable
_outside_compile_only_this_frame = partial(torch.compiler.disable, recursive=False)


class AttentionOverride(JointAttentionDispatcher):
    """The dispatcher in ComfyUI's `optimized_attention_override` slot: reads the forward and block
    the pack's hooks put into `transformer_options`, and chains to an override that was there before
    (which is still called exactly once per attention call).

    ComfyUI 0.3.75 deep-copies model_options on every clone: copies return the same object, so no
    tensor is duplicated per clone."""

    def __init__(self, modifiers=(), kernels=None, previous=None, paths=None):
        super().__init__(modifiers, kernels, paths)
        self.previous = previous
        # (override, True) when `previous` is an attention backend (core's Model Attention Backend placed before the
        # pack's nodes, or an override seen computing attention itself on a planned call): planned calls skip it.
        self._backend = (None, False)
        self._in_front = (None, None)  # (core backend found after the pack's nodes, this dispatcher in front of it)

    def with_modifier(self, modifier):
        made = super().with_modifier(modifier)
        made.previous = self.previous
        return made

    def in_front_of(self, backend):
        """This dispatcher with `backend` (core's Model Attention Backend, written into the slot after the pack's
        nodes) as the override below it: the pack's planned calls run the pack's attention, every other call runs
        the backend's kernel. Made once per backend."""
        found, made = self._in_front
        if found is not backend:
            made = AttentionOverride(self.modifiers, kernels=self.kernels, previous=backend, paths=self.paths)
            made._backend = (backend, True)
            self._in_front = (backend, made)
        return made

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    # ComfyUI's patch protocol (model_patches_to / model_patches_models). Region data stays where the
    # node made it (CPU); device copies live in the pack's bounded cache, keyed by device.
    def to(self, device):
        return self

    def models(self):
        return []

    @_outside_compile
    def __call__(self, func, *args, **kwargs):
        impl = func
        options = kwargs.get("transformer_options") or {}
        keys = options.get(KEYS_KEY)
        if keys is not None:  # the ConceptAttention stream (nodes/concepts.py)
            args = keys(args, kwargs)
        state = options.get(FORWARD_KEY)
        block = options.get(BLOCK_KEY)
        if state is not None and not options.get(REFINER_KEY):
            reach.reached(state, ATTENTION if block is not None else reach.UNNAMED, block)
        if state is not None and block is not None and self.modifiers:
            seq = 2 if kwargs.get("skip_reshape", False) else 1
            total = args[0].shape[seq]
            plan = self.plan(state, block, total)
            # The mask comes as a keyword (FLUX, SD3) or as the fifth argument (NextDiT, Qwen-Image).
            if plan is not None and (args[4] if len(args) > 4 else kwargs.get("mask")) is not None:
                log.warning("[joint_attention] the model passed its own attention mask; the pack leaves this call as is")
                plan = None
            extra_keys = cached_reference_keys(state, options, total, args[1].shape[seq]) if plan is not None else 0
            if extra_keys:  # the layout of the keys: the queries' own, then the cached reference tokens
                plan = self.plan(state, block, total + extra_keys)
            if plan is not None and args[1].shape[seq] != total + extra_keys:
                # Keys the queries do not have, other than cached reference keys: the pack's layout would be
                # wrong, and skipping would silently drop the feature.
                raise more_keys_than_queries(self.modifiers, block, args[1].shape[seq], total)
            if plan is not None:
                impl = partial(self._host_attention, plan, len(state.row_kinds), extra_keys)
        if impl is func:
            out = self.previous(func, *args, **kwargs) if self.previous is not None else func(*args, **kwargs)
        else:
            out = self._planned(impl, args, kwargs)
        recorder = options.get(RECORD_KEY)
        if recorder is not None:
            recorder(out)  # reads only: the output goes on unchanged
        return out

    def _planned(self, impl, args, kwargs):
        """A call the pack changes: through the override found before the pack when that one calls what it is given
        (a wrapper: called once, as without the pack), else the pack's attention alone."""
        previous = self.previous
        if previous is None:
            return impl(*args, **kwargs)
        known, is_backend = self._backend
        if known is not previous:
            is_backend = override_slot.is_core_backend(previous)
            self._backend = (previous, is_backend)
        if is_backend:
            return impl(*args, **kwargs)
        tracked = override_slot.CallTracker(impl)
        out = previous(tracked, *args, **kwargs)
        if tracked.called:
            return out
        # The override below computed attention with its own kernel and dropped the pack's changes (returning `out`
        # would silently be a plain image). It is a backend: from now on the pack's planned calls skip it, and every
        # call the pack leaves alone still runs its kernel.
        self._backend = (previous, True)
        log.info("[joint_attention] %s computes attention itself; the pack's nodes use their own attention for the "
                 "calls they change and leave it every other call", override_slot.describe(previous))
        return impl(*args, **kwargs)

    def _host_attention(self, plan, n_rows, extra_keys, *args, **kwargs):
        q, k, v = normalise_qkv(args, kwargs)
        if n_rows != q.shape[0]:
            raise RuntimeError(f"[joint_attention] batch of {q.shape[0]} rows but {n_rows} row kinds")
        # ComfyUI 0.3.75 ignores `scale=` (callers pre-scale q); honour it when given.
        scale = kwargs.get("scale") or 1.0 / math.sqrt(q.shape[-1])
        n_queries = q.shape[2]
        if extra_keys:
            # Cached reference keys without their queries: the engine runs the keys' layout, with zero queries
            # standing in for the reference rows. Each row's attention is its own, so the real rows' outputs are
            # those of the keys' layout; the stand-in rows are dropped.
            q = torch.cat([q, q.new_zeros(q.shape[0], q.shape[1], extra_keys, q.shape[3])], dim=2)
        out = self.attend(plan, q, k, v, scale)
        if extra_keys:
            out = out[:, :, :n_queries]
        if kwargs.get("skip_output_reshape", False):
            return out
        b, h, length, d = out.shape
        return out.transpose(1, 2).reshape(b, length, h * d)


def cached_reference_keys(state, options: dict, n_queries: int, n_keys: int) -> int:
    """How many keys past the queries are cached reference-image keys, 0 when there are none or others.

    Core's Flux KV Cache (experimental, 0.29+) drops the reference image's tokens from the queries from its second
    step on and appends their keys and values cached at the first step after the queries' own: the keys then have
    the layout [text ; region texts ; image ; reference] of a call with the reference tokens, the queries the same
    without the reference. Recognised when the queries hold no reference tokens and the extra keys are exactly the
    reference tokens the host names (`reference_image_num_tokens`)."""
    extra = n_keys - n_queries
    if extra <= 0 or options.get(KEYS_KEY) is not None:  # ConceptAttention's stream: its own layout
        return 0
    named = options.get("reference_image_num_tokens") or ()
    layout = state.layout_for(n_queries)
    if layout is None or layout.n_ref != 0 or sum(int(n) for n in named) != extra:
        return 0
    return extra


def more_keys_than_queries(modifiers, block, n_keys: int, n_queries: int) -> ValueError:
    """The error for an attention call with keys its queries do not have, other than cached reference-image keys
    (`cached_reference_keys`), naming the pack's nodes on the model."""
    nodes = ", ".join(dict.fromkeys(reach.node_of(m) for m in modifiers))
    return ValueError(
        f"[{nodes}] input 'model': block {block.kind} {block.index} attends {n_keys} keys with {n_queries} queries: "
        "another node adds keys to attention that are not the reference image's cached keys (which the pack "
        "supports, e.g. core's Flux KV Cache), so this pack's nodes cannot place them; remove that node from the "
        "model, or sample without this pack's nodes")


class BlockPatch:
    """`patches_replace["dit"]` entry: names the block for the dispatcher, lets modifiers edit the
    block's text stream, then runs the block (or a foreign patch found there)."""

    def __init__(self, ref: BlockRef, inner=None):
        self.ref = ref
        self.inner = inner

    def __deepcopy__(self, memo):
        return self

    @_outside_compile_only_this_frame
    def __call__(self, args, extra):
        options = args.get("transformer_options") or {}
        dispatcher = find_dispatcher(options)
        state = options.get(FORWARD_KEY)
        args = dict(args)
        args["transformer_options"] = {**options, BLOCK_KEY: self.ref}
        active = dispatcher is not None and state is not None
        if active:
            reach.reached(state, BLOCKS, self.ref)
            # FLUX double / SD3 joint blocks get the text as "txt"; FLUX single blocks one joint
            # stream in "img" whose first n_context tokens are the text.
            key = "txt" if args.get("txt") is not None else "img"
            stop = args[key].shape[1] if key == "txt" else state.n_context
            text = TextStream(args[key], 0, stop)
            if dispatcher.edit_text(state, self.ref, text) == "skip":
                reach.reached(state, reach.SKIPPED, self.ref)
                return {k: args[k] for k in ("img", "txt") if k in args}
            args[key] = text.tensor
            if state.region_lens and state.data.get(RENUMBER_KEY) and torch.is_tensor(args.get("pe")):
                args["pe"] = region_text_rope(state, args["pe"])
            dispatcher.before_block(state, self.ref, args)
        output = self.inner(args, extra) if self.inner is not None else extra["original_block"](args)
        if active:
            dispatcher.after_block(state, self.ref, args, extra["original_block"], output)
        return output


def _rows(options, batch: int) -> tuple:
    """(kind, item) of every batch row: ComfyUI stacks one chunk of the image batch per cond/uncond."""
    chunks = options.get("cond_or_uncond") or [COND]
    per = max(batch // len(chunks), 1)
    kinds = tuple(kind for kind in chunks for _ in range(per))[:batch]
    items = tuple(i for _ in chunks for i in range(per))[:batch]
    return kinds, items


def _apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
    transformer_options = transformer_options if transformer_options is not None else {}
    dispatcher = find_dispatcher(transformer_options)
    if dispatcher is None or not dispatcher.modifiers or c_crossattn is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    base = executor.class_obj
    family = family_of_base(base)
    if family is None:  # the model was swapped for another kind under the pack's patches
        raise reach.PackNotReached(reach.unknown_model(dispatcher.modifiers, base))
    dm = base.diffusion_model
    patch = family.patch_size(dm)
    rows, cols = -(-x.shape[-2] // patch), -(-x.shape[-1] // patch)
    n_double, n_single = family.block_counts(dm)
    sigmas = transformer_options.get("sigmas")
    sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float(t.max())
    kinds, items = _rows(transformer_options, x.shape[0])
    state = ForwardState(
        family=family.name,
        n_context=c_crossattn.shape[1],
        n_txt=c_crossattn.shape[1],
        region_lens=(),
        n_img=rows * cols,
        grid=(rows, cols),
        row_kinds=kinds,
        row_items=items,
        sigma=sigma,
        n_double=n_double,
        n_single=n_single,
        latent_hw=(x.shape[-2], x.shape[-1]),
        patch=patch,
        latent_px=family.latent_pixels(base),
        run=transformer_options.get(RUN_KEY),
    )
    state.device = x.device
    if family.padded_caption:
        if kwargs.get("ref_latents"):
            nodes = ", ".join(dict.fromkeys(reach.node_of(m) for m in dispatcher.modifiers))
            raise ValueError(
                f"[{nodes}] input 'model': the conditioning carries reference images for Z-Image (omni reference "
                "latents), which this pack's nodes do not support on Z-Image; remove the reference latents from the "
                "conditioning, or sample without this pack's nodes")
        state.n_txt = state.n_context = nextdit.padded(state.n_txt, nextdit.pad_multiple(dm))
    state.data[RENUMBER_KEY] = family.text_rope_by_index
    state.data[POOLED_KEY] = kwargs.get("y")  # FLUX.1 / SD3 pooled text vector (ConceptAttention's concept stream)
    state.data[DIFFUSION_MODEL_KEY] = dm
    try:
        extra = dispatcher.begin_forward(state)
    except MaskBatchMismatch as exc:
        raise ValueError(f"[Region (mask + prompt)] input 'mask': {exc}") from None
    if extra is not None:
        if kwargs.get("attention_mask") is not None:
            # Qwen-Image on newer hosts passes a text padding mask when the prompt has padded tokens; region texts
            # appended after it would break the model's mask, and a masked call is one the pack leaves alone.
            raise ValueError(
                "[Apply Regional Attention] input 'model': the prompt's conditioning carries a text padding mask "
                "(attention_mask), which regional prompting cannot combine with; encode the prompt on its own "
                "(one text, no batched prompts of different lengths)")
        if extra.shape[-1] != c_crossattn.shape[-1]:
            raise ValueError(
                f"[joint_attention] region conditioning has {extra.shape[-1]} features per token but the "
                f"model's text conditioning has {c_crossattn.shape[-1]}: encode region prompts with the "
                "same text encoder (CLIP loader) as the main prompt"
            )
        tokens = extra.to(device=c_crossattn.device, dtype=c_crossattn.dtype)
        if family.padded_caption:
            c_crossattn = nextdit.layout_context(state, c_crossattn, tokens, nextdit.pad_multiple(dm))
        else:
            c_crossattn = torch.cat([c_crossattn, tokens.unsqueeze(0).expand(c_crossattn.shape[0], -1, -1)], dim=1)
            state.n_context = c_crossattn.shape[1]
    options = {**transformer_options, FORWARD_KEY: state}
    found = transformer_options.get(OVERRIDE_KEY)
    if found is not dispatcher and override_slot.is_core_backend(found):
        # Core's Model Attention Backend was applied after the pack's nodes and took the slot: the pack goes back in
        # front of it for this forward (its kernel still runs every call the pack leaves alone). Any other override
        # that replaced the pack's is left in place, and the reach check stops the run if the pack's features lost.
        options[OVERRIDE_KEY] = dispatcher.in_front_of(found)
    if state.region_lens and family.block_hooks == "dit":
        patches = options.get("patches") or {}
        options["patches"] = {**patches, "post_input": list(patches.get("post_input", ())) + [RegionTextPositions(state)]}
    output = executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
    try:
        reach.check(dispatcher.modifiers, state)  # a feature that should have acted but was never reached stops the run
    except reach.PackNotReached as exc:
        if found is None or found is dispatcher or options.get(OVERRIDE_KEY) is not found:
            raise
        raise reach.PackNotReached(f"{exc} The attention override in use is {override_slot.describe(found)}, "
                                   "applied after this pack's nodes.") from None
    return output


RUN_KEY = "joint_attention_run"

class RegionTextPositions:
    """FLUX `post_input` patch: each region text gets the text positions it would have as the prompt alone.

    The host numbers text tokens along the whole context (FLUX.2: a rope axis counts 0..T-1), so
    appended region texts would read as a continuation of the base prompt. Positions of a text
    depend only on the token's index, so region r's tokens take the ids of positions 0..T_r-1.
    The host computed ids for every index of the context (base text and all region texts), so
    rows 0..T_r-1 of its ids exist even when a region text is longer than the base text; they
    are read from the host's ids, never from the copy being written (a region text longer than
    the base text would otherwise read rows already renumbered). Base text and image ids are
    unchanged. FLUX.1 / Chroma ids are all zero: a no-op there."""

    def __init__(self, state: ForwardState):
        self.state = state

    def __call__(self, args):
        host_ids = args.get("txt_ids")
        state = self.state
        if host_ids is None or host_ids.ndim != 3 or host_ids.shape[1] != state.n_context:
            return args
        txt_ids = host_ids.clone()
        start = state.n_txt
        for length in state.region_lens:
            txt_ids[:, start:start + length] = host_ids[:, :length]
            start += length
        state.data[IDS_RENUMBERED_KEY] = True  # the rope table the host builds from these ids is right as it is
        return {**args, "txt_ids": txt_ids}


RENUMBER_KEY = "joint_attention_renumber"  # ForwardState.data entry: the family numbers text rope rows by index
PE_KEY = "joint_attention_pe"  # ForwardState.data entry: (the host's rope table, the one with region rows renumbered)
IDS_RENUMBERED_KEY = "joint_attention_ids_renumbered"  # ForwardState.data entry: RegionTextPositions ran this forward


def region_text_rope(state: ForwardState, pe: torch.Tensor) -> torch.Tensor:
    """The block's rope table (`pe`, sequence on dim 2: [B, 1, L, ...]) with each region text's rows
    taken from rows 0..T_r-1, the positions the text has as the prompt alone (Qwen-Image numbers text
    positions from `txt_start` along the whole context, and the host has no `post_input` patch before
    0.29). Base text, image and reference rows are the host's own. Rope tables hold one row per
    position, so a copied row equals the row the host computes for that position. Made once per
    forward: every block gets the same table.

    Where the host has a `post_input` patch for this family (Qwen-Image from 0.29 on), RegionTextPositions
    already gave the region texts their own positions and the host built the table from those ids: rows
    0..T_r-1 past the base text are then region rows, not positions, and the table is returned as it is."""
    if pe.ndim < 3 or pe.shape[2] < state.n_context or state.data.get(IDS_RENUMBERED_KEY):
        return pe
    cached = state.data.get(PE_KEY)
    if cached is not None and cached[0] is pe:
        return cached[1]
    fixed = pe.clone()
    start = state.n_txt
    for length in state.region_lens:
        fixed[:, :, start:start + length] = pe[:, :, :length]
        start += length
    state.data[PE_KEY] = (pe, fixed)
    return fixed


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
    if family.block_hooks == "layer_lists":
        nextdit.install(m, family.diffusion_model(m))
    else:
        _install_block_patches(m)
    _install_wrappers(m)
    return m


def _install_block_patches(m):
    n_double, n_single = block_counts(m)
    existing = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for kind, count, offset in (("double", n_double, 0), ("single", n_single, n_double)):
        for i in range(count):
            key = (f"{kind}_block", i)
            found = existing.get(key)
            if isinstance(found, BlockPatch):
                continue
            m.set_model_patch_replace(BlockPatch(BlockRef(kind, i, offset + i), inner=found), "dit", f"{kind}_block", i)


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
    for kind, fn in ((wrappers.APPLY_MODEL, _apply_model_wrapper), (wrappers.OUTER_SAMPLE, _outer_sample_wrapper)):
        if not m.get_wrappers(kind, PACK_KEY):
            m.add_wrapper_with_key(kind, PACK_KEY, fn)
    detach = comfy.patcher_extension.CallbacksMP.ON_DETACH
    if not m.get_callbacks(detach, PACK_KEY):
        m.add_callback_with_key(detach, PACK_KEY, MEMORY.on_detach)
    install_workunit_callbacks(m)  # MultiGPU device clones (nodes/workunits.py), where the host has them
