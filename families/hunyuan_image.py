"""HunyuanImage 2.1 (comfy/ldm/hunyuan_video): a token refiner over the text, then double-stream and single-stream
blocks, with byT5 glyph tokens beside the Qwen2.5-VL text.

The forward, as the host runs it:
- `txt_in` is a token refiner: two self-attention layers over the whole context, modulated by the timestep and by
  the mean of every context token. Region texts appended to the context would change how the prompt is refined (and
  the other way round), so the pack hooks `txt_in` (an object patch on its clone holding the very same layers) and
  refines the prompt and each region text alone: each part gets what the refiner gives it as the prompt alone. Its
  attention calls are outside the numbered blocks and are left alone (`outside_blocks`).
- The prompt's byT5 glyph tokens (quoted text, `conditioning_byt5small`) go through `byt5_in` and are appended after
  the refined context. They are text tokens of the prompt: the prompt is [Qwen2.5-VL tokens ; glyph tokens] and
  region texts follow it. The host appends the glyph tokens after whatever the refiner returned, so with region
  texts the stream leaves the refiner as [prompt ; region texts ; glyph tokens]; the first block the pack enters
  moves the glyph tokens to their place after the prompt's own tokens. Every text token, glyph tokens and region
  texts included, has text id 0 (rope rows are the identity rotation), so the order of text tokens is only the
  pack's bookkeeping, never a change the model sees.
- Text positions: all zero (`txt_ids` and the glyph ids are zeros), so region texts already have the positions they
  have as the prompt alone; there is no `post_input` patch in this model, and none is needed.
- Region prompts with glyph tokens of their own are refused by name: the pack's region texts carry the context
  tokens only (put quoted text in the main prompt).
- Token order in the joint attention: the hosts differ (0.3.75 builds the double blocks with `flipped_img_txt` and
  joins the single stream as [image ; text]; newer hosts put the text first in both). Feature-detected from the
  double blocks' `flipped_img_txt`; the pack's attention runs such calls with the text moved first.
Blocks: `patches_replace["dit"]` double and single block patches (both keys), numbered model-wide.

The HunyuanImage 2.1 refiner (`HunyuanImage21Refiner`) is the same model code at 3-D patch [1, 1, 1] over a latent
with a frame axis: its latent format pairs frames into channels (the image's latent with its first frame repeated,
64 channels, one frame pair), and the image to refine comes beside the noise as channels (`concat_latent_image`). For
an image that is one frame pair, a token per 16-pixel latent cell, the same token layout as the base model's. A latent
of more frame pairs (a video latent) is refused by name: region masks are laid out for one frame.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..attention.forward import ForwardState, TextStream
from ..attention.token_weights import IMAGE, JOINT, JOINT_IMAGE_FIRST, SHARED, TEXT
from .base import Family, UnsupportedModel

TEXT_REFINER = "txt_in"
PARTS = ("hunyuan_image", "context parts")  # ForwardState.tables: lengths of [prompt ; region 1 ; ...] in the context
GLYPHS = ("hunyuan_image", "glyph tokens")  # ForwardState.tables: the prompt's byT5 glyph tokens
MOVED = ("hunyuan_image", "glyphs moved")  # ForwardState.tables: the glyph tokens sit after the prompt's tokens
# ForwardState.tables: per part of the context (prompt, region texts), None, or the part's own tokens with their padding
# tokens and its additive padding mask: the part is refined from those, as the host refines a padded prompt, and only
# its real tokens' rows are kept (HunyuanVideo 1.0, families/hunyuan_video.py).
PADDED = ("hunyuan_image", "padded parts")


class HunyuanImage(Family):
    name = "hunyuan_image"
    models = "HunyuanImage 2.1"
    table_order = 6
    blocks_doc = "double, then single (text scale: singles numbered after doubles)"
    references_doc = "the model takes none"
    classes = ("HunyuanImage21",)
    diffusion_classes = ("HunyuanVideo",)
    # Region LoRAs: FLUX's layer names; the single blocks run [image ; text] on hosts whose double blocks are
    # flipped (0.3.75) and [text ; image] on the others (adapter_role). The token refiner is outside the blocks.
    adapter_roles = (
        (r"double_blocks\.\d+\.img_(attn\.(qkv|proj)|mlp\.\d+)", IMAGE),
        (r"double_blocks\.\d+\.txt_(attn\.(qkv|proj)|mlp\.\d+)", TEXT),
        (r"single_blocks\.\d+\.linear[12]", JOINT),
        (r"double_blocks\.\d+\.(img|txt)_mod\.lin|single_blocks\.\d+\.modulation\.lin", SHARED),
    )
    context_encoders = ("qwen25_7b",)
    chat_template = True
    cuts_to_user_text = True
    latent_px = 32  # hosts whose latent format does not say (0.3.75): HunyuanImage 2.1's VAE has 32-pixel cells
    concepts = False
    concepts_refused = ("its text stream starts at a token refiner conditioned on the timestep and on the mean of the whole "
                   "context, so a concept passed through the model's text input alone is not the stream the blocks "
                   "carry")
    reference_images = False
    blocks_help = "double blocks, then single blocks (text scale numbers the singles after the doubles)"

    def check_model(self, model_patcher) -> None:
        super().check_model(model_patcher)
        dm = self.diffusion_model(model_patcher)
        if len(getattr(dm, "patch_size", ())) != 2:
            raise UnsupportedModel(f"expected a HunyuanImage 2.1 model with 2-D patches, got patch size "
                                   f"{getattr(dm, 'patch_size', None)!r}")

    def patch_size(self, dm) -> int:
        return int(dm.patch_size[-1])

    # -- hooks ----------------------------------------------------------------------------------------------------
    def hook_blocks(self, m, hooks) -> None:
        super().hook_blocks(m, hooks)
        key = f"diffusion_model.{TEXT_REFINER}"
        current = m.get_model_object(key)
        if not isinstance(current, RefinedApart):
            m.add_object_patch(key, RefinedApart(current, hooks))

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: its object patch must hold its own refiner."""
        dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
        key = f"diffusion_model.{TEXT_REFINER}"
        found = clone.object_patches.get(key)
        if dm is None or not isinstance(found, RefinedApart):
            return
        own = getattr(dm, TEXT_REFINER)
        if isinstance(own, RefinedApart):  # copied while the patch was applied
            own = own.refiner
        clone.object_patches = {**clone.object_patches, key: RefinedApart(own, found.hooks)}

    def adapter_role(self, path: str, dm):
        role = super().adapter_role(path, dm)
        blocks = getattr(dm, "double_blocks", None)
        flipped = bool(blocks is not None and len(blocks) and getattr(blocks[0], "flipped_img_txt", False))
        return JOINT_IMAGE_FIRST if role == JOINT and flipped else role

    def image_first(self, state: ForwardState, block) -> bool:
        blocks = getattr(state.host_model, "double_blocks", None)
        return bool(blocks is not None and len(blocks) and getattr(blocks[0], "flipped_img_txt", False))

    def block_text(self, state: ForwardState, args: dict) -> tuple:
        if args.get("txt") is not None or not self.image_first(state, None):
            return super().block_text(state, args)
        stream = args["img"]  # [image ; text] on hosts that flip the order
        return "img", TextStream(stream, stream.shape[1] - state.n_context, stream.shape[1])

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        """At the first block entered: the prompt's glyph tokens moved from after the region texts to after the
        prompt's own tokens (every text token has position 0: only the pack's bookkeeping changes)."""
        glyphs = state.tables.get(GLYPHS, 0)
        if not glyphs or not state.region_lens or state.tables.get(MOVED):
            return args
        txt = args.get("txt")
        if txt is None or txt.shape[1] != state.n_context:
            raise RuntimeError("[joint_attention] HunyuanImage: the first block entered is not a double block with "
                               f"the {state.n_context} text tokens the pack laid out")
        n_prompt = state.n_txt - glyphs
        n_regions = state.n_context - state.n_txt
        state.tables[MOVED] = True
        moved = torch.cat([txt[:, :n_prompt], txt[:, n_prompt + n_regions:], txt[:, n_prompt:n_prompt + n_regions]],
                          dim=1)
        return {**args, "txt": moved}

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # every text id is 0: region texts have their prompt-alone positions as they are

    # -- the context ----------------------------------------------------------------------------------------------
    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        for key, what in (("ref_latent", "a reference latent"), ("clip_fea", "vision features"),
                          ("guiding_frame_index", "a guiding frame")):
            if kwargs.get(key) is not None:
                return (f"the conditioning carries {what} ({key}), which HunyuanImage 2.1 does not take and this "
                        "pack's nodes do not support; remove it from the conditioning")
        return None

    def read_inputs(self, state: ForwardState, dm, inputs: dict) -> None:
        glyphs = inputs.get("txt_byt5")
        n = int(glyphs.shape[1]) if torch.is_tensor(glyphs) and glyphs.ndim == 3 else 0
        if n and getattr(state.host_model, "byt5_in", None) is not None:
            state.tables[GLYPHS] = n
            state.n_txt += n
            state.n_context += n

    def refused_region(self, options: dict) -> Optional[str]:
        if options.get("conditioning_byt5small") is not None:
            return ("has quoted text, which HunyuanImage encodes as byT5 glyph tokens; the pack keeps glyph "
                    "tokens with the main prompt only. Put the quoted text in the main prompt (or drop the quotes in "
                    "the region prompt)")
        return None

    def text_layout(self, state: ForwardState, dm, context: torch.Tensor, regions: Optional[torch.Tensor]):
        if regions is None:
            return context
        lens = tuple(state.region_lens)
        if sum(lens) != regions.shape[0]:
            raise RuntimeError(f"[joint_attention] region texts of {sum(lens)} tokens expected, got {regions.shape[0]}")
        state.tables[PARTS] = (context.shape[1],) + lens
        state.n_context = state.n_txt + regions.shape[0]
        return torch.cat([context, regions.unsqueeze(0).expand(context.shape[0], -1, -1)], dim=1)

    def text_features(self, dm):
        layer = getattr(getattr(dm, TEXT_REFINER, None), "input_embedder", None)
        return getattr(layer, "in_features", None)


