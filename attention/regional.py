"""Regional prompting as exact joint-attention structure (InstantX-style, soft masks).

For one forward, `RegionalPlan` turns per-region token masks m_r(i) in [0,1] and
strengths s_r into query groups for `joint.run_groups`:

- region text r queries see T_r and image tokens with bias log m_r(i);
- image token i sees T_r with bias log(s_r m_r(i)); T0 with bias 0 (`everywhere`) or
  log(1 - max_r m_r(i)) (`background`); image token j always (`open`) or when the two
  share a region or are both uncovered (`restricted`); reference tokens always;
- T0 and reference queries see T0, image and reference tokens, never region texts;
- image rows are blended with unbiased attention over [T0 ; I ; F] by `base_ratio`.

Image tokens are grouped by which regions cover them, so the image-image
restriction becomes a gather of allowed keys, never a mask.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .forward import ATTENTION, COND, Modifier
from .frame_masks import latent_frame_masks, per_token_frame
from .gate import Gate
from .joint import EXCLUDED, KeyPart, QueryGroup, cat_index
from .layout import TokenLayout

IMAGE_ATTENTION = ("restricted", "open")
# Regions one model accepts: a chain of Region nodes, one Apply node, two Apply nodes combined (nodes/regional.py
# refuses more at each, before sampling). Each region adds its prompt's tokens to every attention call (256 for
# FLUX.1, 512 for FLUX.2) and its query groups to every planned call, so far fewer are practical; the limit bounds
# memory and work per call, not exactness (the engine is tested exact with 100). The Region Canvas's lower limit
# (nodes/canvas_state.py) is a UI one: how many regions one drawing can usefully show and edit.
MAX_REGIONS = 128
GLOBAL_PROMPT = ("background", "everywhere")
_SNAP = 1e-6


def check_settings(image_attention: str, global_prompt: str) -> None:
    """A ValueError naming the setting, the values it takes and the one given."""
    if image_attention not in IMAGE_ATTENTION:
        raise ValueError(f"image_attention must be one of {IMAGE_ATTENTION}, got {image_attention!r}")
    if global_prompt not in GLOBAL_PROMPT:
        raise ValueError(f"global_prompt must be one of {GLOBAL_PROMPT}, got {global_prompt!r}")


def forward_token_masks(masks: list, state, item: int, device) -> torch.Tensor:
    """[n, n_img] token masks of regions' MASK batches `masks` ([B, H, W] each) for image `item` of a forward's batch
    (a batch of 1 serves every image); on a video (`state.latent_frames`) a batch is frames (frame_masks.py) and the
    tokens run frame by frame. The regional plan and the region LoRAs' token weights both read them here."""
    size = (state.latent_hw, state.grid, state.patch, state.latent_px)
    if state.latent_frames:
        return torch.stack([per_token_frame(token_masks(latent_frame_masks(m.float().to(device), state.latent_frames,
                                                                           state.frame_stride), *size), state.frames)
                            for m in masks])
    masks = [m[item if m.shape[0] > 1 else 0].float() for m in masks]
    if len({tuple(m.shape) for m in masks}) == 1:
        return token_masks(torch.stack(masks).to(device), *size)
    return torch.cat([token_masks(m[None].to(device), *size) for m in masks])


