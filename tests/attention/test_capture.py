"""Capture: the exact text probabilities of image rows, as an observer of the executor's calls."""
import math

import pytest
import torch

from ja_reference import dense_attention, dense_bias
from joint_attention_pack.attention.capture import (
    CaptureHandle,
    CaptureModifier,
    CaptureObserver,
    CaptureSink,
    concept_saliency,
    record_concepts,
)
from joint_attention_pack.attention.forward import ATTENTION, COND, UNCOND, BlockRef, ForwardState
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.joint import CallSpec, joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import RegionalPlan
from joint_attention_pack.attention.taca import Temperature

D = 8
SCALE = 1.0 / math.sqrt(D)
BLOCK = BlockRef("double", 1, 1)
GATE = Gate(double=frozenset({1}))


def _qkv(layout, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, layout.total, D, generator=g) for _ in range(3)]


def _masks():
    m = torch.zeros(2, 12)
    m[0, :6] = 1.0
    m[0, 6] = 0.5
    m[1, 4:10] = torch.linspace(0.3, 1.0, 6)
    return m


def _reference_maps(q, k, v, layout, bias, gamma=1.0, base_ratio=0.0):
    """[N_img, N_text]: the dense softmax's weights of image rows on text keys, mean over rows and heads."""
    _, probs = dense_attention(q, k, v, bias, SCALE, gamma, layout, base_ratio)
    return probs[..., layout.img, : layout.n_context].mean(dim=(0, 1))


@pytest.mark.parametrize("gamma", [1.0, 1.4])
@pytest.mark.parametrize("regions", [None, (0.0, "restricted", "background"), (0.3, "open", "everywhere")])
def test_recorded_maps_are_the_probabilities_the_output_used(gamma, regions):
    """Text columns of image rows, with TACA's temperature, region biases and the base_ratio blend applied."""
    layout = TokenLayout(n_txt=4, n_img=12, n_ref=2, region_lens=(3, 2) if regions else (), grid=(3, 4))
    q, k, v = _qkv(layout)
    structure, bias, base_ratio = None, dense_bias(layout), 0.0
    if regions:
        base_ratio, image_attention, global_prompt = regions
        structure = RegionalPlan(_masks(), [1.0, 2.0], image_attention, global_prompt, base_ratio)
        bias = dense_bias(layout, _masks(), [1.0, 2.0], image_attention, global_prompt)
    sink = CaptureSink(layout.n_img, "cpu")
    modifiers = (Temperature(gamma),) if gamma != 1.0 else ()
    spec = CallSpec(texts_unread=False, structure=structure, modifiers=modifiers, observers=(CaptureObserver(sink, 0.5),))
    joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    result = sink.result()
    want = _reference_maps(q, k, v, layout, bias, gamma, base_ratio)
    torch.testing.assert_close(result["maps"].double(), want, atol=1e-5, rtol=1e-5)
    assert result["n_txt"] == 4 and result["region_lens"] == layout.region_lens
    assert result["step_rows"] == [(0.5, 2)]  # two rows at step 0.5


def test_observing_a_call_does_not_change_its_output():
    layout = TokenLayout(n_txt=4, n_img=12, n_ref=0, region_lens=(3,), grid=(3, 4))
    q, k, v = _qkv(layout, seed=1)
    plain = joint_attention(q, k, v, layout, CallSpec(texts_unread=False), KernelSelector(), SCALE)
    sink = CaptureSink(layout.n_img, "cpu")
    seen = joint_attention(q, k, v, layout, CallSpec(texts_unread=False, observers=(CaptureObserver(sink),)),
                           KernelSelector(), SCALE)
    torch.testing.assert_close(seen, plain, atol=1e-6, rtol=1e-6)
    assert float(sink.sum.sum()) > 0


def test_two_observers_of_one_call_record_the_same():
    layout = TokenLayout(n_txt=4, n_img=12, grid=(3, 4))
    q, k, v = _qkv(layout, seed=2)
    first, second = CaptureSink(layout.n_img, "cpu"), CaptureSink(layout.n_img, "cpu")
    spec = CallSpec(observers=(CaptureObserver(first, 0.9), CaptureObserver(second, 0.9)))
    joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    assert torch.equal(first.result()["maps"], second.result()["maps"])
    assert first.result()["step_rows"] == second.result()["step_rows"] == [(0.9, 2)]


def test_the_mean_is_over_every_recorded_row_and_call():
    layout = TokenLayout(n_txt=4, n_img=12, grid=(3, 4))
    sink = CaptureSink(layout.n_img, "cpu")
    wants = []
    for seed, step in ((3, 0.9), (4, 0.5)):
        q, k, v = _qkv(layout, batch=1, seed=seed)
        joint_attention(q, k, v, layout, CallSpec(observers=(CaptureObserver(sink, step),)), KernelSelector(), SCALE)
        wants.append(_reference_maps(q, k, v, layout, dense_bias(layout)))
    torch.testing.assert_close(sink.result()["maps"].double(), (wants[0] + wants[1]) / 2, atol=1e-5, rtol=1e-5)
    assert sink.result()["step_rows"] == [(0.9, 1), (0.5, 1)]  # sigma falls
    assert sink.counts.tolist() == [2.0] * 4