class RefinedApart(torch.nn.Module):
    """HunyuanVideo's token refiner (`txt_in`), as an object patch: the same layers under the same names (weights,
    LoRA keys and offloading are untouched). Called by the model as the refiner is, it names its attention calls as
    outside the numbered blocks, and with region texts in the context it refines the prompt and each region text
    alone (the refiner's attention and its mean-of-the-context modulation then see each part as the prompt alone)."""

    def __init__(self, refiner, hooks):
        super().__init__()
        for name, child in refiner.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "refiner", refiner)  # not a submodule: its layers are this module's own
        object.__setattr__(self, "hooks", hooks)

    def __deepcopy__(self, memo):
        return self

    def forward(self, x, timesteps, mask, transformer_options={}):  # noqa: B006 (the host's signature)
        found = self.hooks.outside_blocks(transformer_options, "text refiner")
        if found is None:
            return self.refiner(x, timesteps, mask, transformer_options=transformer_options)
        state, options = found
        padded = state.tables.get(PADDED)
        parts = state.tables.get(PARTS) or ((x.shape[1],) if padded else None)
        if not parts:
            return self.refiner(x, timesteps, mask, transformer_options=options)
        if mask is not None or x.shape[1] != sum(parts):
            raise RuntimeError("[joint_attention] HunyuanImage: the text refiner got a context the pack did not lay "
                               f"out ({x.shape[1]} tokens, expected {sum(parts)}, mask {mask is not None})")
        out, start = [], 0
        for i, length in enumerate(parts):
            own = padded[i] if padded and i < len(padded) else None
            if own is None:
                out.append(self.refiner(x[:, start:start + length], timesteps, None, transformer_options=options))
            else:
                tokens, pad_mask = own
                refined = self.refiner(tokens.to(x), timesteps, pad_mask, transformer_options=options)
                keep = (pad_mask == 0).expand(refined.shape[0], -1)
                out.append(refined[keep].reshape(refined.shape[0], length, refined.shape[2]))
            start += length
        return torch.cat(out, dim=1)


