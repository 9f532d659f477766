"""A region's per-token adapter weights over the joint sequence, and what each layer role sees of them."""
import pytest
import torch

from joint_attention_pack.attention.layout import TokenLayout
from joint_attention_pack.attention.regional import token_masks
from joint_attention_pack.attention.token_weights import (
    IMAGE,
    JOINT,
    JOINT_IMAGE_FIRST,
    TEXT,
    StreamMismatch,
    region_weights,
    stream_layout,
    stream_weights,
)


def _naive(layout: TokenLayout, region: int, image_weight) -> list:
    """Token by token: which part of the sequence a position is in decides its weight."""
    out = []
    for p in range(layout.total):
        own = region < len(layout.region_lens) and layout.region(region).start <= p < layout.region(region).stop
        if own:
            out.append(1.0)
        elif layout.img.start <= p < layout.img.stop:
            out.append(float(image_weight[p - layout.img.start]))
        else:
            out.append(0.0)
    return out


@pytest.mark.parametrize("region", [0, 1, 2])
@pytest.mark.parametrize("n_ref", [0, 5])
def test_weights_match_a_token_by_token_reference(region, n_ref):
    torch.manual_seed(region)
    masks = torch.rand(3, 24, 32)  # soft masks at a finer resolution than the token grid
    grid = (3, 4)
    tm = token_masks(masks, (6, 8), grid, patch=2, latent_px=4)
    strengths = [0.5, 1.0, 2.0]
    layout = TokenLayout(n_txt=7, n_img=12, n_ref=n_ref, region_lens=(4, 2, 3), grid=grid)
    image_weight = tm[region] * strengths[region]
    got = region_weights(layout, region, image_weight)
    assert got.tolist() == pytest.approx(_naive(layout, region, image_weight), abs=0.0)


def test_a_forward_without_region_texts_weighs_only_image_tokens():
    layout = TokenLayout(n_txt=5, n_img=6)
    w = region_weights(layout, 1, torch.full((6,), 0.25))
    assert w[:5].eq(0).all() and w[5:].eq(0.25).all()


def test_a_full_region_at_strength_one_weighs_image_and_its_text_fully():
    tm = token_masks(torch.ones(1, 3, 2), (8, 8), (4, 4))  # any mask resolution covers every token
    layout = TokenLayout(n_txt=5, n_img=16, region_lens=(3,), grid=(4, 4))
    w = region_weights(layout, 0, tm[0])
    assert w[layout.txt].eq(0).all() and w[layout.region(0)].eq(1).all() and w[layout.img].eq(1).all()


def test_each_role_sees_its_tokens_in_its_order():
    layout = TokenLayout(n_txt=3, n_img=4, n_ref=2, region_lens=(2,), grid=(2, 2))
    w = torch.arange(float(layout.total))[None].repeat(2, 1)  # two rows, positions as values
    assert stream_weights(w, layout, TEXT)[0].tolist() == [0, 1, 2, 3, 4]
    assert stream_weights(w, layout, IMAGE)[0].tolist() == [5, 6, 7, 8, 9, 10]
    assert torch.equal(stream_weights(w, layout, JOINT), w)
    assert stream_weights(w, layout, JOINT_IMAGE_FIRST)[1].tolist() == [5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4]


def test_a_layer_finds_its_layout_from_what_it_sees():
    def layout_for(total):
        n_ref = total - 5 - 4
        return TokenLayout(3, 4, n_ref, (2,), (2, 2)) if n_ref >= 0 else None

    assert stream_layout(layout_for, 5, 4, TEXT, 5).n_ref == 0
    assert stream_layout(layout_for, 5, 4, IMAGE, 7).n_ref == 3
    assert stream_layout(layout_for, 5, 4, JOINT, 11).n_ref == 2
    for role, length in ((TEXT, 6), (IMAGE, 3), (JOINT, 8)):
        with pytest.raises(StreamMismatch, match=f"saw {length} tokens"):
            stream_layout(layout_for, 5, 4, role, length)
    with pytest.raises(ValueError, match="role"):
        stream_layout(layout_for, 5, 4, "shared", 5)
