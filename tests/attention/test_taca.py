"""TACA: a temperature on image-query x text-key logits, as a logit modifier the executor composes."""
import math

import pytest
import torch

from ja_reference import dense_bias
from joint_attention_pack.attention.dispatcher import JointAttentionDispatcher
from joint_attention_pack.attention.forward import ATTENTION, COND, UNCOND, BlockRef, ForwardState
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.joint import CallSpec, KeyPart, QueryGroup, joint_attention
from joint_attention_pack.attention.kernels import KernelSelector
from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.taca import TacaModifier, Temperature, with_gamma

D = 8
SCALE = 1.0 / math.sqrt(D)
BLOCK = BlockRef("double", 0, 0)
EVERY_STEP = Gate(double=frozenset({0}))


def _qkv(layout, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 2, layout.total, D, generator=g) for _ in range(3)]


def _tempered_reference(q, k, v, layout, gamma, texts_unread=False):
    """softmax(T * (q.k * scale) + bias) @ v in float64, T = gamma on (image row, text key), 1 elsewhere."""
    temperature = torch.ones(layout.total, layout.total, dtype=torch.float64)
    temperature[layout.img, : layout.n_context] = gamma
    logits = temperature * (q.double() @ k.double().transpose(-1, -2)) * SCALE
    bias = dense_bias(layout, isolate_regions=texts_unread) if layout.region_lens else 0.0
    return torch.softmax(logits + bias, dim=-1) @ v.double()


@pytest.mark.parametrize("gamma", [0.5, 1.3, 2.0])
@pytest.mark.parametrize("region_lens,texts_unread", [((), True), ((3, 2), True), ((3, 2), False)])
@pytest.mark.parametrize("n_ref", [0, 2])
def test_temperature_matches_a_dense_softmax_with_the_temperature_written_out(gamma, region_lens, texts_unread, n_ref):
    """Image rows x every text key read (base text, and region texts where they are read) get gamma; text rows,
    reference rows and image x image logits keep theirs."""
    layout = TokenLayout(n_txt=4, n_img=12, n_ref=n_ref, region_lens=region_lens, grid=(3, 4))
    q, k, v = _qkv(layout)
    spec = CallSpec(texts_unread=texts_unread, modifiers=(Temperature(gamma),))
    out = joint_attention(q, k, v, layout, spec, KernelSelector(), SCALE)
    torch.testing.assert_close(out.double(), _tempered_reference(q, k, v, layout, gamma, texts_unread),
                               atol=1e-5, rtol=1e-5)


def test_the_temperature_differs_from_plain_attention_only_in_image_rows():
    layout = TokenLayout(n_txt=4, n_img=12, n_ref=2, grid=(3, 4))
    q, k, v = _qkv(layout, seed=1)
    plain = joint_attention(q, k, v, layout, CallSpec(), KernelSelector(), SCALE)
    hot = joint_attention(q, k, v, layout, CallSpec(modifiers=(Temperature(3.0),)), KernelSelector(), SCALE)
    not_image = torch.ones(layout.total, dtype=torch.bool)
    not_image[layout.img] = False
    torch.testing.assert_close(hot[:, :, not_image], plain[:, :, not_image], atol=1e-6, rtol=1e-6)
    assert (hot[:, :, layout.img] - plain[:, :, layout.img]).abs().max() > 1e-2


def test_the_temperature_is_a_function_of_the_group_and_part_only():
    image_rows, other_rows = QueryGroup(slice(4, 16), image_rows=slice(0, 12)), QueryGroup(slice(0, 4))
    text, visual = KeyPart(slice(0, 4), text_offset=0), KeyPart(slice(4, 16))
    t = Temperature(1.7)
    assert [t.logit_scale(g, p) for g in (image_rows, other_rows) for p in (text, visual)] == [1.7, 1.0, 1.0, 1.0]
    assert Temperature(1.7) == t and hash(Temperature(1.7)) == hash(t)  # cache keys: equal when the function is


def test_stacked_gammas_multiply_in_node_order_and_a_product_of_one_leaves_none():
    assert with_gamma((), 1.0) == ()
    assert with_gamma((), 1.2) == (Temperature(1.2),)
    assert with_gamma((Temperature(1.2),), 1.5) == (Temperature(1.2 * 1.5),)
    assert with_gamma((Temperature(2.0),), 0.5) == ()
    other = object()
    assert with_gamma((other, Temperature(2.0)), 3.0) == (other, Temperature(6.0))  # others kept, in place


