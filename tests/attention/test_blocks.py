"""Block selections and token ranges as users type them, and the errors that say how to fix them."""
import pytest

from joint_attention_pack.attention.blocks import BlockSelectionError, parse_blocks, parse_token_range


@pytest.mark.parametrize("text,want", [
    ("all", set(range(6))), ("ALL ", set(range(6))), ("none", set()), ("", set()), (None, set()),
    ("odd", {1, 3, 5}), ("even", {0, 2, 4}), ("0-2,5", {0, 1, 2, 5}), (" 4 ", {4}), ("1-1", {1}),
    ("0-3, 2-4", {0, 1, 2, 3, 4}),
])
def test_parse_blocks_reads_words_numbers_and_ranges(text, want):
    assert parse_blocks(text, 6) == frozenset(want)


def test_parse_blocks_numbers_from_first():
    """FLUX's model-wide numbering: singles follow the 19 doubles."""
    assert parse_blocks("all", 3, first=19) == frozenset({19, 20, 21})
    assert parse_blocks("odd", 4, first=19) == frozenset({20, 22})
    assert parse_blocks("19-20", 3, first=19) == frozenset({19, 20})


@pytest.mark.parametrize("text,message", [
    ("7", "double_blocks: '7' is outside this model's blocks; valid numbers are 0-5"),
    ("3-1", "double_blocks: range '3-1' runs backwards; write it as 1-3"),
    ("first", "double_blocks: cannot read 'first'; use all, none, odd, even or numbers and ranges like 0-9,12 within 0-5"),
    ("1,,2", "double_blocks: cannot read ''"),
    ("1234567", "double_blocks: cannot read '1234567'"),
    ("1-" + "9" * 40, "cannot read '1-" + "9" * 38 + "...'"),
])
def test_parse_blocks_errors_name_the_input_and_the_valid_range(text, message):
    with pytest.raises(BlockSelectionError) as raised:
        parse_blocks(text, 6, "double_blocks")
    assert message in str(raised.value)


def test_parse_blocks_on_a_model_without_such_blocks():
    assert parse_blocks("all", 0) == frozenset()
    with pytest.raises(BlockSelectionError, match=r"valid numbers are none \(the model has no such blocks\)"):
        parse_blocks("0", 0, "single_blocks")


def test_parse_blocks_refuses_overlong_text_before_reading_it():
    with pytest.raises(BlockSelectionError, match=r"blocks: 1001 characters; write at most 1000"):
        parse_blocks("1," * 500 + "1", 6)


def test_a_block_selection_error_is_a_value_error():
    assert issubclass(BlockSelectionError, ValueError)


@pytest.mark.parametrize("text,want", [("", None), ("  ", None), (None, None), ("0-76", (0, 77)), ("5", (5, 6)),
                                       (" 3 - 4 ", (3, 5))])
def test_parse_token_range_is_inclusive_and_empty_means_all(text, want):
    assert parse_token_range(text) == want


@pytest.mark.parametrize("text,message", [
    ("4-2", "token_range: range '4-2' runs backwards; write it as 2-4"),
    ("a-b", "token_range: cannot read 'a-b'; write a-b with numbers of at most 6 digits, e.g. 0-76"),
    ("1,2", "cannot read '1,2'"),
    ("1" * 1001, "cannot read '" + "1" * 40 + "...'"),
])
def test_parse_token_range_errors(text, message):
    with pytest.raises(BlockSelectionError) as raised:
        parse_token_range(text)
    assert message in str(raised.value)
