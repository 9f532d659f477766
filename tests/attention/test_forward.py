"""What a feature sees of a forward: the layout of each joint call, and the Modifier defaults."""
import dataclasses

import pytest
import torch

from joint_attention_pack.attention.forward import BlockRef, ForwardState, Modifier, TextStream
from joint_attention_pack.attention.joint import CallSpec
from joint_attention_pack.attention.layout import TokenLayout


def _state(n_txt=5, region_lens=(3, 2), n_img=12, grid=(3, 4)):
    return ForwardState("flux", n_txt + sum(region_lens), n_txt, region_lens, n_img, grid, (0, 1), 0.5, 2, 1)


def test_layout_for_reads_the_reference_tokens_from_the_call_length():
    state = _state()
    assert state.layout_for(22) == TokenLayout(5, 12, 0, (3, 2), (3, 4))
    assert state.layout_for(26) == TokenLayout(5, 12, 4, (3, 2), (3, 4))  # Kontext: 4 reference tokens after the image


def test_layout_for_an_image_only_call_is_none():
    """SD3.5's attn2 attends the image tokens alone: fewer tokens than text + image."""
    assert _state().layout_for(12) is None


def test_layout_for_is_worked_out_once_per_length():
    state = _state()
    first = state.layout_for(22)
    state.region_lens = ()  # what the layout was made from changes: the kept layout is still returned
    assert state.layout_for(22) is first
    assert state.layout_for(23).region_lens == ()


def test_layout_for_takes_lists_and_gives_hashable_layouts():
    state = ForwardState("flux", 7, 5, [2], 12, [3, 4], (0,), 0.5, 1, 0)
    layout = state.layout_for(19)
    assert layout.region_lens == (2,) and layout.grid == (3, 4)
    assert hash(layout) == hash(TokenLayout(5, 12, 0, (2,), (3, 4)))


def test_block_refs_are_values():
    assert BlockRef("single", 0, 19) == BlockRef("single", 0, 19)
    with pytest.raises(dataclasses.FrozenInstanceError):
        BlockRef("single", 0, 19).index = 1


def test_the_modifier_base_does_nothing():
    state, block = _state(), BlockRef("double", 0, 0)
    modifier = Modifier()
    text = TextStream(torch.ones(1, 5, 4), 0, 5)
    assert modifier.begin_forward(state) is None
    assert modifier.edit_text(state, block, text) is None and torch.equal(text.tensor, torch.ones(1, 5, 4))
    assert modifier.expects(state) == () and modifier.tensors() == []
    assert modifier.stacks is False
    spec = CallSpec()
    modifier.contribute(state, block, 0, spec)
    assert spec == CallSpec()
