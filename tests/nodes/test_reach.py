"""Issue 22: never silently do nothing. A patched model whose forward or attention was routed around ComfyUI's hooks
(the way packs with their own model implementation do) stops with an error naming the node, instead of sampling the
plain image; legitimate runs (out-of-window steps, uncond-only forwards, nothing selected, text scaling through the
block patches) never trip the check."""
import pytest
import torch

from ja_compose import bypass
from ja_families import family_params
from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.forward import ATTENTION, BLOCKS, COND, UNCOND, ForwardState
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.taca import TacaModifier
from joint_attention_pack.integration import reach
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def _single(tiny):
    return "all" if tiny.n_single else "none"


def regions(tiny, model, start=0.0, end=1.0, double="all", single=None):
    pixels, _ = cell_masks(False)
    made, _ = regions_for(tiny, pixels, [1.0, 1.5])
    return run_node(JointAttentionRegionalApply, model, made, 0.2, start, end, double,
                    _single(tiny) if single is None else single, "restricted", "background")[0]


def taca(tiny, model, apply_to="both", double="all", single=None):
    return run_node(JointAttentionTACA, model, 1.8, 0.0, apply_to, double, _single(tiny) if single is None else single)[0]


def capture(tiny, model):
    return run_node(JointAttentionCapture, model, "all", _single(tiny), 0.0, 1.0)[0]


def text_scale(tiny, model):
    return run_node(JointAttentionTextScale, model, "0", 1.8, "scale", 0.0, 1.0)[0]


FEATURES = {"regions": (regions, "Apply Regional Attention"), "taca": (taca, r"TACA \(text attention temperature\)"),
            "capture": (capture, "Attention Capture"), "text_scale": (text_scale, "Text Scale per Block")}


def _conds(tiny):
    return make_cond(tiny, seed=1), make_cond(tiny, seed=2)


@pytest.mark.works_with("a model implementation that calls attention around ComfyUI's hook (emulated: forward swapped "
                        "by an object patch)", "Apply Regional Attention, TACA, Attention Capture",
                        "refused with an error naming the node, never a plain image")
@pytest.mark.parametrize("family", family_params("attention_routed_around"))
@pytest.mark.parametrize("feature", ["regions", "taca", "capture"])
def test_attention_routed_around_the_override_stops_with_the_node_named(family, feature):
    tiny = family.build()
    base = patcher(tiny)
    apply, node = FEATURES[feature]
    model = bypass(apply(tiny, base), "attention")
    pos, neg = _conds(tiny)
    with pytest.raises(reach.PackNotReached, match=rf"\[{node}\] .*none of its attention calls reached .*replaced by another "
                                                   r"node or pack.*not the \w+ model it was detected as"):
        sample(model, pos, neg, **KW)


@pytest.mark.works_with("another pack's block patch that attends its own way in some blocks (emulated: the block run "
                        "without the attention override)", "Apply Regional Attention, TACA, Attention Capture",
                        "refused with an error naming the node and the blocks, never a partly plain image")
