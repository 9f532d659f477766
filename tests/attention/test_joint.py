"""The fused segment engine against the dense reference, over a grid of configurations."""
import math
from dataclasses import dataclass

import pytest
import torch

from ja_reference import dense_attention, dense_bias
from ja_specs import call_spec
from joint_attention_pack.attention.joint import CallSpec, joint_attention, plan_groups, with_modifiers
from joint_attention_pack.attention.kernels import KernelSelector, reference_attend
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import RegionalPlan, token_masks
from joint_attention_pack.attention.taca import Temperature

D = 8
SCALE = 1.0 / math.sqrt(D)


def _layout(n_ref=3, region_lens=(4, 3)):
    return TokenLayout(n_txt=5, n_img=24, n_ref=n_ref, region_lens=region_lens, grid=(4, 6))


def _masks(kind):
    m = torch.zeros(2, 24)
    if kind == "hard":
        m[0, :10] = 1
        m[1, 8:16] = 1  # overlaps region 0 on tokens 8, 9
    elif kind == "soft":
        m[0, :10] = 1
        m[0, 10] = 0.5
        m[1, 8:16] = torch.linspace(0.2, 1, 8)
    elif kind == "full":
        m[0, :12] = 1
        m[1, 12:] = 1
    return m


def _qkv(layout, batch=2, heads=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, layout.total, D, generator=g).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("mask_kind", ["hard", "soft", "full"])
@pytest.mark.parametrize("image_attention", ["restricted", "open"])
@pytest.mark.parametrize("global_prompt", ["background", "everywhere"])
@pytest.mark.parametrize("base_ratio", [0.0, 0.3])
@pytest.mark.parametrize("gamma", [1.0, 1.3])
@pytest.mark.parametrize("n_ref", [0, 3])
def test_regional_matches_dense_reference(mask_kind, image_attention, global_prompt, base_ratio, gamma, n_ref):
    layout = _layout(n_ref)
    masks = _masks(mask_kind)
    strengths = [1.0, 2.0]
    plan = RegionalPlan(masks, strengths, image_attention, global_prompt, base_ratio)
    q, k, v = _qkv(layout)
    spec = call_spec(texts_unread=False, structure=plan, gamma=gamma)
    out = joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    bias = dense_bias(layout, masks, strengths, image_attention, global_prompt)
    ref, _ = dense_attention(q, k, v, bias, SCALE, gamma, layout, base_ratio)
    assert out.dtype == q.dtype
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("isolate", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 1.5])
@pytest.mark.parametrize("region_lens", [(), (4, 3)])
def test_unmasked_cases_match_dense_reference(isolate, gamma, region_lens):
    layout = _layout(region_lens=region_lens)
    q, k, v = _qkv(layout, seed=1)
    out = joint_attention(q, k, v, layout, call_spec(texts_unread=isolate, gamma=gamma), KernelSelector(), SCALE)
    ref, _ = dense_attention(q, k, v, dense_bias(layout, isolate_regions=isolate), SCALE, gamma, layout)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_outside_tokens_get_exactly_zero_probability_from_region_text():
    """Image tokens outside region r put no mass on T_r: their output ignores T_r's values."""
    layout = _layout(n_ref=0)
    masks = _masks("hard")
    plan = RegionalPlan(masks, [1.0, 1.0], "restricted", "background", 0.0)
    q, k, v = _qkv(layout, seed=2)
    spec = call_spec(texts_unread=False, structure=plan)
    out = joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    v2 = v.clone()
    v2[:, :, layout.region(0)] += 100.0  # only region 0's text values change
    out2 = joint_attention(q, k, v2, layout, spec, KernelSelector(), SCALE)
    outside = (masks[0] == 0).nonzero().flatten() + layout.img.start
    inside = (masks[0] > 0).nonzero().flatten() + layout.img.start
    assert torch.equal(out[:, :, outside], out2[:, :, outside])
    assert (out[:, :, inside] - out2[:, :, inside]).abs().max() > 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_kernel_selector_matches_reference(dtype):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, n, 16, generator=g).to(dtype) for n in (37, 53, 53))
    bias = -torch.rand(1, 1, 1, 53, generator=g) * 4
    for key_bias in (None, bias):
        out, lse = KernelSelector().attend(q, k, v, 0.25, key_bias)
        ref, ref_lse = reference_attend(q, k, v, 0.25, key_bias)
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)
        torch.testing.assert_close(lse, ref_lse, atol=tol, rtol=tol)


