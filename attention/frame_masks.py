"""Region masks over a video's (frames, rows, cols) image token grid.

A region's MASK batch on a video model is read as frames:
- 1 mask: every frame;
- one mask per latent frame;
- one mask per pixel frame of a video the causal VAE encodes to these latent frames (1 + stride x (latent frames - 1)
  pixel frames): the first pixel frame alone makes latent frame 0, each following group of `stride` pixel frames makes
  one latent frame, so its mask is the group's mean.
Any other count is refused (`FrameCountMismatch`). Latent frames are then averaged per token frame (a temporal patch
of several latent frames), and each frame's mask is mapped to the token grid as an image's is.
"""
from __future__ import annotations

import torch


class FrameCountMismatch(ValueError):
    def __init__(self, count: int, latent_frames: int, stride: int):
        accepted = accepted_counts(latent_frames, stride)
        super().__init__(
            f"a batch of {count} masks does not match the {latent_frames} latent frame(s) being sampled; a video "
            f"region takes {' or '.join(map(str, accepted))} mask(s): 1 for every frame, one per latent frame"
            + (f", or one per pixel frame ({accepted[-1]}: the first frame alone, then groups of {stride})"
               if len(accepted) > 2 else ""))
        self.count, self.accepted = count, accepted


def accepted_counts(latent_frames: int, stride: int) -> tuple:
    """The MASK batch sizes a video region takes for `latent_frames` latent frames."""
    pixel = 1 + stride * (latent_frames - 1)
    return tuple(dict.fromkeys((1, latent_frames, pixel)))


def latent_frame_masks(masks: torch.Tensor, latent_frames: int, stride: int) -> torch.Tensor:
    """[N, H, W] masks -> [latent_frames, H, W], by the rule in the module docstring."""
    n = masks.shape[0]
    if n == 1:
        return masks.expand(latent_frames, *masks.shape[1:])
    if n == latent_frames:
        return masks
    if n == 1 + stride * (latent_frames - 1):
        grouped = masks[1:].float().reshape(latent_frames - 1, stride, *masks.shape[1:]).mean(dim=1)
        return torch.cat([masks[:1].float(), grouped])
    raise FrameCountMismatch(n, latent_frames, stride)


def per_token_frame(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """[latent_frames, N] token weights of each latent frame -> [frames * N], frame by frame (the order of the
    model's image tokens: frame, row, column): each token frame averages its `latent_frames / frames` latent frames
    (the model's temporal patch; ComfyUI pads a last partial patch, whose missing frames count as uncovered)."""
    latent_frames = tokens.shape[0]
    group = -(-latent_frames // frames)
    padded = torch.nn.functional.pad(tokens, (0, 0, 0, frames * group - latent_frames))
    return padded.reshape(frames, group, -1).mean(dim=1).reshape(-1)
