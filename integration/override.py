"""The pack's attention in ComfyUI's `optimized_attention_override` slot.

The override reads the forward and block the pack's hooks put into `transformer_options`, asks the dispatcher whether
any feature changes the call (None: the host's own attention runs, bit-identical), and chains to an override that
was in the slot before the pack (still called exactly once per attention call).
"""
from __future__ import annotations

import logging
import math
from functools import partial

import torch

from ..attention.dispatcher import JointAttentionDispatcher
from ..attention.forward import ATTENTION
from ..families import named
from . import override_slot, reach
from .options import BLOCK_KEY, FORWARD_KEY, KEYS_KEY, RECORD_KEY, REFINER_KEY

log = logging.getLogger("joint_attention")

# torch.compile: the override reads per-step Python state, so it runs eagerly (see integration/blocks.py).
_outside_compile = torch.compiler.disable


def normalise_qkv(args, kwargs):
    """q, k, v as [B,H,L,D] whatever ComfyUI's caller passed (FLUX: [B,H,L,D] with skip_reshape;
    SD3: [B,L,H*D] with heads), keys and values with as many heads as the queries."""
    q, k, v = args[0], args[1], args[2]
    heads = args[3] if len(args) > 3 else kwargs.get("heads")
    if not kwargs.get("skip_reshape", False):
        b = q.shape[0]
        q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    if kwargs.get("enable_gqa") and k.shape[1] != q.shape[1]:
        # Grouped-query attention (OmniGen2 on newer hosts): each key / value head serves consecutive query heads,
        # as the host's kernels read `enable_gqa` (older hosts repeat the heads before the call, the same way).
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    return q, k, v


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
        if keys is not None:  # the ConceptAttention stream (integration/concepts.py)
            args = keys(args, kwargs)
        state = options.get(FORWARD_KEY)
        block = options.get(BLOCK_KEY)
        if state is not None and not options.get(REFINER_KEY):
            reach.reached(state, ATTENTION if block is not None else reach.UNNAMED, block)
        if state is not None and block is not None and self.modifiers:
            seq = 2 if kwargs.get("skip_reshape", False) else 1
            total = args[0].shape[seq]
            plan = self.plan(state, block, total)
            family = named(state.family)
            # The mask comes as a keyword (FLUX, SD3) or as the fifth argument (NextDiT, Qwen-Image); one the family
            # knows masks nothing in this forward (Lens) is no mask.
            mask = args[4] if len(args) > 4 else kwargs.get("mask")
            if plan is not None and mask is not None and not family.open_call_mask(state):
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
                if family.image_first(state, block):
                    impl = partial(text_moved_first, impl, state.n_context)
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


def text_moved_first(impl, n_text: int, *args, **kwargs):
    """Run `impl` (the pack's attention, which reads every call as [text ; image]) on a call over [image ; text]:
    q, k, v with their last `n_text` tokens moved first, and the output moved back to the caller's order. Each
    query's attention is over the same keys either way."""
    seq = 2 if kwargs.get("skip_reshape", False) else 1

    def text_first(t):
        n_img = t.shape[seq] - n_text
        return torch.cat([t.narrow(seq, n_img, n_text), t.narrow(seq, 0, n_img)], dim=seq)

    out = impl(*(text_first(t) for t in args[:3]), *args[3:], **kwargs)
    dim = 2 if kwargs.get("skip_output_reshape", False) else 1
    n_img = out.shape[dim] - n_text
    return torch.cat([out.narrow(dim, n_text, n_img), out.narrow(dim, 0, n_text)], dim=dim)


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