def test_token_masks_average_cells_and_pad():
    mask = torch.zeros(1, 64, 96)  # an image of 64x96 pixels = latent 8x12 = tokens 4x6
    mask[0, :32, :48] = 1.0
    mask[0, 40:48, 48:56] = 1.0  # a quarter of one 16x16 cell
    tm = token_masks(mask, (8, 12), (4, 6)).reshape(4, 6)
    assert tm[:2, :3].eq(1).all()
    assert tm[2, 3].item() == pytest.approx(0.25)
    assert tm.sum().item() == pytest.approx(6.25)
    # Odd latent sizes: the padded last row/column of cells counts as uncovered.
    odd = token_masks(torch.ones(1, 40, 72), (5, 9), (3, 5)).reshape(3, 5)
    assert odd[:2, :4].eq(1).all()
    assert odd[2, 0].item() == pytest.approx(0.5)
    assert odd[0, 4].item() == pytest.approx(0.5)
    # Any resolution: a 2x3 mask stretched over the same image gives the same cells.
    small = torch.zeros(1, 2, 3)
    small[0, 0, 0] = 1.0
    tm_small = token_masks(small, (8, 12), (4, 6)).reshape(4, 6)
    assert tm_small[0, 0].item() == 1.0 and tm_small[3, 5].item() == 0.0


def test_regional_data_for_1024px_flux_with_4_regions_stays_small():
    """Issue 4: the 1024x1024 FLUX, 4-region case stores at most 64 MiB of mask data (no L x L anything)."""
    grid = (64, 64)
    masks = torch.zeros(4, 64 * 64)
    for r in range(4):
        masks[r, r * 1024:(r + 1) * 1024 + 64] = 1.0  # overlapping bands
    masks[0, :32] = 0.5
    layout = TokenLayout(n_txt=512, n_img=4096, region_lens=(512,) * 4, grid=grid)
    plan = RegionalPlan(masks, [1.0] * 4, "restricted", "background", 0.2)
    bare = plan.nbytes()
    spec = call_spec(texts_unread=False, structure=plan)
    groups = plan_groups(layout, spec, torch.device("cpu"))  # the executor's groups, kept on the plan
    index_bytes = 0
    for g in groups:
        for item in [g.index] + [p.index for p in g.parts] + [p.key_bias for p in g.parts] + [p.main_bias for p in g.parts]:
            if isinstance(item, torch.Tensor):
                index_bytes += item.numel() * item.element_size()
    distinct = {id(t): t for g in groups for t in g.tensors()}.values()
    assert plan.nbytes() == bare + sum(t.numel() * t.element_size() for t in distinct)  # ... the groups it holds
    q, k, v = (torch.zeros(1, 1, layout.total, 8) for _ in range(3))
    joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)  # uses the kernel calls prepared with them
    total = plan.nbytes()
    assert total > bare + index_bytes  # ... and the calls it prepared
    assert total <= 64 * 2**20, total
    assert total < layout.total ** 2  # far below even one byte per query-key pair


def test_soft_masks_stay_on_the_fused_kernel(caplog):
    """Per-query biases ride on extra head dims; the fused kernel must accept them (no fallback)."""
    layout = _layout()
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.0)
    q, k, v = _qkv(layout)
    kernels = KernelSelector()
    with caplog.at_level("WARNING", logger="joint_attention"):
        joint_attention(q, k, v, layout, call_spec(texts_unread=False, structure=plan, gamma=1.3), kernels, SCALE)
    assert "reference kernel" not in caplog.text
    assert set(kernels.chosen().values()) == {"cpu_flash"}


