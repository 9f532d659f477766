"""The dispatcher without a host: modifiers kept, replaced and stacked; calls planned per row; rows attended."""
import math
from dataclasses import dataclass

import pytest
import torch

from joint_attention_pack.attention.dispatcher import JointAttentionDispatcher
from joint_attention_pack.attention.forward import COND, UNCOND, BlockRef, ForwardState, Modifier, TextStream
from joint_attention_pack.attention.joint import CallSpec
from joint_attention_pack.attention.layout import TokenLayout

D = 8
SCALE = 1.0 / math.sqrt(D)
BLOCK = BlockRef("double", 0, 0)
LAYOUT = TokenLayout(n_txt=4, n_img=12, n_ref=0, grid=(3, 4))


@dataclass(frozen=True)
class TextTemperature:
    """A logit modifier of the test's own (the dispatcher and executor know no feature): `factor` on image rows x
    text keys."""

    factor: float

    def logit_scale(self, group, part) -> float:
        return self.factor if group.image_rows is not None and part.text_offset is not None else 1.0


class Named(Modifier):
    def __init__(self, key, stacks=False, factor=None, kinds=(COND, UNCOND), items=None):
        self.key, self.stacks, self.factor, self.kinds, self.items = key, stacks, factor, kinds, items

    def contribute(self, state, block, row_kind, spec, item=0):
        if self.factor is not None and row_kind in self.kinds and (self.items is None or item in self.items):
            spec.modifiers += (TextTemperature(self.factor),)


def _state(row_kinds=(COND, UNCOND), row_items=(), layout=LAYOUT):
    return ForwardState("flux", layout.n_context, layout.n_txt, layout.region_lens, layout.n_img, layout.grid,
                        row_kinds, 0.5, 1, 0, row_items=row_items)


def _qkv(batch, seed=0, layout=LAYOUT):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 2, layout.total, D, generator=g) for _ in range(3)]


def _reference(q, k, v, factor):
    """Dense softmax with `factor` on image rows x text keys, float64."""
    logits = (q.double() @ k.double().transpose(-1, -2)) * SCALE
    logits[..., LAYOUT.img, : LAYOUT.n_context] *= factor
    return torch.softmax(logits, dim=-1) @ v.double()


# -- modifiers ----------------------------------------------------------------------------------------------------
def test_with_modifier_keeps_others_and_leaves_the_original_alone():
    a, b = Named("a"), Named("b")
    first = JointAttentionDispatcher([a])
    second = first.with_modifier(b)
    assert first.modifiers == (a,) and second.modifiers == (a, b)


def test_with_modifier_replaces_one_of_the_same_key():
    old, new = Named("a"), Named("a")
    made = JointAttentionDispatcher([old, Named("b")]).with_modifier(new)
    assert [m for m in made.modifiers if m.key == "a"] == [new] and len(made.modifiers) == 2


def test_with_modifier_stacks_a_modifier_that_stacks():
    first, second = Named("t", stacks=True), Named("t", stacks=True)
    made = JointAttentionDispatcher([first]).with_modifier(second)
    assert made.modifiers == (first, second)


def test_forward_hooks_run_every_modifier_in_order():
    class Tokens(Modifier):
        def __init__(self, key, rows, action=None):
            self.key, self.rows, self.action, self.seen = key, rows, action, []

        def begin_forward(self, state):
            return None if self.rows is None else torch.full((self.rows, 3), float(self.rows))

        def edit_text(self, state, block, text):
            self.seen.append(block)
            return self.action

    first, second, third = Tokens("a", 2, "skip"), Tokens("b", None), Tokens("c", 1)
    dispatcher = JointAttentionDispatcher([first, second, third])
    extra = dispatcher.begin_forward(_state())
    assert torch.equal(extra, torch.tensor([[2.0] * 3, [2.0] * 3, [1.0] * 3]))  # appended in modifier order
    assert JointAttentionDispatcher([second]).begin_forward(_state()) is None
    text = TextStream(torch.zeros(1, 4, 3), 0, 4)
    assert dispatcher.edit_text(_state(), BLOCK, text) == "skip"  # an action survives modifiers without one
    assert first.seen == second.seen == third.seen == [BLOCK]


