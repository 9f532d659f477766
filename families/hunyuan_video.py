"""HunyuanVideo 1.0 and 1.5 (comfy/ldm/hunyuan_video, the model code HunyuanImage 2.1 runs on): the same token
refiner, double and single blocks, over a (frames, rows, cols) grid of image tokens.

What differs from HunyuanImage 2.1 (families/hunyuan_image.py, whose hooks this family shares):
- The latent has a frame axis ([B, C, T, H, W]); tokens are laid out frame by frame, with a temporal patch
  (`patch_size[0]`). A region's MASK batch is read as frames (attention/frame_masks.py): 1 mask for every frame, one per
  latent frame, or one per pixel frame of the video the causal VAE compresses 4 to 1 after the first frame.
- 1.5 puts its byT5 glyph tokens *before* the refined text (cond-type embeddings mark which is which), so the stream
  is [glyph tokens ; prompt ; region texts]: the prompt's text is already contiguous and nothing is moved.
- 1.0's text encoder passes a padding mask (`attention_mask`) when the prompt has padding tokens. The host feeds it
  to the token refiner and masks the padding keys in every block. The pack takes the mask out of the forward, drops
  the padding tokens from the context, and refines each text (the prompt, each region text) alone from its own
  padded tokens with its own mask, keeping the refined rows of its real tokens: each text is refined exactly as the
  host refines it (the refiner's modulation averages the padded context), and the blocks, in which padding keys get
  zero weight, see the same attention without them.
- Refused by name: 1.5's vision tokens (`clip_fea`, I2V) and reference latents (`ref_latent`), which the host puts in
  the text stream or before the image; and, with region texts or dropped padding on hosts that join the single
  stream as [text ; image], the I2V "replace" guiding frame: the host modulates the first `frame tokens` of the
  joint stream as the guiding frame, which there are text tokens, so a changed text length moves which tokens that is.
Classes: T2V 1.0 (`HunyuanVideo`), I2V with channel concat (`HunyuanVideoI2V`), SkyReels I2V, 1.5 and 1.5 SR.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..attention.forward import ForwardState
from .base import Family, RefusedForward, UnsupportedModel
from .hunyuan_image import PADDED, HunyuanImage

PADDING = ("hunyuan_video", "padding mask")  # ForwardState.tables: the prompt's text padding mask [B, L] (1 = token)
GUIDING = ("hunyuan_video", "guiding frame")  # ForwardState.tables: the forward has an I2V guiding frame
LATENT_PX = {"HunyuanVideo15": 16, "HunyuanVideo15_SR_Distilled": 16}  # 1.5's VAE: 16-pixel cells; 1.0's: 8
TEMPORAL_STRIDE = 4  # both VAEs: the first frame alone, then 4 pixel frames per latent frame


class HunyuanVideo(HunyuanImage):
    name = "hunyuan_video"
    models = "HunyuanVideo 1.0 / 1.5 (T2V, I2V, SkyReels I2V, 1.5 SR)"
    table_order = 7
    references_doc = "none (1.5's vision tokens and reference latents are refused)"
    classes = ("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V", "HunyuanVideo15",
               "HunyuanVideo15_SR_Distilled")
    context_encoders = ("llama", "qwen25_7b")
    latent_px = 8
    frame_axis = 2

    def check_model(self, model_patcher) -> None:
        Family.check_model(self, model_patcher)
        dm = self.diffusion_model(model_patcher)
        if len(getattr(dm, "patch_size", ())) != 3:
            raise UnsupportedModel(f"expected a HunyuanVideo model with (frames, rows, cols) patches, got patch size "
                                   f"{getattr(dm, 'patch_size', None)!r}")

    def latent_pixels(self, base) -> int:
        declared = getattr(getattr(base, "latent_format", None), "spacial_downscale_ratio", None)
        if isinstance(declared, int) and declared > 0:
            return declared
        return LATENT_PX.get(type(base).__name__, self.latent_px)

    def token_frames(self, dm, x) -> int:
        return -(-x.shape[2] // int(dm.patch_size[0])) if x.ndim == 5 else 1

    def frame_stride(self, base) -> int:
        declared = getattr(getattr(base, "latent_format", None), "temporal_downscale_ratio", None)
        return declared if isinstance(declared, int) and declared > 0 else TEMPORAL_STRIDE

    # -- the context ----------------------------------------------------------------------------------------------
    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        if kwargs.get("clip_fea") is not None:
            return ("the conditioning carries vision tokens (clip_fea, HunyuanVideo 1.5 image-to-video), which the "
                    "model puts in its text stream beside the prompt, where region texts, TACA's text keys and text "
                    "scale would read them as prompt text; remove the clip vision output from the conditioning")
        mask = kwargs.get("attention_mask")
        if torch.is_tensor(mask) and mask.ndim == 2 and mask.shape[0] > 1 and _kept(mask, mask.shape[0],
                                                                                    mask.shape[1]) is None:
            return ("the prompts batched in this forward have different numbers of padding tokens (HunyuanVideo 1.0's "
                    "attention_mask), which the pack drops from the text; encode the prompt and the negative prompt "
                    "to the same number of tokens, or sample them separately")
        if kwargs.get("ref_latent") is not None:
            return ("the conditioning carries a reference latent (ref_latent), whose tokens the model puts before the "
                    "video's; this pack's nodes do not support it; remove it from the conditioning")
        return None

    def forward_inputs(self, state: ForwardState, kwargs: dict) -> dict:
        mask = kwargs.get("attention_mask")
        if mask is None:
            return kwargs
        state.tables[PADDING] = mask
        return {k: v for k, v in kwargs.items() if k != "attention_mask"}

    def read_inputs(self, state: ForwardState, dm, inputs: dict) -> None:
        super().read_inputs(state, dm, inputs)
        if inputs.get("guiding_frame_index") is not None:
            state.tables[GUIDING] = True

    def prompt_context(self, state: ForwardState, dm, context: torch.Tensor) -> torch.Tensor:
        mask = state.tables.get(PADDING)
        if mask is None:
            return context
        keep = _kept(mask, context.shape[0], context.shape[1])
        if keep is None:  # refused_inputs refuses uneven rows; this is a mask of another shape than the context
            raise RuntimeError(f"[joint_attention] HunyuanVideo: a text padding mask of shape {tuple(mask.shape)} for "
                               f"a context of {tuple(context.shape[:2])}")
        kept = int(keep[0].sum())
        if kept < context.shape[1]:
            self._check_guiding(state, "a prompt with padding tokens")
        state.tables[PADDED] = [(context, _additive(mask, context))]
        dropped = context.shape[1] - kept
        state.n_txt -= dropped
        state.n_context -= dropped
        return context[keep.to(context.device)].reshape(context.shape[0], kept, context.shape[2])

    def refused_region_texts(self, state: ForwardState) -> Optional[str]:
        if state.tables.get(GUIDING) and not self.image_first(state, None):
            return self._guiding_refusal("region texts")
        return None

    def text_layout(self, state: ForwardState, dm, context: torch.Tensor, regions: Optional[torch.Tensor]):
        if regions is None:
            return context
        padded = list(state.tables.get(PADDED) or [None])
        parts, start = [], 0
        for length, options in zip(state.region_lens, state.region_inputs):
            tokens = regions[start:start + length]
            start += length
            mask = (options or {}).get("attention_mask")
            keep = None if mask is None else _kept(mask, 1, length)
            if keep is None or bool(keep.all()):
                padded.append(None)
                parts.append(tokens)
                continue
            own = tokens.unsqueeze(0).expand(context.shape[0], -1, -1)
            padded.append((own, _additive(mask, own)))
            parts.append(tokens[keep[0].to(tokens.device)])
        regions = torch.cat(parts)
        state.region_lens = tuple(p.shape[0] for p in parts)
        if any(p is not None for p in padded):
            state.tables[PADDED] = padded
        return super().text_layout(state, dm, context, regions)

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        if getattr(state.host_model, "cond_type_embedding", None) is not None:
            return args  # 1.5: the glyph tokens lead the stream, the prompt's text is contiguous already
        return super().block_inputs(state, args)

    # -- refusals -------------------------------------------------------------------------------------------------
    def _check_guiding(self, state: ForwardState, what: str) -> None:
        if state.tables.get(GUIDING) and not self.image_first(state, None):
            raise RefusedForward(self._guiding_refusal(what))

    @staticmethod
    def _guiding_refusal(what: str) -> str:
        return (f"HunyuanVideo image-to-video with a guiding frame (the \"v2 (replace)\" guidance) cannot take {what} "
                "on this ComfyUI: it modulates the first frame's worth of tokens of the joint [text ; video] stream "
                "as the guiding frame, so a text of another length changes which tokens that is; use the \"v1 "
                "(concat)\" guidance type")


def _kept(mask: torch.Tensor, batch: int, length: int) -> Optional[torch.Tensor]:
    """[batch, length] booleans of the real (not padding) tokens, or None when the rows keep different numbers."""
    keep = mask.to(torch.bool) if not torch.is_floating_point(mask) else mask > -1.0
    keep = keep.reshape(-1, keep.shape[-1])[:, :length]
    if keep.shape[0] != batch:
        keep = keep[:1].expand(batch, -1) if keep.shape[0] == 1 else None
    if keep is None or keep.shape[1] != length:
        return None
    counts = keep.sum(dim=1)
    return keep.to(mask.device) if bool((counts == counts[0]).all()) else None


def _additive(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The padding mask as the host gives its token refiner: 0 on tokens, the dtype's lowest value on padding."""
    if torch.is_floating_point(mask):
        return mask.to(like.device, like.dtype)
    return (mask.to(like.device) - 1).to(like.dtype) * torch.finfo(like.dtype).max
