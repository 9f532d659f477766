"""The benchmark's cases, shared by `make bench` (run.py) and the exactness test (test_bench_cases.py).

Pure torch. The pack's `attention` package is passed in (`Api`), so the same case
definitions run against `attention.*` in the benchmark process and against the pack as
ComfyUI loaded it in the test suite. Every case that goes through the pack's engine
carries a `Check`: what the dense float64 reference needs to recompute its result.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

SETTINGS_ALL = [(ia, gp, br) for ia in ("restricted", "open") for gp in ("background", "everywhere") for br in (0.0, 0.2)]
SETTINGS_QUICK = [("restricted", "background", 0.2), ("open", "background", 0.0)]
DEFAULTS = ("restricted", "background", 0.2)
TACA_GAMMA = 1.2
TEXT_SCALE = 1.5


class Api:
    """The pack's pure-torch modules, imported under `prefix` ("attention" or the loaded pack's name)."""

    def __init__(self, prefix: str):
        joint = importlib.import_module(f"{prefix}.joint")
        self.CallSpec, self.joint_attention = joint.CallSpec, joint.joint_attention
        self.with_gamma = importlib.import_module(f"{prefix}.taca").with_gamma
        self.CaptureObserver = importlib.import_module(f"{prefix}.capture").CaptureObserver
        self.KernelSelector = importlib.import_module(f"{prefix}.kernels").KernelSelector
        self.TokenLayout = importlib.import_module(f"{prefix}.layout").TokenLayout
        self.RegionalPlan = importlib.import_module(f"{prefix}.regional").RegionalPlan
        self.CaptureSink = importlib.import_module(f"{prefix}.capture").CaptureSink
        self.TextScaleModifier = importlib.import_module(f"{prefix}.text_scale").TextScaleModifier
        self.Gate = importlib.import_module(f"{prefix}.gate").Gate
        forward = importlib.import_module(f"{prefix}.forward")
        self.BlockRef, self.ForwardState, self.TextStream = forward.BlockRef, forward.ForwardState, forward.TextStream

    def spec(self, texts_unread=True, structure=None, gamma=1.0, sink=None, step=None):
        """The call spec the features' modifiers contribute: region texts placed or unread, a regional plan,
        TACA's gamma, a capture's sink."""
        observers = (self.CaptureObserver(sink, step),) if sink is not None else ()
        return self.CallSpec(texts_unread, structure, self.with_gamma((), gamma), observers)


@dataclass
class Check:
    """Inputs of an engine case, for the dense reference (ja_reference.dense_attention)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    layout: object
    masks: Optional[torch.Tensor] = None
    settings: tuple = DEFAULTS
    gamma: float = 1.0
    sink: object = None  # CaptureSink the case writes its maps to (reset before checking)
    isolate: bool = False  # region texts isolated (the uncond rows of a regional run)
    calls: int = 1
    output: Callable = None  # one call of the engine with the case's spec -> [B,H,L,D]


@dataclass
class Case:
    name: str
    fn: Callable  # the timed work
    pairs: int  # query-key pairs an exact evaluation must touch (the FLOP floor's numerator)
    kept: str = ""  # memory the case keeps between calls (plan, buffer, mask)
    calls: int = 1  # attention calls inside `fn`; the plain denominator runs as many
    check: Optional[Check] = None
    skipped: str = ""  # why the case did not run (the row is still reported)
    extra: dict = field(default_factory=dict)