class HunyuanImageRefiner(HunyuanImage):
    name = "hunyuan_image_refiner"
    models = "HunyuanImage 2.1 refiner"
    table_order = 7
    classes = ("HunyuanImage21Refiner",)
    # Its VAE's latent cells are 16 image pixels; the host's latent format keeps the default 8 (it only converts
    # frames), so the family's own figure wins over the declared one.
    latent_px = 16

    def check_model(self, model_patcher) -> None:
        Family.check_model(self, model_patcher)
        patch = list(getattr(self.diffusion_model(model_patcher), "patch_size", ()))
        if patch != [1, 1, 1]:
            raise UnsupportedModel(f"expected a HunyuanImage 2.1 refiner with patch size [1, 1, 1], got {patch!r}, a "
                                   "variant the pack does not support")

    def latent_pixels(self, base) -> int:
        return self.latent_px

    def refused_latent(self, shape: tuple) -> Optional[str]:
        if len(shape) == 5 and shape[2] != 1:
            return (f"the HunyuanImage 2.1 refiner got a latent of {shape[2]} frame pairs; the pack's region masks and "
                    "maps are laid out for an image, one frame pair (the refiner latent of one image from "
                    "HunyuanRefinerLatent). Refine one image per latent, or sample without this pack's nodes")
        return None
