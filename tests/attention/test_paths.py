"""Every exact path of a planned call against the dense reference, and the selector's choice and fallback
with injected timings and failures (no wall clock is asserted)."""
import math
from dataclasses import dataclass

import pytest
import torch

from ja_reference import dense_attention, dense_bias
from ja_specs import call_spec, gamma_of
from joint_attention_pack.attention import paths
from joint_attention_pack.attention.dispatcher import JointAttentionDispatcher
from joint_attention_pack.attention.joint import CallSpec, joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.memory import BoundedCache, MemoryRegistry
from joint_attention_pack.attention.regional import RegionalPlan

D = 16
SCALE = 1.0 / math.sqrt(D)


def _layout(n_ref=3, region_lens=(4, 3)):
    return TokenLayout(n_txt=5, n_img=24, n_ref=n_ref, region_lens=region_lens, grid=(4, 6))


def _masks(kind):
    m = torch.zeros(2, 24)
    m[0, :10] = 1
    m[1, 8:16] = 1  # overlaps region 0 on tokens 8, 9
    if kind == "soft":
        m[0, 10] = 0.5
        m[1, 8:16] = torch.linspace(0.2, 1, 8)
    return m


def _qkv(layout, batch=2, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, layout.total, D, generator=g) for _ in range(3)]


def _call(layout, spec, seed=0):
    q, k, v = _qkv(layout, seed=seed)
    return paths.PlannedCall(q, k, v, layout, spec, KernelSelector(), SCALE)


def _reference(call, masks=None, strengths=None, settings=("restricted", "background", 0.0)):
    spec = call.spec
    if spec.structure is not None:
        bias = dense_bias(call.layout, masks, strengths, settings[0], settings[1])
        base_ratio = settings[2]
    else:
        bias, base_ratio = dense_bias(call.layout, isolate_regions=spec.texts_unread), 0.0
    ref, _ = dense_attention(call.q, call.k, call.v, bias, SCALE, gamma_of(spec), call.layout, base_ratio)
    return ref


REGIONAL = [("restricted", "background", 0.2, 1.0, "soft"), ("open", "everywhere", 0.0, 1.3, "hard"),
            ("restricted", "everywhere", 0.3, 1.3, "soft"), ("open", "background", 0.0, 1.0, "soft")]


@pytest.mark.parametrize("image_attention,global_prompt,base_ratio,gamma,mask_kind", REGIONAL)
@pytest.mark.parametrize("n_ref", [0, 3])
def test_dense_path_matches_dense_reference(image_attention, global_prompt, base_ratio, gamma, mask_kind, n_ref):
    layout, masks, strengths = _layout(n_ref), _masks(mask_kind), [1.0, 2.0]
    plan = RegionalPlan(masks, strengths, image_attention, global_prompt, base_ratio)
    call = _call(layout, call_spec(texts_unread=False, structure=plan, gamma=gamma))
    dense = paths.DensePath()
    out = dense.run(dense.prepare(call), call)
    ref = _reference(call, masks, strengths, (image_attention, global_prompt, base_ratio))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("isolate", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 1.5])
def test_dense_path_matches_dense_reference_without_regions_in_force(isolate, gamma):
    """Plain structures: region texts isolated (CFG's uncond rows) or unmasked, with TACA's temperature."""
    call = _call(_layout(), call_spec(texts_unread=isolate, gamma=gamma), seed=1)
    dense = paths.DensePath()
    torch.testing.assert_close(dense.run(dense.prepare(call), call).double(), _reference(call), atol=1e-5, rtol=1e-5)


def test_flex_path_matches_dense_reference():
    """FlexAttention (compiled on CPU: one structure per shape here, each compile takes tens of seconds on a loaded
    machine): soft masks, TACA and base_ratio (two block masks, outputs blended), then a plain structure with
    isolated region texts of the same shape (its compiled kernel is reused)."""
    layout, masks, strengths = _layout(), _masks("soft"), [1.0, 2.0]
    flex = paths.FlexPath()
    for spec, settings in (
        (call_spec(texts_unread=False, structure=RegionalPlan(masks, strengths, "restricted", "background", 0.3),
                 gamma=1.3), ("restricted", "background", 0.3)),
        (call_spec(texts_unread=True, gamma=1.3), None),
    ):
        call = _call(layout, spec, seed=2)
        assert flex.unavailable(call) is None
        with torch.no_grad():
            out = flex.run(flex.prepare(call), call)
        ref = _reference(call, masks, strengths, settings) if settings else _reference(call)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_call_tables_reject_overlapping_parts():
    from joint_attention_pack.attention.joint import KeyPart, QueryGroup

    groups = [QueryGroup(slice(0, 4), [KeyPart(slice(0, 3)), KeyPart(slice(2, 4))])]
    with pytest.raises(ValueError, match="overlap"):
        paths.call_tables(groups, 4, torch.device("cpu"))