def region_masks(n, grid):
    """n vertical stripes covering the image (hard masks on the token grid)."""
    rows, cols = grid
    m = torch.zeros(n, rows, cols)
    for r in range(n):
        m[r, :, r * cols // n:(r + 1) * cols // n] = 1.0
    return m.reshape(n, -1)


def pair_count_regional(layout, masks, image_attention, global_prompt, base_ratio):
    """q-k pairs an exact block-sparse evaluation must touch (the FLOP floor), for hard masks.
    Reference tokens (`layout.n_ref`) are visible to base text, image and reference queries."""
    n_img, n_txt, n_ref, lens = layout.n_img, layout.n_txt, layout.n_ref, layout.region_lens
    cover = masks > 0
    pairs = (n_txt + n_ref) * (n_txt + n_img + n_ref)  # base text and reference queries
    for r, length in enumerate(lens):
        pairs += length * (length + int(cover[r].sum()))
    for i in range(n_img):
        regions = cover[:, i]
        keys = sum(lens[r] for r in range(len(lens)) if regions[r])
        full = bool((masks[:, i] >= 1).any())
        sees_t0 = global_prompt == "everywhere" or not full
        if image_attention == "open":
            allowed = n_img
        else:
            allowed = int((cover[regions].any(0)).sum()) if regions.any() else int((~cover.any(0)).sum())
        if base_ratio > 0:
            keys += n_txt + n_img + n_ref  # the base softmax spans [T0 ; I ; F]
        else:
            keys += allowed + n_ref + (n_txt if sees_t0 else 0)
        pairs += keys
    return pairs


def cases(api: Api, device, dtype, heads, head_dim, n_img, n_txt, region_len, quick=False, all_blocks=0,
          region_counts=(2, 4), dense_limit=2 * 2**30, seed=0, n_ref=0, grid=None, single_stream=False):
    """Yields the cases of one suite. `all_blocks`: attention calls of one model forward for the
    "capture of all blocks" case (0 leaves it out). `n_ref`: reference tokens after the image (always
    visible; Z-Image's image pad tokens are these). `grid`: the image token grid, square by default.
    `single_stream`: the text is the first tokens of one joint stream (FLUX single blocks, NextDiT's
    joint layers), so text scale edits that stream, not a text stream of its own.
    Cases that run the pack's engine carry its kernel selector in `extra["kernels"]` (the benchmark
    times the kernel calls inside a case)."""
    grid = tuple(grid) if grid else (int(math.isqrt(n_img)),) * 2
    if grid[0] * grid[1] != n_img:
        raise ValueError(f"grid {grid} does not hold {n_img} image tokens")
    kernels = api.KernelSelector()
    for case in _suite(api, kernels, device, dtype, heads, head_dim, n_img, n_txt, region_len, quick, all_blocks,
                       region_counts, dense_limit, seed, n_ref, grid, single_stream):
        if case.check is not None:
            case.extra["kernels"] = kernels
        yield case


def _suite(api, kernels, device, dtype, heads, head_dim, n_img, n_txt, region_len, quick, all_blocks, region_counts,
           dense_limit, seed, n_ref, grid, single_stream):
    scale = 1.0 / math.sqrt(head_dim)
    g = torch.Generator().manual_seed(seed)

    def qkv(total):
        return [torch.randn(1, heads, total, head_dim, generator=g).to(device, dtype) for _ in range(3)]


    def engine(q, k, v, layout, spec):
        return lambda: api.joint_attention(q, k, v, layout, spec, kernels, scale)

    plain_layout = api.TokenLayout(n_txt, n_img, n_ref, (), grid)
    plain_pairs = plain_layout.total ** 2
    q0, k0, v0 = qkv(plain_layout.total)
    plain = lambda: F.scaled_dot_product_attention(q0, k0, v0)  # noqa: E731
    yield Case("plain attention", plain, plain_pairs)

    spec = api.spec(gamma=TACA_GAMMA)
    yield Case(f"TACA (gamma {TACA_GAMMA})", engine(q0, k0, v0, plain_layout, spec), plain_pairs,
               check=Check(q0, k0, v0, plain_layout, gamma=TACA_GAMMA, output=engine(q0, k0, v0, plain_layout, spec)))

    # Text scale edits the text stream before a block; the block's attention is then plain.
    # Its cost is that edit: the text stream [B, n_txt, heads * head_dim] scaled (single stream: a copy of
    # the joint stream [B, L, heads * head_dim] with its text tokens scaled), plus the call.
    def hidden(n_context, total):
        return torch.randn(1, total if single_stream else n_context, heads * head_dim, generator=g).to(device, dtype)

    txt_stream = hidden(n_txt, plain_layout.total)
    text_scale = api.TextScaleModifier(api.Gate(numbers=frozenset({0})), TEXT_SCALE, "scale", None)
    state = api.ForwardState("flux", n_txt, n_txt, (), n_img, grid, (0,), 1.0, 1, 0)
    block = api.BlockRef("double", 0, 0)

    def scaled_then_plain():
        stream = api.TextStream(txt_stream, 0, n_txt)  # the text's first n_txt tokens (all of a text stream)
        text_scale.edit_text(state, block, stream)
        return stream.tensor, plain()

    yield Case(f"text scale (x{TEXT_SCALE} before the block)", scaled_then_plain, plain_pairs,
               extra={"text_scale": (text_scale, state, block, txt_stream)})

    # Capture recomputes the logits of image rows on text keys (q.k, no value product): half an
    # attention pair each in the floor.
    sink = api.CaptureSink(n_img, device)
    spec = api.spec(sink=sink)
    yield Case("capture (attention maps) of the call", engine(q0, k0, v0, plain_layout, spec), plain_pairs + n_img * n_txt // 2,
               f"{n_img * n_txt * 4 / 2**20:.1f} MiB buffer",
               check=Check(q0, k0, v0, plain_layout, sink=sink, output=engine(q0, k0, v0, plain_layout, spec)))
    if all_blocks:
        sink_blocks = api.CaptureSink(n_img, device)
        spec = api.spec(sink=sink_blocks)
        one = engine(q0, k0, v0, plain_layout, spec)

        def every_block():
            for _ in range(all_blocks):
                one()

        yield Case(f"capture of all blocks ({all_blocks} calls into one buffer)", every_block,
                   all_blocks * (plain_pairs + n_img * n_txt // 2), f"{n_img * n_txt * 4 / 2**20:.1f} MiB buffer", calls=all_blocks,
                   check=Check(q0, k0, v0, plain_layout, sink=sink_blocks, calls=3, output=one))

    settings = SETTINGS_QUICK if quick else SETTINGS_ALL
    for n in region_counts:
        layout = api.TokenLayout(n_txt, n_img, n_ref, (region_len,) * n, grid)
        q, k, v = qkv(layout.total)
        masks = region_masks(n, grid).to(device)
        for ia, gp, br in settings:
            plan = api.RegionalPlan(masks, [1.0] * n, ia, gp, br)
            spec = api.spec(texts_unread=False, structure=plan)
            yield Case(f"regional, {n} regions, {ia} / {gp} / base_ratio {br}", engine(q, k, v, layout, spec),
                       pair_count_regional(layout, masks.cpu(), ia, gp, br), f"{plan.nbytes() / 2**20:.2f} MiB plan",
                       check=Check(q, k, v, layout, masks, (ia, gp, br), output=engine(q, k, v, layout, spec)))
        # CFG's negative half of the same run: region texts appended but isolated (each sees itself).
        spec = api.spec(texts_unread=True)
        yield Case(f"regional, uncond row of CFG (region texts isolated), {n} regions", engine(q, k, v, layout, spec),
                   plain_pairs + layout.n_regions_tokens,
                   check=Check(q, k, v, layout, isolate=True, output=engine(q, k, v, layout, spec)))
        defaults = api.RegionalPlan(masks, [1.0] * n, *DEFAULTS)
        floor = pair_count_regional(layout, masks.cpu(), *DEFAULTS)
        spec = api.spec(texts_unread=False, structure=defaults, gamma=TACA_GAMMA)
        yield Case(f"regional defaults + TACA, {n} regions", engine(q, k, v, layout, spec), floor,
                   f"{defaults.nbytes() / 2**20:.2f} MiB plan",
                   check=Check(q, k, v, layout, masks, DEFAULTS, TACA_GAMMA, output=engine(q, k, v, layout, spec)))
        sink_all = api.CaptureSink(n_img, device)
        spec = api.spec(texts_unread=False, structure=defaults, gamma=TACA_GAMMA, sink=sink_all)
        everything = engine(q, k, v, layout, spec)
        stream = hidden(layout.n_context, layout.total)
        everything_state = api.ForwardState("flux", layout.n_context, n_txt, layout.region_lens, n_img, grid, (0,), 1.0, 1, 0)

        def all_features(everything=everything, stream=stream, state=everything_state):
            text_scale.edit_text(state, block, api.TextStream(stream, 0, state.n_context))
            return everything()

        yield Case(f"everything: regional defaults + TACA + text scale + capture, {n} regions", all_features,
                   floor + n_img * layout.n_context // 2, f"{n_img * layout.n_context * 4 / 2**20:.1f} MiB maps buffer",
                   check=Check(q, k, v, layout, masks, DEFAULTS, TACA_GAMMA, sink=sink_all, output=everything))
        # Baselines measured in the same run.
        dense_bytes = heads * layout.total ** 2 * torch.finfo(dtype).bits // 8
        name = f"baseline: dense [B,H,L,L] additive mask, {n} regions"
        if dense_bytes <= dense_limit:
            dense = torch.zeros(1, heads, layout.total, layout.total, device=device, dtype=dtype)
            yield Case(name, lambda q=q, k=k, v=v, dense=dense: F.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                       layout.total ** 2, f"{dense_bytes / 2**20:.0f} MiB mask")
            del dense
        else:
            yield Case(name, None, layout.total ** 2, f"{dense_bytes / 2**20:.0f} MiB mask",
                       skipped=f"not run: the mask alone needs {dense_bytes / 2**30:.1f} GiB (limit {dense_limit / 2**30:.0f} GiB)")
        yield Case(f"baseline: one pass per region (core masked conditioning), {n} regions",
                   lambda n=n: [plain() for _ in range(n + 1)], (n + 1) * plain_pairs)
