"""Region masks over a video's (frames, rows, cols) token grid (attention/frame_masks.py): which MASK batch sizes a video
region takes, how pixel frames map to latent frames, and the plan the regional modifier makes from them, each
against a plain per-frame loop written here."""
import pytest
import torch

from joint_attention_pack.attention.forward import COND, UNCOND, ForwardState
from joint_attention_pack.attention.frame_masks import FrameCountMismatch, accepted_counts, latent_frame_masks, per_token_frame
from joint_attention_pack.attention.gate import Gate
from joint_attention_pack.attention.regional import Region, RegionalModifier, token_masks

GRID, LATENT = (3, 4), (6, 8)  # per frame: 12 tokens of 2 x 2 latent cells of 8 x 8 pixels (a 48 x 64 image)


def _masks(n, seed=0):
    return torch.rand(n, 48, 64, generator=torch.Generator().manual_seed(seed))


def _video_state(latent_frames, frames=None, stride=4):
    frames = frames or latent_frames
    return ForwardState("hunyuan_video", 5, 5, (), frames * 12, GRID, (COND, UNCOND), 0.5, 2, 0, latent_hw=LATENT,
                        frames=frames, latent_frames=latent_frames, frame_stride=stride)


@pytest.mark.parametrize("latent_frames", [1, 2, 5])
def test_one_mask_is_every_frame(latent_frames):
    mask = _masks(1)
    got = latent_frame_masks(mask, latent_frames, 4)
    assert got.shape == (latent_frames, 48, 64)
    for f in range(latent_frames):
        assert torch.equal(got[f], mask[0])


def test_one_mask_per_latent_frame_is_kept_as_it_is():
    masks = _masks(5)
    assert torch.equal(latent_frame_masks(masks, 5, 4), masks)


@pytest.mark.parametrize("latent_frames,stride", [(2, 4), (5, 4), (3, 2)])
def test_pixel_frames_map_to_latent_frames_as_the_causal_vae_compresses_them(latent_frames, stride):
    """1 + stride x (n - 1) pixel frames: frame 0 alone is latent frame 0, then each group of `stride` frames is one
    latent frame (its mask the group's mean)."""
    pixel = 1 + stride * (latent_frames - 1)
    masks = _masks(pixel, seed=1)
    got = latent_frame_masks(masks, latent_frames, stride)
    want = [masks[0]] + [sum(masks[1 + stride * (f - 1) + k] for k in range(stride)) / stride
                         for f in range(1, latent_frames)]
    torch.testing.assert_close(got, torch.stack(want))


@pytest.mark.parametrize("count,latent_frames", [(2, 3), (4, 2), (6, 2), (3, 1)])
def test_any_other_count_is_refused_with_the_counts_accepted(count, latent_frames):
    with pytest.raises(FrameCountMismatch) as caught:
        latent_frame_masks(_masks(count), latent_frames, 4)
    message = str(caught.value)
    assert f"a batch of {count} masks" in message and f"{latent_frames} latent frame(s)" in message
    for accepted in accepted_counts(latent_frames, 4):
        assert str(accepted) in message


def test_accepted_counts():
    assert accepted_counts(1, 4) == (1,)
    assert accepted_counts(5, 4) == (1, 5, 17)
    assert accepted_counts(2, 1) == (1, 2)


def test_token_frames_average_their_latent_frames_and_pad_the_last():
    tokens = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3)
    assert torch.equal(per_token_frame(tokens, 5), tokens.reshape(-1))
    got = per_token_frame(tokens, 3)  # a temporal patch of 2: frames (0, 1), (2, 3), (4, padding)
    want = torch.stack([(tokens[0] + tokens[1]) / 2, (tokens[2] + tokens[3]) / 2, tokens[4] / 2]).reshape(-1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("count", [1, 3, 9])
def test_the_plan_holds_each_frame_mask_on_its_frame_tokens(count):
    """The regional plan's token masks over a 3-frame video: frame f's image tokens carry frame f's mask, mapped to
    the token grid as an image's mask is, frame by frame (the model's token order)."""
    masks = _masks(count, seed=2)
    region = Region(torch.ones(3, 6), masks, 1.0, content_hash=f"video:{count}")
    modifier = RegionalModifier([region], 0.0, Gate(double=frozenset({0})))
    state = _video_state(3)
    modifier.begin_forward(state)
    plan_masks = state.regions[0].masks
    assert len(state.regions) == 1 and plan_masks.shape == (1, 3 * 12)
    per_latent = latent_frame_masks(masks, 3, 4)
    for f in range(3):
        want = token_masks(per_latent[f][None], LATENT, GRID)[0]
        torch.testing.assert_close(plan_masks[0, f * 12:(f + 1) * 12], want)


def test_a_mask_on_one_frame_covers_that_frame_only():
    """A mask batch, one per latent frame, white on frame 1 only: the region covers frame 1's tokens, all of them,
    and none of the other frames' (a third of the video's tokens)."""
    masks = torch.zeros(3, 48, 64)
    masks[1] = 1.0
    modifier = RegionalModifier([Region(torch.ones(3, 6), masks, 1.0, content_hash="one frame")], 0.0,
                                Gate(double=frozenset({0})))
    state = _video_state(3)
    modifier.begin_forward(state)
    covered = state.regions[0].masks[0].reshape(3, 12)
    assert covered[1].eq(1).all() and covered[0].eq(0).all() and covered[2].eq(0).all()


def test_the_modifier_refuses_a_mask_batch_that_matches_no_frame_count():
    modifier = RegionalModifier([Region(torch.ones(3, 6), _masks(4), 1.0, content_hash="four")], 0.0,
                                Gate(double=frozenset({0})))
    with pytest.raises(FrameCountMismatch, match=r"a batch of 4 masks does not match the 3 latent frame\(s\)"):
        modifier.begin_forward(_video_state(3))