def test_dense_path_refuses_a_call_over_its_budget():
    call = _call(_layout(), call_spec(texts_unread=True))
    need = paths.dense_mask_bytes(call)
    assert need == call.layout.total ** 2 * 4
    assert paths.DensePath(need).unavailable(call) is None
    assert "budget" in paths.DensePath(need - 1).unavailable(call)


# -- the selector ------------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Scripted(paths.Candidate):
    """A real path that advances the fake clock by a set cost per run, or fails as told."""

    def __init__(self, inner, clock, cost, fail_prepare=None, fail_run=None):
        self.inner, self.clock, self.cost = inner, clock, cost
        self.name, self.keeps_data = inner.name, inner.keeps_data
        self.fail_prepare, self.fail_run = fail_prepare, fail_run
        self.prepared = self.runs = 0

    def unavailable(self, call):
        return self.inner.unavailable(call)

    def prepare(self, call):
        self.prepared += 1
        if self.fail_prepare is not None:
            raise self.fail_prepare
        return self.inner.prepare(call)

    def run(self, prepared, call):
        self.runs += 1
        if self.fail_run is not None and self.fail_run(self.runs):
            raise RuntimeError("CUDA out of memory (injected)")
        self.clock.now += self.cost
        return self.inner.run(prepared, call)


class FakeFlex(paths.Candidate):
    """Stands for FlexAttention in selector tests (no compile): the dense path under another name."""

    name, keeps_data = paths.FLEX, True

    def __init__(self):
        self.dense = paths.DensePath()

    def prepare(self, call):
        return self.dense.prepare(call)

    def run(self, prepared, call):
        return self.dense.run(prepared, call)


def _selector(costs, **kw):
    clock = FakeClock()
    inner = {paths.GROUPED: paths.GroupedPath(), paths.DENSE: paths.DensePath(), paths.FLEX: FakeFlex()}
    options = {name: kw.pop(name, {}) for name in inner}
    candidates = {name: Scripted(inner[name], clock, costs[name], **options[name]) for name in inner}
    registry = MemoryRegistry()
    return paths.PathSelector(registry, candidates, clock=clock, force=None, measure_on=None, **kw), candidates, registry


def _regional_call(seed=0, base_ratio=0.2):
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", base_ratio)
    return _call(_layout(), call_spec(texts_unread=False, structure=plan, gamma=1.2), seed=seed)


def _attend(selector, call):
    return selector.attend(call.q, call.k, call.v, call.layout, call.spec, call.kernels, call.scale)


def test_selector_keeps_the_fastest_path_and_then_only_runs_it():
    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0}, repeats=3)
    call = _regional_call()
    first = _attend(selector, call)
    (key, choice), = selector.choices().items()
    assert choice.path == paths.DENSE
    assert choice.seconds == {paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0}
    assert [c.runs for c in candidates.values()] == [4, 4, 4]  # one untimed warm-up, three timed runs each
    # Later calls of the key: the chosen path alone, with the masks it prepared (built once).
    second = _attend(selector, call)
    assert [c.runs for c in candidates.values()] == [4, 5, 4]
    assert candidates[paths.DENSE].prepared == 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    ref = _reference(call, _masks("soft"), [1.0, 2.0], ("restricted", "background", 0.2))
    torch.testing.assert_close(second.double(), ref, atol=1e-5, rtol=1e-5)
    assert key[:3] == (call.q.device, call.q.dtype, tuple(call.q.shape))


def test_selector_choosing_the_engine_gives_its_exact_bits():
    """Where the grouped engine is fastest, calls return exactly what the engine alone returns."""
    selector, candidates, _ = _selector({paths.GROUPED: 1.0, paths.DENSE: 2.0, paths.FLEX: 3.0})
    call = _regional_call(seed=3)
    alone = joint_attention(call.q, call.k, call.v, call.layout, call.spec, KernelSelector(), SCALE)
    for _ in range(2):
        torch.testing.assert_close(_attend(selector, call), alone, rtol=0, atol=0)
    assert selector.choices()[next(iter(selector.choices()))].path == paths.GROUPED


def test_a_failing_candidate_is_dropped_for_its_key_only():
    """A compile error while preparing one key drops the path there; a new key measures it again."""
    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 2.0, paths.FLEX: 1.0},
                                        flex={"fail_prepare": RuntimeError("compile failed (injected)")})
    call = _regional_call()
    _attend(selector, call)
    choice = next(iter(selector.choices().values()))
    assert choice.path == paths.DENSE and "compile failed" in choice.dropped[paths.FLEX]
    assert paths.FLEX not in choice.seconds
    candidates[paths.FLEX].fail_prepare = None
    other = _call(TokenLayout(5, 24, 0, (4, 3), (4, 6)), call.spec)  # another shape: another key
    _attend(selector, other)
    assert [c.path for c in selector.choices().values()] == [paths.DENSE, paths.FLEX]


