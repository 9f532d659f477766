"""Where text, region-text, image and reference tokens sit in a joint sequence."""
import dataclasses

import pytest

from joint_attention_pack.attention.layout import TokenLayout


def _positions(s: slice) -> list:
    return list(range(s.start, s.stop))


def test_the_parts_tile_the_sequence_in_order():
    layout = TokenLayout(n_txt=5, n_img=12, n_ref=3, region_lens=(4, 2), grid=(3, 4))
    parts = [layout.txt, layout.region(0), layout.region(1), layout.img, layout.ref]
    assert sum((_positions(p) for p in parts), []) == list(range(layout.total))
    assert (layout.n_regions_tokens, layout.n_context, layout.total) == (6, 11, 26)
    assert _positions(layout.regions) == _positions(layout.region(0)) + _positions(layout.region(1))
    assert _positions(layout.visual) == _positions(layout.img) + _positions(layout.ref)


def test_without_regions_or_reference_tokens():
    layout = TokenLayout(n_txt=5, n_img=12)
    assert layout.regions == slice(5, 5) and layout.ref == slice(17, 17) and layout.visual == layout.img
    assert layout.n_context == layout.n_txt == 5 and layout.total == 17
    with pytest.raises(IndexError):
        layout.region(0)


def test_layouts_are_values_usable_as_cache_keys():
    a = TokenLayout(5, 12, 0, (4,), (3, 4))
    assert a == TokenLayout(5, 12, 0, (4,), (3, 4)) and a != TokenLayout(5, 12, 0, (3,), (3, 4))
    assert len({a: 1, TokenLayout(5, 12, 0, (4,), (3, 4)): 2}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.n_img = 3