def token_masks(masks: torch.Tensor, latent_hw: tuple, grid: tuple, patch: int = 2, latent_px: int = 8):
    """Average each region mask over every image token's cell.

    masks [n,H,W] in [0,1] at any resolution/aspect are stretched over the image, which is
    the latent (`latent_hw` cells) at `latent_px` pixels per latent cell (8 for SD3 / FLUX.1,
    16 for FLUX.2); a token covers `patch` x `patch` latent cells. Cells past the image edge
    (ComfyUI pads latents to whole patches) count as uncovered. Returns [n, rows*cols] float32.
    """
    n = masks.shape[0]
    cell_px = patch * latent_px
    height, width = latent_hw[0] * latent_px, latent_hw[1] * latent_px
    m = masks.float().unsqueeze(1)
    # Per axis: a finer mask is box-averaged (exact cell averages for integer ratios), a coarser one is
    # stretched with nearest-exact, so its pixels stay blocks and hard masks stay hard.
    if m.shape[-2] != height:
        m = F.interpolate(m, size=(height, m.shape[-1]), mode="area" if m.shape[-2] > height else "nearest-exact")
    if m.shape[-1] != width:
        m = F.interpolate(m, size=(height, width), mode="area" if m.shape[-1] > width else "nearest-exact")
    m = m.clamp(0.0, 1.0)  # never in place: `masks` may be the caller's own tensor (a region's mask)
    rows, cols = grid
    m = F.pad(m, (0, cols * cell_px - width, 0, rows * cell_px - height))
    m = F.avg_pool2d(m, cell_px).reshape(n, rows * cols)
    # Interpolation leaves 1 - 1e-8 inside and 1e-9 outside hard masks; snap them.
    m = torch.where(m > 1.0 - _SNAP, torch.ones_like(m), m)
    return torch.where(m < _SNAP, torch.zeros_like(m), m)


@dataclass
class _ImageClass:
    rows: torch.Tensor  # positions within the image
    cover: tuple  # regions covering every row of the class
    full: bool  # background mode and a region has m == 1 (T0 hidden)