def test_the_chosen_path_failing_later_falls_back_to_the_next_fastest():
    """Out of memory in the chosen path after it was chosen: dropped for that key, the next fastest takes over,
    and the call still returns the exact result."""
    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0},
                                        dense={"fail_run": lambda n: n > 4})
    call = _regional_call(seed=5)
    _attend(selector, call)
    out = _attend(selector, call)
    choice = next(iter(selector.choices().values()))
    assert choice.path == paths.FLEX and paths.DENSE in choice.dropped
    ref = _reference(call, _masks("soft"), [1.0, 2.0], ("restricted", "background", 0.2))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    # The next one failing as well: down to the engine, still exact.
    candidates[paths.FLEX].fail_run = lambda n: True
    out = _attend(selector, call)
    choice = next(iter(selector.choices().values()))
    assert choice.path == paths.GROUPED and {paths.DENSE, paths.FLEX} <= set(choice.dropped)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_a_candidate_that_does_not_fit_is_not_timed():
    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0})
    candidates[paths.DENSE].inner.budget_bytes = 0
    _attend(selector, _regional_call())
    choice = next(iter(selector.choices().values()))
    assert choice.path == paths.FLEX and "budget" in choice.dropped[paths.DENSE]
    assert candidates[paths.DENSE].prepared == 0 and candidates[paths.DENSE].runs == 0


def test_choices_are_bounded_and_masks_counted():
    """The choice table keeps `max_choices` keys; masks of a regional plan count on the plan (the pack's cache
    re-measures it), masks of calls without a plan in the selector's own cache, tracked by the registry."""
    selector, _, registry = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0}, max_choices=2)
    cache = BoundedCache(registry, 1 << 30)
    plan = cache.get("plan", lambda: RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.2))
    bare = cache.bytes
    call = _call(_layout(), call_spec(texts_unread=False, structure=plan, gamma=1.2))
    _attend(selector, call)
    assert cache.bytes == plan.nbytes() > bare + paths.dense_mask_bytes(call)
    plain = _call(_layout(), call_spec(texts_unread=True, gamma=1.2))
    _attend(selector, plain)
    assert selector.prepared_cache.bytes >= paths.dense_mask_bytes(plain)
    assert registry.report()["by_owner"]["attention_paths"]["bytes"] == selector.prepared_cache.bytes
    for n_ref in (1, 2):
        _attend(selector, _call(_layout(n_ref=n_ref), call_spec(texts_unread=True, gamma=1.2)))
    assert len(selector.choices()) == 2
    report = selector.report()
    assert report["keys"] == 2 and report["choices"][-1]["path"] == paths.DENSE
    assert set(report["choices"][-1]["seconds"]) == set(paths.PATHS)


def test_capture_calls_stay_on_the_engine():
    from joint_attention_pack.attention.capture import CaptureSink

    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0})
    call = _call(_layout(), call_spec(texts_unread=True, sink=CaptureSink(24, torch.device("cpu"))))
    _attend(selector, call)
    assert not selector.choices() and all(c.runs == 0 for c in candidates.values())


def test_the_setting_forces_a_path_and_names_itself_when_the_path_cannot_take_the_call(monkeypatch):
    call = _regional_call(seed=6)
    monkeypatch.setenv(paths.PATH_ENV, "dense")
    selector = paths.PathSelector()
    out = _attend(selector, call)
    ref = _reference(call, _masks("soft"), [1.0, 2.0], ("restricted", "background", 0.2))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert not selector.choices()  # nothing measured
    selector.candidates[paths.DENSE].budget_bytes = 0
    with pytest.raises(RuntimeError, match=f"{paths.PATH_ENV}=dense cannot take this attention call: .*budget"):
        _attend(selector, _call(_layout(n_ref=1), call.spec))
    monkeypatch.setenv(paths.PATH_ENV, "fastest")
    selector = paths.PathSelector()  # the pack still loads: the error comes with the first call
    with pytest.raises(ValueError, match=f"{paths.PATH_ENV}='fastest' is not a path"):
        _attend(selector, call)


def test_unset_the_cpu_keeps_the_engine_without_measuring(monkeypatch):
    """By default only CUDA devices are measured: on CPU the engine runs (fastest in every CPU case measured,
    BENCHMARKS.md) and nothing else is timed or built."""
    monkeypatch.delenv(paths.PATH_ENV, raising=False)
    selector = paths.PathSelector()
    call = _regional_call()
    alone = joint_attention(call.q, call.k, call.v, call.layout, call.spec, KernelSelector(), SCALE)
    torch.testing.assert_close(_attend(selector, call), alone, rtol=0, atol=0)
    assert [c.path for c in selector.choices().values()] == [paths.GROUPED]
    assert not any(key[0] == "path" for key in call.spec.structure.planned)