@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("feature", ["regions", "taca", "capture"])
def test_attention_bypassed_in_one_block_stops_with_the_block_named(family, feature):
    """The other blocks reach the pack, so a per-forward count alone would miss it: blocks that ran through the pack's
    block patches must each have reached its attention override too."""
    tiny = build(family)
    m = patcher(tiny).clone()

    def around(args, extra):
        options = {k: v for k, v in args["transformer_options"].items() if k != "optimized_attention_override"}
        return extra["original_block"]({**args, "transformer_options": options})

    m.set_model_patch_replace(around, "dit", "double_block", 1)
    apply, node = FEATURES[feature]
    model = apply(tiny, m)  # the pack's block patch runs the other one inside
    pos, neg = _conds(tiny)
    with pytest.raises(reach.PackNotReached, match=rf"\[{node}\] .*in 1 block\(s\) \(double 1\) the model attended "
                                                   "without the pack's attention override"):
        sample(model, pos, neg, **KW)


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("feature", list(FEATURES))
def test_forward_replaced_without_any_hook_stops_with_the_node_named(family, feature):
    tiny = build(family)
    apply, node = FEATURES[feature]
    model = bypass(apply(tiny, patcher(tiny)), "forward")
    pos, neg = _conds(tiny)
    with pytest.raises(reach.PackNotReached, match=rf"\[{node}\] this node should act in this step"):
        sample(model, pos, neg, **KW)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_without_the_check_the_bypassed_run_samples_the_plain_image(family, monkeypatch):
    """What the check prevents (main before issue 22): the run completes and TACA silently did nothing."""
    tiny = build(family)
    base = patcher(tiny)
    pos, neg = _conds(tiny)
    plain = sample(bypass(base, "attention"), pos, neg, **KW)
    acting = sample(taca(tiny, base), pos, neg, **KW)
    assert (acting - plain).abs().max() > 1e-4  # TACA changes this image when it reaches attention
    monkeypatch.setattr(reach, "check", lambda modifiers, state: None)
    silent = sample(bypass(taca(tiny, base), "attention"), pos, neg, **KW)
    assert torch.equal(silent, plain)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_text_scale_acts_through_the_block_patches_when_only_attention_is_bypassed(family):
    tiny = build(family)
    base = patcher(tiny)
    pos, neg = _conds(tiny)
    plain = sample(bypass(base, "attention"), pos, neg, **KW)
    scaled = sample(bypass(text_scale(tiny, base), "attention"), pos, neg, **KW)
    assert (scaled - plain).abs().max() > 1e-4


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_steps_outside_every_window_and_empty_selections_never_trip(family):
    """Nothing should act, so a bypassed model samples on: a region window no step falls in, TACA on no blocks,
    TACA on cond rows only in a run without CFG's cond rows (uncond-only forwards are checked below)."""
    tiny = build(family)
    base = patcher(tiny)
    pos, neg = _conds(tiny)
    plain = sample(bypass(base, "attention"), pos, neg, **KW)
    late = regions(tiny, base, start=0.999, end=1.0)  # sigma window below the last sampled sigma
    got = sample(bypass(late, "attention"), pos, neg, **KW)
    assert torch.equal(got, plain)
    nothing = taca(tiny, base, double="none", single="none")
    assert torch.equal(sample(bypass(nothing, "attention"), pos, neg, **KW), plain)


def _state(rows, sigma=1.0):
    return ForwardState("flux", 4, 4, (), 6, (2, 3), rows, sigma, 1, 0)


def test_expectations_per_forward():
    """Which forwards a modifier expects to be reached in: its window, its blocks, its rows."""
    gate = Gate(frozenset({0}), frozenset(), sigma_high=1.0, sigma_low=0.5)
    cond_only = TacaModifier(1.5, "cond", gate)
    assert cond_only.expects(_state((COND, UNCOND))) == (ATTENTION,)
    assert cond_only.expects(_state((UNCOND,))) == ()  # ComfyUI ran the uncond half alone: nothing to act on
    assert cond_only.expects(_state((COND,), sigma=0.2)) == ()  # outside the window
    assert TacaModifier(1.5, "both", Gate()).expects(_state((COND,))) == ()  # no blocks selected
    assert TacaModifier(1.0, "both", gate).expects(_state((COND,))) == ()  # gamma 1: nothing to do
    state = _state((UNCOND,))
    reach.check([cond_only], state)  # nothing expected, nothing reached: fine
    with pytest.raises(reach.PackNotReached, match=r"\[TACA \(text attention temperature\)\]"):
        reach.check([TacaModifier(1.5, "uncond", gate)], state)
    reach.reached(state, ATTENTION)
    reach.check([TacaModifier(1.5, "uncond", gate)], state)
    assert BLOCKS not in state.reached


def test_a_model_swapped_under_the_patches_is_refused():
    """A node that replaced the sampled model with a non-MMDiT one after the pack's node: an error, not a plain image."""
    from joint_attention_pack.integration.forward import apply_model_wrapper as _apply_model_wrapper

    tiny = build("flux")
    model = taca(tiny, patcher(tiny))

    class Executor:
        class_obj = object()  # what the sampler would run instead of the FLUX model

        def __call__(self, *args, **kwargs):
            raise AssertionError("the swapped model must not run with the pack's patches")

    x = torch.zeros(1, 16, 8, 8)
    with pytest.raises(reach.PackNotReached, match=r"\[TACA \(text attention temperature\)\] the model being sampled is now"):
        _apply_model_wrapper(Executor(), x, torch.ones(1), c_crossattn=torch.zeros(1, 4, 64),
                             transformer_options=model.model_options["transformer_options"])
