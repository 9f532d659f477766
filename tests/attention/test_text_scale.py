"""Text scale per block: the text stream scaled, emptied, or the block skipped, in the blocks and steps of its gate."""
import pytest
import torch

from joint_attention_pack.attention.forward import BLOCKS, BlockRef, ForwardState, TextStream
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.text_scale import TextScaleModifier, scaled_text

BLOCK = BlockRef("double", 2, 2)
SELECTED = Gate(numbers=frozenset({2}))


def _state(sigma=0.5):
    return ForwardState("flux", 6, 6, (), 16, (4, 4), (0, 1), sigma, 4, 0)


def _stream(start=0, stop=6, length=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensor = torch.randn(2, length or stop, 8, generator=g)
    return TextStream(tensor, start, stop)


def test_scale_multiplies_the_text_tokens_and_leaves_the_input_alone():
    text = _stream()
    before = text.tensor.clone()
    assert TextScaleModifier(SELECTED, 1.5, "scale", None).edit_text(_state(), BLOCK, text) is None
    torch.testing.assert_close(text.tensor, before * 1.5, rtol=0, atol=0)
    assert text.tensor.data_ptr() != before.data_ptr()


def test_empty_sets_the_text_to_zero():
    text = _stream()
    TextScaleModifier(SELECTED, 1.5, "empty", None).edit_text(_state(), BLOCK, text)
    assert torch.equal(text.tensor, torch.zeros_like(text.tensor))


def test_skip_asks_the_host_to_skip_the_block():
    text = _stream()
    before = text.tensor
    assert TextScaleModifier(SELECTED, 1.5, "skip", None).edit_text(_state(), BLOCK, text) == "skip"
    assert text.tensor is before


def test_token_range_scales_only_its_tokens_of_the_text():
    """A joint stream (single blocks: text first, then image): only positions 1-2 of the text are scaled."""
    text = _stream(start=0, stop=6, length=22)
    before = text.tensor.clone()
    TextScaleModifier(SELECTED, 2.0, "scale", (1, 3)).edit_text(_state(), BLOCK, text)
    want = before.clone()
    want[:, 1:3] *= 2.0
    torch.testing.assert_close(text.tensor, want, rtol=0, atol=0)


def test_scaled_text_counts_positions_from_the_start_of_the_text_and_clips_to_its_end():
    text = _stream(start=3, stop=7, length=10)
    out = scaled_text(text, (2, 50), 0.0)
    want = text.tensor.clone()
    want[:, 5:7] = 0.0
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    assert scaled_text(text, (4, 9), 0.0) is text.tensor  # nothing selected: the stream itself, no copy


def test_a_token_range_past_the_text_is_an_error_naming_the_node_and_the_fix():
    text = _stream(stop=6)
    modifier = TextScaleModifier(SELECTED, 1.5, "scale", (6, 10), owner="Text Scale per Block")
    with pytest.raises(ValueError) as raised:
        modifier.edit_text(_state(), BLOCK, text)
    message = str(raised.value)
    assert message.startswith("[Text Scale per Block] input 'token_range': 6-9 selects no token")
    assert "has 6 tokens (positions 0-5)" in message and "leave token_range empty" in message


@pytest.mark.parametrize("gate,sigma", [(Gate(numbers=frozenset({3})), 0.5), (Gate(numbers=frozenset({2}), sigma_low=0.6), 0.5)])
def test_outside_its_blocks_or_window_nothing_changes(gate, sigma):
    text = _stream()
    before = text.tensor
    modifier = TextScaleModifier(gate, 0.0, "scale", None)
    assert modifier.edit_text(_state(sigma), BLOCK, text) is None
    assert text.tensor is before


def test_expects_the_block_hooks_only_when_it_acts():
    assert TextScaleModifier(SELECTED, 1.5, "scale", None).expects(_state()) == (BLOCKS,)
    assert TextScaleModifier(SELECTED, 1.0, "scale", None).expects(_state()) == ()  # scale 1: identity
    assert TextScaleModifier(Gate(), 0.0, "empty", None).expects(_state()) == ()  # no block selected
    assert TextScaleModifier(Gate(numbers=frozenset({2}), sigma_high=0.4), 1.5, "skip", None).expects(_state()) == ()
    assert TextScaleModifier(SELECTED, 1.0, "empty", None).expects(_state()) == (BLOCKS,)  # empty ignores scale


def test_scale_one_leaves_the_stream_as_it_is():
    text = _stream()
    before = text.tensor
    assert TextScaleModifier(SELECTED, 1.0, "scale", None).edit_text(_state(), BLOCK, text) is None
    assert text.tensor is before


def test_mode_is_checked():
    with pytest.raises(ValueError, match=r"mode must be one of \('scale', 'empty', 'skip'\), got 'mute'"):
        TextScaleModifier(SELECTED, 1.0, "mute", None)