class RegionalPlan:
    """The structure of regional attention for one set of token masks on one device (no L x L data).

    Plans are cached (keyed by region content, settings, image size and device) and serve every
    block and step of every run that matches. The plan is the executor's `joint.Structure`: `planned` holds
    the executor's query groups per layout and logit modifiers, `on_grow` lets the cache re-measure the plan
    when they are added."""

    def __init__(
        self,
        masks: torch.Tensor,
        strengths,
        image_attention: str = "restricted",
        global_prompt: str = "background",
        base_ratio: float = 0.0,
    ):
        check_settings(image_attention, global_prompt)
        self.masks = masks.float()  # [n, N_img]
        self.strengths = [float(s) for s in strengths]
        self.image_attention = image_attention
        self.global_prompt = global_prompt
        self.base_ratio = float(base_ratio)
        self.cover = self.masks > 0
        self._classes = self._image_classes()
        # (layout, logit modifiers, device) -> query groups, filled by the executor (joint.py); ("path", ...) ->
        # [masks] the dense and FlexAttention paths keep for this plan (paths.py)
        self.planned: dict = {}
        self.on_grow = None  # set by a cache holding the plan
        # A cached plan serves every thread that samples with it (two runs at once, MultiGPU work units):
        # `planned` grows under this lock, and is read whole (`tensors`) under it.
        self.lock = threading.RLock()

    @property
    def n_regions(self) -> int:
        return self.masks.shape[0]

    def kind(self) -> tuple:
        """What the speed of an attention path depends on in this plan besides sizes (paths.plan_kind)."""
        return ("regional", self.image_attention, self.global_prompt, self.base_ratio > 0.0)

    def nbytes(self) -> int:
        """Masks, classes, and the query groups (with their prepared calls) built so far."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def grew(self) -> None:
        """The executor added query groups (or prepared calls) to this plan."""
        if self.on_grow is not None:
            self.on_grow()

    def _image_classes(self):
        """Image tokens grouped by the exact set of regions covering them (plus, in background mode,
        whether one covers them fully). Rows of a boolean matrix, so any number of regions is exact."""
        n = self.n_regions
        pattern = self.cover
        if self.global_prompt == "background":
            pattern = torch.cat([pattern, (self.masks >= 1.0).any(0, keepdim=True)])
        else:
            pattern = torch.cat([pattern, torch.zeros_like(pattern[:1])])
        kinds, inverse = torch.unique(pattern.t(), dim=0, return_inverse=True)
        classes = []
        for c, kind in enumerate(kinds.tolist()):
            rows = torch.nonzero(inverse == c).flatten()
            classes.append(_ImageClass(rows, tuple(r for r in range(n) if kind[r]), bool(kind[n])))
        return classes

    def groups(self, layout: TokenLayout, device) -> list:
        """Query groups of the regional structure (who sees whom, with which biases)."""
        if len(layout.region_lens) != self.n_regions:
            raise ValueError(f"layout has {len(layout.region_lens)} region texts, plan has {self.n_regions}")
        img0 = layout.img.start
        groups = []
        # Base text and reference queries: T0, image, reference; never region texts.
        # Two parts, not one gathered index: the engine attends two slices without copying k and v.
        groups.append(QueryGroup(cat_index([layout.txt, layout.ref], device), [KeyPart(layout.txt), KeyPart(layout.visual)]))
        # Region text queries: their own text, and the image where their mask is > 0.
        for r in range(self.n_regions):
            cols = torch.nonzero(self.cover[r]).flatten()
            keys = cat_index([layout.region(r), cols + img0], device)
            soft = self.masks[r, cols]
            key_bias = None
            if bool((soft < 1.0).any()):
                key_bias = torch.cat([torch.zeros(layout.region_lens[r], device=device), soft.log()])
            groups.append(QueryGroup(layout.region(r), [KeyPart(keys, key_bias=key_bias)]))
        # Image queries, one group per coverage class.
        uncovered = torch.nonzero(~self.cover.any(0)).flatten()
        for cls in self._classes:
            groups.append(self._image_group(cls, layout, uncovered, device))
        return groups

    def _image_group(self, cls: _ImageClass, layout: TokenLayout, uncovered, device):
        img0 = layout.img.start
        m = self.masks[:, cls.rows]  # [n, nq]
        parts = []
        # Base text.
        if self.global_prompt == "everywhere":
            t0_bias = None
        elif cls.full:
            t0_bias = EXCLUDED
        else:
            t0_bias = torch.log1p(-m.max(0).values) if cls.cover else None
        parts.append(KeyPart(layout.txt, main_bias=t0_bias, in_base=True, text_offset=0))
        # Region texts of the regions covering this class.
        for r in cls.cover:
            bias = m[r].log() + math.log(self.strengths[r])
            if bool((bias == 0).all()):
                bias = None
            parts.append(KeyPart(layout.region(r), main_bias=bias, text_offset=layout.region(r).start))
        # Image and reference keys.
        if self.image_attention == "open":
            parts.append(KeyPart(layout.visual, in_base=True))
        else:
            if cls.cover:
                bits = list(cls.cover)
                allowed = torch.nonzero(self.cover[bits].any(0)).flatten()
            else:
                allowed = uncovered
            parts.append(KeyPart(cat_index([allowed + img0, layout.ref], device), in_base=True))
            if self.base_ratio > 0.0:
                blocked = torch.ones(layout.n_img, dtype=torch.bool, device=self.cover.device)
                blocked[allowed] = False
                blocked_idx = torch.nonzero(blocked).flatten() + img0
                if blocked_idx.numel():
                    parts.append(KeyPart(blocked_idx, main_bias=EXCLUDED, in_base=True))
        return QueryGroup(cls.rows + img0, parts, base_ratio=self.base_ratio, image_rows=cls.rows)

    def tensors(self) -> list:
        """Every tensor the plan holds: masks, classes, and the executor's groups and prepared calls."""
        own = [self.masks, self.cover] + [c.rows for c in self._classes]
        with self.lock:
            planned = list(self.planned.values())
        for groups in planned:
            for g in groups:
                own += g.tensors()
        return list({id(t): t for t in own}.values())  # a tensor two groups share counts once