def test_observers_compare_by_sink_and_step():
    sink = CaptureSink(4, "cpu")
    assert CaptureObserver(sink, 0.5) == CaptureObserver(sink, 0.5) and hash(CaptureObserver(sink, 0.5)) == hash(CaptureObserver(sink, 0.5))
    assert CaptureObserver(sink, 0.5) != CaptureObserver(sink, 0.4)
    assert CaptureObserver(sink, 0.5) != CaptureObserver(CaptureSink(4, "cpu"), 0.5)


# -- the modifier -------------------------------------------------------------------------------------------------
class Run:
    """A sampling run's state as the host adapter gives it: values kept per key, callbacks on success."""

    def __init__(self):
        self.items, self.callbacks = {}, []

    def setdefault(self, key, factory, owner, on_success=None):
        if key not in self.items:
            self.items[key] = factory()
            if on_success is not None:
                self.callbacks.append(lambda value=self.items[key]: on_success(value))
        return self.items[key]

    def succeeded(self):
        for callback in self.callbacks:
            callback()


def _state(run, sigma=0.6123456789):
    return ForwardState("flux", 4, 4, (), 12, (3, 4), (COND, UNCOND), sigma, 2, 0, run=run)


def test_a_capture_observes_cond_rows_in_its_blocks_at_the_step_of_the_forward():
    run = Run()
    handle = CaptureHandle()
    modifier = CaptureModifier(handle, GATE)
    state = _state(run)
    modifier.begin_forward(state)
    cond, uncond, elsewhere = CallSpec(), CallSpec(), CallSpec()
    modifier.contribute(state, BLOCK, COND, cond)
    modifier.contribute(state, BLOCK, UNCOND, uncond)
    modifier.contribute(state, BlockRef("double", 0, 0), COND, elsewhere)
    sink = run.items[modifier.key]
    assert cond.observers == (CaptureObserver(sink, 0.612346),)
    assert uncond == elsewhere == CallSpec()
    modifier.contribute(state, BLOCK, COND, cond)  # asked again for the same rows: still one observer
    assert len(cond.observers) == 1
    assert sink.blocks == {1}


def test_two_captures_on_one_call_both_observe_it():
    run = Run()
    first, second = CaptureModifier(CaptureHandle(), GATE), CaptureModifier(CaptureHandle(), GATE)
    spec = CallSpec()
    first.contribute(_state(run), BLOCK, COND, spec)
    second.contribute(_state(run), BLOCK, COND, spec)
    assert [o.sink for o in spec.observers] == [run.items[first.key], run.items[second.key]]


def test_without_a_run_or_without_maps_nothing_is_observed():
    spec = CallSpec()
    CaptureModifier(CaptureHandle(), GATE).contribute(_state(None), BLOCK, COND, spec)
    concepts = CaptureModifier(CaptureHandle(), GATE)
    concepts.records_maps = False
    concepts.contribute(_state(Run()), BLOCK, COND, spec)
    assert spec == CallSpec()
    assert concepts.expects(_state(Run())) == ()


def test_expects_attention_calls_while_its_window_is_open():
    modifier = CaptureModifier(CaptureHandle(), Gate(double=frozenset({1}), sigma_low=0.5))
    assert modifier.expects(_state(Run(), sigma=0.7)) == (ATTENTION,)
    assert modifier.expects(_state(Run(), sigma=0.3)) == ()
    assert CaptureModifier(CaptureHandle(), Gate()).expects(_state(Run())) == ()


def test_the_handle_gets_the_maps_once_the_run_succeeds_and_gives_them_once():
    run = Run()
    handle = CaptureHandle()
    modifier = CaptureModifier(handle, GATE)
    state = _state(run)
    modifier.begin_forward(state)
    layout = TokenLayout(n_txt=4, n_img=12, grid=(3, 4))
    q, k, v = _qkv(layout, seed=5)
    spec = CallSpec()
    modifier.contribute(state, BLOCK, COND, spec)
    joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    assert handle.result is None
    run.succeeded()
    taken = handle.take()
    assert taken["recorded"] and taken["maps"].shape == (12, 4) and taken["blocks"] == [1]
    assert handle.read and handle.take() is None


def test_a_run_that_recorded_nothing_says_so():
    run = Run()
    handle = CaptureHandle()
    CaptureModifier(handle, GATE).begin_forward(_state(run))
    run.succeeded()
    assert handle.take() == {"recorded": False}


# -- ConceptAttention's saliency ----------------------------------------------------------------------------------
def test_concept_saliency_is_a_softmax_over_concepts_of_output_dot_products():
    g = torch.Generator().manual_seed(6)
    concepts, image = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    saliency = concept_saliency(concepts, image)
    want = torch.stack([torch.softmax(concepts[b] @ image[b].T, dim=0) for b in range(2)]).mean(0)
    torch.testing.assert_close(saliency, want)
    torch.testing.assert_close(saliency.sum(0), torch.ones(5))


def test_recorded_concepts_are_averaged_over_calls():
    sink = CaptureSink(5, "cpu")
    record_concepts(sink, torch.full((3, 5), 0.2), 4, 0.9)
    record_concepts(sink, torch.full((3, 5), 0.6), 7, 0.5)
    result = sink.result()
    torch.testing.assert_close(result["concept_maps"], torch.full((3, 5), 0.4))
    assert result["concept_blocks"] == [4, 7] and result["steps"] == 2