def test_dispatchers_made_from_one_share_its_selector():
    first = JointAttentionDispatcher()
    made = first.with_modifier(type("M", (), {"key": "m"})())
    assert made.paths is first.paths and made.kernels is first.kernels


def test_structures_of_one_call_shape_get_tables_of_one_shape():
    """FlexAttention's compiled kernel is specialised on the shapes of the tables its functions read: structures of
    similar size must share them, or each new region setting would compile again (and torch.compile stops
    compiling a function after a few recompiles)."""
    layout = _layout()
    shapes = set()
    for image_attention, global_prompt, base_ratio, _, _ in REGIONAL:
        plan = RegionalPlan(_masks("hard"), [1.0, 2.0], image_attention, global_prompt, base_ratio)
        groups = _call(layout, call_spec(texts_unread=False, structure=plan)).groups
        tables = paths.call_tables(groups, layout.total, torch.device("cpu"))
        shapes.add(tuple(tuple(t.shape) for t in tables.tensors()))
    shapes.add(tuple(tuple(t.shape) for t in paths.call_tables(
        _call(layout, call_spec(texts_unread=True)).groups, layout.total, torch.device("cpu")).tensors()))
    assert len(shapes) == 1


def test_first_flex_calls_of_a_shape_may_compile_past_the_default_limit():
    """torch.compile runs a function uncompiled after 8 recompiles; a session sees more call shapes than that (sizes x
    region counts x settings), and FlexAttention uncompiled materialises every score."""
    import torch._dynamo.config as config

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    before = getattr(config, name)
    with paths.recompile_room():
        assert getattr(config, name) >= paths.FLEX_SHAPES
    assert getattr(config, name) == before


@dataclass(frozen=True)
class ImageKeyScale:
    """A logit modifier no feature has: `factor` on image rows x non-text keys."""

    factor: float

    def logit_scale(self, group, part) -> float:
        return self.factor if group.image_rows is not None and part.text_offset is None else 1.0


@pytest.mark.parametrize("regional", [False, True])
def test_the_dense_path_takes_the_composed_logit_scales_of_any_modifier(regional):
    """The dense and FlexAttention paths read the per-part values the executor composed (call_tables), not a
    feature's parameter: a modifier of the test's own gives the engine's result there too."""
    layout = _layout()
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.0) if regional else None
    spec = CallSpec(texts_unread=False, structure=plan, modifiers=(ImageKeyScale(0.6),))
    call = _call(layout, spec, seed=4)
    dense = paths.DensePath()
    out = dense.run(dense.prepare(call), call)
    engine = joint_attention(call.q, call.k, call.v, layout, spec, KernelSelector(), SCALE)
    torch.testing.assert_close(out, engine, atol=1e-5, rtol=1e-5)
    unscaled = joint_attention(call.q, call.k, call.v, layout, CallSpec(texts_unread=False, structure=plan),
                               KernelSelector(), SCALE)
    assert (out - unscaled).abs().max() > 1e-3


def test_the_plan_kind_says_whether_modifiers_act_not_their_values():
    layout = _layout()
    kinds = {paths.plan_kind(layout, CallSpec(modifiers=m)) for m in ((ImageKeyScale(0.6),), (ImageKeyScale(2.0),))}
    assert len(kinds) == 1 and paths.plan_kind(layout, CallSpec()) not in kinds
    assert paths.plan_kind(layout, CallSpec(texts_unread=False))[0] == "open"
    assert paths.plan_kind(layout, CallSpec())[0] == "isolated"
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "open", "everywhere", 0.2)
    assert paths.plan_kind(layout, CallSpec(structure=plan))[0] == ("regional", "open", "everywhere", True)


def test_prepared_masks_are_kept_per_modifiers():
    """Calls with equal modifiers share the masks prepared for them; other modifiers get their own."""
    selector, candidates, _ = _selector({paths.GROUPED: 3.0, paths.DENSE: 1.0, paths.FLEX: 2.0})
    plan = RegionalPlan(_masks("soft"), [1.0, 2.0], "restricted", "background", 0.2)
    for modifiers in ((ImageKeyScale(0.6),), (ImageKeyScale(0.6),), (ImageKeyScale(0.5),)):
        _attend(selector, _call(_layout(), CallSpec(texts_unread=False, structure=plan, modifiers=modifiers)))
    assert candidates[paths.DENSE].prepared == 2
    assert {key[3] for key in plan.planned if key[0] == "path" and key[1] == paths.DENSE} == {
        (ImageKeyScale(0.6),), (ImageKeyScale(0.5),)}