def _state(row_kinds=(COND, UNCOND), sigma=0.8, layout=TokenLayout(4, 12, 0, (), (3, 4))):
    return ForwardState("flux", layout.n_context, layout.n_txt, layout.region_lens, layout.n_img, layout.grid,
                        row_kinds, sigma, 1, 0)


def _attend(dispatcher, state, q, k, v):
    plan = dispatcher.plan(state, BLOCK, q.shape[2])
    return plan, (None if plan is None else dispatcher.attend(plan, q, k, v, SCALE))


@pytest.mark.parametrize("apply_to,tempered", [("both", (0, 1)), ("cond", (0,)), ("uncond", (1,))])
def test_apply_to_tempers_the_rows_of_its_kind_only(apply_to, tempered):
    layout = TokenLayout(4, 12, 0, (), (3, 4))
    q, k, v = _qkv(layout, seed=2)
    dispatcher = JointAttentionDispatcher([TacaModifier(1.6, apply_to, EVERY_STEP)])
    plan, out = _attend(dispatcher, _state(), q, k, v)
    assert len(plan[1]) == (1 if apply_to == "both" else 2)  # rows with equal specs run as one call
    for row in range(2):
        want = _tempered_reference(q[row:row + 1], k[row:row + 1], v[row:row + 1], layout, 1.6 if row in tempered else 1.0)
        torch.testing.assert_close(out[row:row + 1].double(), want, atol=1e-5, rtol=1e-5)


def test_outside_its_sigma_window_or_blocks_taca_leaves_the_call_to_the_host():
    """Plan None: the host runs its own attention, bit for bit."""
    layout = TokenLayout(4, 12, 0, (), (3, 4))
    q, k, v = _qkv(layout)
    early = Gate(double=frozenset({0}), sigma_low=0.5)
    dispatcher = JointAttentionDispatcher([TacaModifier(1.3, "both", early)])
    assert _attend(dispatcher, _state(sigma=0.7), q, k, v)[0] is not None
    assert dispatcher.modifiers[0].expects(_state(sigma=0.7)) == (ATTENTION,)
    assert _attend(dispatcher, _state(sigma=0.3), q, k, v)[0] is None
    assert dispatcher.modifiers[0].expects(_state(sigma=0.3)) == ()
    other_block = BlockRef("double", 1, 1)
    assert dispatcher.plan(_state(sigma=0.7), other_block, layout.total) is None


@pytest.mark.parametrize("gammas", [(1.0,), (2.0, 0.5)])
def test_a_gamma_of_one_is_the_plain_model(gammas):
    """Gamma 1 (or gammas whose product is exactly 1) contributes nothing: the host's own attention runs."""
    dispatcher = JointAttentionDispatcher()
    for gamma in gammas:
        dispatcher = dispatcher.with_modifier(TacaModifier(gamma, "both", EVERY_STEP))
    assert len(dispatcher.modifiers) == len(gammas)  # TACA stacks
    assert dispatcher.plan(_state(), BLOCK, 16) is None


def test_stacked_taca_nodes_multiply_where_both_act():
    layout = TokenLayout(4, 12, 0, (), (3, 4))
    q, k, v = _qkv(layout, batch=1, seed=3)
    dispatcher = JointAttentionDispatcher([TacaModifier(1.5, "both", EVERY_STEP), TacaModifier(1.2, "both", EVERY_STEP)])
    plan, out = _attend(dispatcher, _state(row_kinds=(COND,)), q, k, v)
    (spec, rows), = plan[1]
    assert spec.modifiers == (Temperature(1.5 * 1.2),)
    torch.testing.assert_close(out.double(), _tempered_reference(q, k, v, layout, 1.5 * 1.2), atol=1e-5, rtol=1e-5)


def test_apply_to_is_checked():
    with pytest.raises(ValueError, match=r"apply_to must be one of \('both', 'cond', 'uncond'\), got 'negative'"):
        TacaModifier(1.2, "negative", EVERY_STEP)