def _host_reads(fn) -> int:
    """Ops that read a tensor's value on the host: each one stalls a GPU stream until it drains."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(1 for e in prof.events() if e.name in ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"))


@pytest.mark.parametrize("mask_kind", ["hard", "soft"])
@pytest.mark.parametrize("base_ratio", [0.0, 0.3])
def test_regional_calls_read_nothing_back_to_the_host_after_the_first(mask_kind, base_ratio):
    """Checks on bias values (finite? soft?) run once per plan, not per attention call: a call that
    reads a device value back waits for the GPU queue to drain, 57 times per model forward."""
    layout = _layout()
    plan = RegionalPlan(_masks(mask_kind), [1.0, 2.0], "restricted", "background", base_ratio)
    q, k, v = _qkv(layout)
    spec = call_spec(texts_unread=False, structure=plan, gamma=1.3)
    kernels = KernelSelector()

    def call():
        return joint_attention(q, k, v, layout, spec, kernels, SCALE)

    first = call()
    assert _host_reads(call) == 0
    torch.testing.assert_close(call(), first, rtol=0, atol=0)
    assert _host_reads(lambda: plan_groups(layout, spec, q.device)) == 0  # cached


@pytest.mark.parametrize("n_regions", [54, 64, 100])
@pytest.mark.parametrize("global_prompt", ["background", "everywhere"])
def test_many_regions_on_random_cells_match_dense_reference(n_regions, global_prompt):
    """Issue 15: each image token's region set was a float64 sum cast to int64 (wrong from 54 regions on, an
    OverflowError at 64): 64 image tokens, random cells, hard and soft masks, every class exact."""
    g = torch.Generator().manual_seed(n_regions)
    layout = TokenLayout(n_txt=3, n_img=64, n_ref=0, region_lens=tuple([2] * n_regions), grid=(8, 8))
    masks = (torch.rand(n_regions, 64, generator=g) < 0.3).float()
    masks[::3] *= torch.rand(masks[::3].shape, generator=g) * 0.5 + 0.5  # soft masks on a third of the regions
    masks[0] = (torch.rand(64, generator=g) < 0.5).float()  # hard masks: some tokens fully covered
    strengths = (torch.rand(n_regions, generator=g) * 2 + 0.25).tolist()
    plan = RegionalPlan(masks, strengths, "restricted", global_prompt, 0.2)
    signatures = {tuple(masks[:, i].gt(0).tolist()) for i in range(64)}
    assert len(plan._image_classes()) >= len(signatures)
    q, k, v = _qkv(layout, batch=1, seed=4)
    out = joint_attention(q, k, v, layout, call_spec(texts_unread=False, structure=plan), KernelSelector(), SCALE)
    bias = dense_bias(layout, masks, strengths, "restricted", global_prompt)
    ref, _ = dense_attention(q, k, v, bias, SCALE, 1.0, layout, 0.2)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_a_cached_plan_is_counted_with_the_query_groups_it_gains():
    """Issue 16: the cache measured a plan when it was stored, before its groups and prepared calls existed."""
    from joint_attention_pack.attention.memory import BoundedCache, MemoryRegistry

    layout = _layout(n_ref=0)
    registry = MemoryRegistry()
    cache = BoundedCache(registry, budget_bytes=1 << 30)
    plan = cache.get("plan", lambda: RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.3), "regional")
    stored = cache.bytes
    q, k, v = _qkv(layout)
    joint_attention(q, k, v, layout, call_spec(texts_unread=False, structure=plan, gamma=1.3), KernelSelector(), SCALE)
    assert plan.planned and cache.bytes == plan.nbytes() > stored
    assert registry.total_bytes("cache") == plan.nbytes()  # every group tensor is accounted
    # A budget the grown plan exceeds: it leaves the cache when it grows past it.
    small = BoundedCache(registry, budget_bytes=stored + 1)
    plan2 = small.get("plan", lambda: RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.3))
    assert len(small) == 1
    joint_attention(q, k, v, layout, call_spec(texts_unread=False, structure=plan2), KernelSelector(), SCALE)
    assert len(small) == 0 and small.bytes == 0


def test_out_of_memory_in_the_chosen_kernel_is_raised_and_the_kernel_kept():
    """An out-of-memory error is the host's to handle (ComfyUI frees memory and retries); the selector must not take it
    for a broken kernel and move every later call to the reference kernel, which needs more memory. Other kernel
    errors still fall back to the reference kernel."""

    q, k, v = (torch.randn(1, 2, 9, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    selector = KernelSelector()
    selector.attend(q, k, v, 0.25)
    (key, chosen), = selector.chosen().items()
    if chosen == "reference":
        pytest.skip("no fused kernel passed its probe here")
    name, fn = selector._chosen[key]
    calls = []

    def failing(error):
        def attend(*args):
            calls.append(error)
            raise error
        return attend

    selector._chosen[key] = (name, failing(torch.cuda.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        selector.attend(q, k, v, 0.25)
    assert selector.chosen()[key] == name
    selector._chosen[key] = (name, failing(RuntimeError("kernel not available for this shape")))
    out, lse = selector.attend(q, k, v, 0.25)
    want, want_lse = reference_attend(q, k, v, 0.25, None)
    assert torch.equal(out, want) and torch.equal(lse, want_lse)
    assert selector.chosen()[key] == "reference" and len(calls) == 2


# -- the executor composes what features contribute, knowing none of them ---------------------------------------
@dataclass(frozen=True)
class ImageKeyScale:
    """A logit modifier no feature has (the executor must take any): `factor` on image rows x non-text keys."""

    factor: float

    def logit_scale(self, group, part) -> float:
        return self.factor if group.image_rows is not None and part.text_offset is None else 1.0


def _scaled_reference(q, k, v, layout, bias, multiplier, base_ratio=0.0):
    """softmax(multiplier * q.k * scale + bias) @ v in float64 ([L, L] multiplier); with base_ratio, image rows
    blend in the softmax over [T0 ; I ; F] of the same multiplied logits."""
    logits = multiplier * (q.double() @ k.double().transpose(-1, -2)) * SCALE
    out = torch.softmax(logits + bias, dim=-1) @ v.double()
    if base_ratio > 0.0:
        hidden = torch.ones(layout.total, dtype=torch.bool)
        hidden[layout.txt] = hidden[layout.visual] = False
        base = torch.softmax(logits.masked_fill(hidden, float("-inf")), dim=-1) @ v.double()
        out[..., layout.img, :] = (1 - base_ratio) * out[..., layout.img, :] + base_ratio * base[..., layout.img, :]
    return out


@pytest.mark.parametrize("regional,base_ratio", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_any_logit_modifier_is_composed_over_every_group_and_part(regional, base_ratio):
    """TACA's temperature and a modifier of the test's own, together: their factors multiply per (row, key)."""
    layout = _layout(n_ref=3)
    q, k, v = _qkv(layout, seed=7)
    structure, bias = None, dense_bias(layout)
    if regional:
        structure = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", base_ratio)
        bias = dense_bias(layout, _masks("soft"), [1.0, 2.0], "restricted", "background")
    spec = CallSpec(texts_unread=False, structure=structure, modifiers=(Temperature(1.3), ImageKeyScale(0.7)))
    out = joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    multiplier = torch.ones(layout.total, layout.total, dtype=torch.float64)
    multiplier[layout.img, : layout.n_context] = 1.3
    multiplier[layout.img, layout.n_context:] = 0.7
    torch.testing.assert_close(out.double(), _scaled_reference(q, k, v, layout, bias, multiplier, base_ratio),
                               atol=1e-5, rtol=1e-5)


def test_groups_are_kept_per_modifiers_by_value_never_per_feature_setting():
    layout = _layout()
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.3)
    q, k, v = _qkv(layout)
    for modifiers in ((Temperature(1.3),), (Temperature(1.3),), (Temperature(1.5),), (), (ImageKeyScale(1.3),)):
        spec = CallSpec(texts_unread=False, structure=plan, modifiers=modifiers)
        joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    assert set(plan.planned) == {(layout, m, "cpu") for m in
                                 ((Temperature(1.3),), (Temperature(1.5),), (), (ImageKeyScale(1.3),))}
    assert plan_groups(layout, CallSpec(texts_unread=False, structure=plan, modifiers=(Temperature(1.3),)),
                       torch.device("cpu")) is plan.planned[(layout, (Temperature(1.3),), "cpu")]


def test_a_modifier_whose_factors_are_all_one_leaves_the_groups_as_they_are():
    layout = _layout()
    groups = RegionalPlan(_masks("hard"), [1.0, 2.0]).groups(layout, "cpu")
    composed = with_modifiers(groups, (ImageKeyScale(1.0), Temperature(1.0)))
    assert all(a is b for a, b in zip(composed, groups))
    scaled = with_modifiers(groups, (Temperature(2.0),))
    image = [g for g in scaled if g.image_rows is not None]
    assert image and all(p.logit_scale == (2.0 if p.text_offset is not None else 1.0) for g in image for p in g.parts)
    assert all(p.logit_scale == 1.0 for g in groups for p in g.parts)  # the structure's own groups: untouched


@pytest.mark.parametrize("spec,plain", [
    (CallSpec(), True), (CallSpec(texts_unread=False), True), (CallSpec(modifiers=(Temperature(1.2),)), False),
    (CallSpec(observers=("an observer",)), False), (CallSpec(structure=RegionalPlan(torch.ones(1, 4), [1.0])), False),
])
def test_a_spec_is_plain_when_nothing_acts(spec, plain):
    assert spec.is_plain(TokenLayout(5, 4)) is plain
    assert not spec.is_plain(TokenLayout(5, 4, region_lens=(2,)))  # appended texts must be placed or unread