@dataclass(frozen=True)
class Region:
    """One region: its prompt's text tokens [T, C], its mask [B, H, W] in [0, 1] (B = 1, or one mask
    per image of the batch), its strength."""

    tokens: torch.Tensor
    mask: torch.Tensor
    strength: float
    content_hash: str  # identifies tokens + mask + strength for caching
    # What came with the tokens (pooled vector...), opaque here: the host adapter uses it to
    # turn the tokens into the text the model sees for a prompt.
    options: dict = field(default_factory=dict, compare=False)
    # Adapters the region carries (region LoRAs), opaque here: they act on the layers the host adapter wraps, never
    # on attention, so plans and caches ignore them.
    adapters: tuple = field(default=(), compare=False)


class MaskBatchMismatch(ValueError):
    """Region masks come in batches that match neither one image nor the sampled batch."""

    def __init__(self, batches: list, n_items: int):
        super().__init__(f"mask batches of {batches} do not match the {n_items} image(s) being sampled; give each "
                         "region one mask, or one mask per image")


class RegionalModifier(Modifier):
    """Dispatcher modifier enforcing regions in the blocks and sigma window of its gate."""

    key = "regional"

    def __init__(self, regions, base_ratio, gate: Gate, image_attention="restricted", global_prompt="background",
                 cache=None, registry=None):
        check_settings(image_attention, global_prompt)
        self.regions = tuple(r for r in regions if r.strength > 0)
        self.settings = (image_attention, global_prompt, float(base_ratio))  # what a plan depends on besides masks
        self.gate = gate
        self.cache = cache
        self.registry = registry
        self._identity = "|".join(r.content_hash for r in self.regions)
        if registry is not None:
            for r in self.regions:
                registry.track(r.tokens, "regional:tokens", "patch")
                registry.track(r.mask, "regional:masks", "patch")

    def tensors(self) -> list:
        return [t for r in self.regions for t in (r.tokens, r.mask)]

    def begin_forward(self, state):
        if not self.regions or not self.gate.in_window(state.sigma):
            return None
        device = state.device or torch.device("cpu")
        n_items = max(state.row_items, default=0) + 1
        batches = {r.mask.shape[0] for r in self.regions} - {1}
        if state.latent_frames:  # a video: a MASK batch is frames, and one plan serves every video of the batch
            for r in self.regions:
                latent_frame_masks(r.mask[:, :1, :1], state.latent_frames, state.frame_stride)  # the count's check
            batches = set()
        elif batches and batches != {n_items}:
            raise MaskBatchMismatch(sorted(batches), n_items)
        n_plans = n_items if batches else 1
        state.region_lens = tuple(r.tokens.shape[0] for r in self.regions)
        state.region_inputs = tuple(r.options for r in self.regions)
        size = (state.latent_hw, state.grid, state.patch, state.latent_px, state.frames, state.latent_frames,
                state.frame_stride, str(device))
        state.regions = [self._cached(("plan", i) + size, lambda i=i: self._plan(state, device, i))
                         for i in range(n_plans)]
        return self._cached(("tokens", str(device)), lambda: torch.cat([r.tokens for r in self.regions]).to(device))

    def _cached(self, key, factory):
        if self.cache is None:
            return factory()
        return self.cache.get((self.key, self._identity, self.settings) + key, factory, owner="regional")

    def _plan(self, state, device, item: int):
        """Plan for image `item` of the batch (masks with batch 1 serve every image)."""
        tm = forward_token_masks([r.mask for r in self.regions], state, item, device)
        image_attention, global_prompt, base_ratio = self.settings
        return RegionalPlan(tm, [r.strength for r in self.regions], image_attention, global_prompt, base_ratio)

    def expects(self, state) -> tuple:
        # In its window the region texts are in the context: every row's attention must place or isolate them.
        return (ATTENTION,) if state.regions is not None else ()

    def contribute(self, state, block, row_kind, spec, item=0) -> None:
        plans = state.regions
        if plans is None or row_kind != COND:
            return  # outside the window there are no region tokens; other rows stay isolated
        spec.texts_unread = False  # the region texts are this row's: placed in selected blocks, unmasked elsewhere
        if self.gate.selects(block):
            spec.structure = plans[item if len(plans) > 1 else 0]