# -- planning -----------------------------------------------------------------------------------------------------
def test_no_modifier_or_no_effect_plans_nothing():
    """None: the host runs its own attention, bit-identical."""
    assert JointAttentionDispatcher().plan(_state(), BLOCK, LAYOUT.total) is None
    assert JointAttentionDispatcher([Named("a")]).plan(_state(), BLOCK, LAYOUT.total) is None


def test_an_image_only_call_is_never_planned():
    """A call over fewer tokens than text + image (SD3.5's image-only attention) has no layout."""
    dispatcher = JointAttentionDispatcher([Named("t", factor=1.5)])
    assert dispatcher.plan(_state(), BLOCK, LAYOUT.n_img) is None


def test_rows_with_equal_specs_are_planned_together():
    """One call per spec: the cond rows together, the uncond rows together."""
    dispatcher = JointAttentionDispatcher([Named("t", factor=1.5, kinds=(COND,))])
    layout, specs = dispatcher.plan(_state(row_kinds=(COND, UNCOND, COND, UNCOND)), BLOCK, LAYOUT.total)
    assert layout == LAYOUT
    assert [(spec, rows) for spec, rows in specs] == [
        (CallSpec(modifiers=(TextTemperature(1.5),)), [0, 2]), (CallSpec(), [1, 3])]


def test_rows_of_different_images_get_their_own_specs():
    """Specs compare by value: rows of different kinds and images whose contributions are equal run together."""
    dispatcher = JointAttentionDispatcher([Named("t", factor=1.5, kinds=(COND,), items=(1,))])
    _, specs = dispatcher.plan(_state(row_kinds=(COND, COND, UNCOND, UNCOND), row_items=(0, 1, 0, 1)), BLOCK,
                               LAYOUT.total)
    assert [rows for _, rows in specs] == [[0, 2, 3], [1]]
    assert specs[1][0].modifiers == (TextTemperature(1.5),)


@pytest.mark.parametrize("row_kinds", [(COND, UNCOND), (UNCOND, COND, COND), (COND, UNCOND, COND, UNCOND)],
                         ids=["contiguous halves", "contiguous, unequal", "scattered rows"])
def test_attend_gives_every_row_its_own_spec(row_kinds):
    q, k, v = _qkv(len(row_kinds), seed=len(row_kinds))
    dispatcher = JointAttentionDispatcher([Named("t", factor=1.8, kinds=(COND,))])
    plan = dispatcher.plan(_state(row_kinds=row_kinds), BLOCK, LAYOUT.total)
    out = dispatcher.attend(plan, q, k, v, SCALE)
    assert out.dtype == q.dtype and out.shape == q.shape
    for row, kind in enumerate(row_kinds):
        want = _reference(q[row:row + 1], k[row:row + 1], v[row:row + 1], 1.8 if kind == COND else 1.0)
        torch.testing.assert_close(out[row:row + 1].double(), want, atol=1e-5, rtol=1e-5)


def test_one_spec_for_every_row_is_one_call():
    q, k, v = _qkv(2, seed=9)
    dispatcher = JointAttentionDispatcher([Named("t", factor=0.7)])
    plan = dispatcher.plan(_state(), BLOCK, LAYOUT.total)
    assert [rows for _, rows in plan[1]] == [[0, 1]]
    torch.testing.assert_close(dispatcher.attend(plan, q, k, v, SCALE).double(), _reference(q, k, v, 0.7),
                               atol=1e-5, rtol=1e-5)


def test_the_planned_layout_is_kept_on_the_state():
    state = _state()
    JointAttentionDispatcher([Named("t", factor=1.5)]).plan(state, BLOCK, LAYOUT.total)
    assert state.call_layout == LAYOUT


def test_tensors_are_every_modifiers():
    class Holding(Modifier):
        def __init__(self, key, tensor):
            self.key, self.tensor = key, tensor

        def tensors(self):
            return [self.tensor]

    a, b = torch.zeros(1), torch.ones(1)
    assert JointAttentionDispatcher([Holding("a", a), Holding("b", b)]).tensors() == [a, b]
