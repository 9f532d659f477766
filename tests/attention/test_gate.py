"""The gate every feature shares: selected blocks and a sigma window."""
import math

import pytest

from joint_attention_pack.attention.forward import BlockRef
from joint_attention_pack.attention.gate import Gate

DOUBLE_3 = BlockRef("double", 3, 3)
SINGLE_0 = BlockRef("single", 0, 19)  # FLUX: singles are numbered after the 19 doubles


@pytest.mark.parametrize("sigma,inside", [(0.2, True), (0.5, True), (0.8, True), (0.19, False), (0.81, False)])
def test_the_window_holds_both_ends(sigma, inside):
    assert Gate(sigma_high=0.8, sigma_low=0.2).in_window(sigma) is inside


def test_the_default_window_is_every_step():
    gate = Gate()
    assert gate.in_window(math.inf) and gate.in_window(0.0) and gate.in_window(-1.0)


def test_blocks_are_selected_per_kind_by_index():
    gate = Gate(double=frozenset({3}), single=frozenset({0}))
    assert gate.selects(DOUBLE_3) and gate.selects(SINGLE_0)
    assert not gate.selects(BlockRef("double", 0, 0)) and not gate.selects(BlockRef("single", 3, 22))
    only_doubles = Gate(double=frozenset({0}))
    assert not only_doubles.selects(BlockRef("single", 0, 19))  # index 0 of the other kind


def test_numbers_select_by_the_model_wide_numbering_and_override_the_kinds():
    gate = Gate(double=frozenset({3}), numbers=frozenset({19}))
    assert gate.selects(SINGLE_0) and not gate.selects(DOUBLE_3)


def test_open_needs_both_the_block_and_the_window():
    gate = Gate(double=frozenset({3}), sigma_low=0.5)
    assert gate.open(DOUBLE_3, 0.6)
    assert not gate.open(DOUBLE_3, 0.4)
    assert not gate.open(SINGLE_0, 0.6)


@pytest.mark.parametrize("gate,empty", [(Gate(), True), (Gate(double=frozenset({1})), False),
                                        (Gate(single=frozenset({0})), False), (Gate(numbers=frozenset()), True),
                                        (Gate(double=frozenset({1}), numbers=frozenset()), True)])
def test_empty_when_no_block_is_selected(gate, empty):
    assert gate.empty is empty


def test_gates_compare_and_hash_by_value():
    assert Gate(double=frozenset({1}), sigma_low=0.2) == Gate(double=frozenset({1}), sigma_low=0.2)
    assert len({Gate(double=frozenset({1})), Gate(double=frozenset({1}))}) == 1
