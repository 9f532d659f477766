"""Attention primitives with their log-sum-exps, and the exact merge of attention over parts of the keys."""
import pytest
import torch

from joint_attention_pack.attention import kernels
from joint_attention_pack.attention.kernels import KernelSelector, merge_partials, reference_attend, weighted_sum

SCALE = 0.3


def _tensors(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for shape in shapes]


def _softmax_attention(q, k, v, bias=None):
    """Written out in float64: softmax(q.k * scale + bias) @ v and the rows' log-sum-exp."""
    logits = (q.double() @ k.double().transpose(-1, -2)) * SCALE
    if bias is not None:
        logits = logits + bias.double()
    return torch.softmax(logits, dim=-1) @ v.double(), torch.logsumexp(logits, dim=-1)


@pytest.mark.parametrize("with_bias", [False, True])
def test_the_reference_kernel_is_softmax_attention_with_its_log_sum_exp(with_bias):
    q, k, v, bias = _tensors((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 8), (1, 1, 1, 11))
    bias = -bias.abs() if with_bias else None
    out, lse = reference_attend(q, k, v, SCALE, bias)
    want, want_lse = _softmax_attention(q, k, v, bias)
    torch.testing.assert_close(out.double(), want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-6, rtol=1e-6)


def test_the_reference_kernel_is_the_same_in_chunks(monkeypatch):
    q, k, v = _tensors((1, 2, 10, 8), (1, 2, 7, 8), (1, 2, 7, 8), seed=1)
    whole = reference_attend(q, k, v, SCALE)
    monkeypatch.setattr(kernels, "_REFERENCE_QUERY_CHUNK", 3)  # 10 rows: chunks of 3, 3, 3 and 1
    chunked = reference_attend(q, k, v, SCALE)
    for got, want in zip(chunked, whole):  # matrix products of other sizes: equal up to rounding
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(chunked[0].double(), _softmax_attention(q, k, v)[0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_selector_keeps_one_kernel_per_device_dtype_head_size_and_bias(dtype):
    q, k, v = (x.to(dtype) for x in _tensors((1, 2, 5, 16), (1, 2, 6, 16), (1, 2, 6, 16), seed=2))
    selector = KernelSelector()
    selector.attend(q, k, v, SCALE)
    selector.attend(q, k, v, SCALE, torch.zeros(1, 1, 1, 6))
    selector.attend(q, k, v, SCALE)
    assert set(selector.chosen()) == {("cpu", dtype, 16, False), ("cpu", dtype, 16, True)}


def test_without_fused_kernels_the_reference_runs():
    q, k, v = _tensors((1, 2, 5, 16), (1, 2, 6, 16), (1, 2, 6, 16), seed=3)
    selector = KernelSelector(allow_fused=False)
    out, lse = selector.attend(q, k, v, SCALE)
    assert set(selector.chosen().values()) == {"reference"}
    want, want_lse = reference_attend(q, k, v, SCALE)
    assert torch.equal(out, want) and torch.equal(lse, want_lse)


def test_a_kernel_that_fails_its_probe_is_not_chosen():
    def wrong(q, k, v, scale, key_bias=None):
        out, lse = reference_attend(q, k, v, scale, key_bias)
        return out + 1.0, lse

    q = torch.zeros(1, 1, 1, 8)
    assert not KernelSelector._probe(wrong, q, False)
    assert KernelSelector._probe(reference_attend, q, True)


@pytest.mark.parametrize("with_query_bias", [False, True])
def test_merging_parts_is_one_softmax_over_their_union(with_query_bias):
    """Three key parts attended apart, merged through their log-sum-exps; per-query biases shift a part's weight
    (-inf drops it for that query)."""
    q, k, v = _tensors((2, 2, 6, 8), (2, 2, 10, 8), (2, 2, 10, 8), seed=4)
    cuts = [(0, 3), (3, 7), (7, 10)]
    outs, lses = [], []
    for lo, hi in cuts:
        o, lse = reference_attend(q, k[:, :, lo:hi], v[:, :, lo:hi], SCALE)
        outs.append(o)
        lses.append(lse)
    biases = [None, None, None]
    dense_bias = torch.zeros(6, 10)
    if with_query_bias:
        shift = torch.linspace(-2.0, 1.0, 6)
        drop = torch.tensor([0.0, float("-inf"), 0.0, 0.0, float("-inf"), 0.0])
        biases = [shift, None, drop]
        dense_bias[:, 0:3] = shift[:, None]
        dense_bias[:, 7:10] = drop[:, None]
    out, lse = merge_partials(outs, lses, biases)
    want, want_lse = _softmax_attention(q, k, v, dense_bias)
    torch.testing.assert_close(out.double(), want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-6, rtol=1e-6)


def test_weighted_sum_consumes_only_fp32_outputs_it_may_write():
    a, b = torch.ones(1, 1, 2, 3), torch.full((1, 1, 2, 3), 2.0)
    wa, wb = torch.tensor([[[0.25, 0.5]]]), torch.tensor([[[0.75, 0.5]]])
    kept = weighted_sum([a, b], [wa, wb], consume=False)
    assert torch.equal(a, torch.ones(1, 1, 2, 3))  # not written
    want = torch.tensor([[[[1.75] * 3, [1.5] * 3]]])
    assert torch.equal(kept, want)
    consumed = weighted_sum([a, b], [wa, wb], consume=True)
    assert consumed.data_ptr() == a.data_ptr() and torch.equal(consumed, want)
    half = torch.ones(1, 1, 2, 3, dtype=torch.float16)
    out = weighted_sum([half, b], [wa, wb], consume=True)
    assert out.dtype == torch.float32 and out.data_ptr() != half.data_ptr()
