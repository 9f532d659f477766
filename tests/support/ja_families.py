"""The model families the node tests run, in one list: every family scenario is parametrised over `FAMILIES`.

An entry says how to build the family's tiny model (ja_tiny) and text encoder, what the pack offers it, the model
facts scenarios read (instead of asking for a family by name), and which scenarios it sits out and why.
`family_params(scenario)` makes one pytest param per entry, with the entry's name as its id; an entry that lacks a
capability the scenario needs, or sits it out, is a skip carrying that reason, never a silent drop.

Adding a family: its tiny builder in ja_tiny (BUILDERS) and one entry here; it then runs every scenario it does not
sit out. tests/nodes/test_families.py checks that every family of the pack has an entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import pytest
import torch

import ja_tiny

# What a family can have; an entry names those it lacks (with why) in `lacks`.
CAPABILITIES = (
    "regions", "taca", "text_scale", "maps", "concepts",  # the pack's features (README's support table)
    "reference_images",  # reference-image tokens beside the image (Kontext, FLUX.2, Qwen-Image-Edit)
    "index_timestep_zero",  # the host's `index_timestep_zero` reference method (0.29+)
)

# Scenario -> the capabilities it needs. A scenario run over cases names a case "scenario[case]" where the case needs
# more than the scenario; an entry can sit out a whole scenario or one case of it ("scenario[case]").
SCENARIOS = {
    # tests/nodes/test_identities.py: identities that need no reference
    "full_region_identity": ("regions",),
    "half_image_mask": ("regions",),
    "leaves_alone": ("regions", "taca", "text_scale"),
    # tests/nodes/test_long_region_texts.py
    "long_region_identity": ("regions",),
    "long_regions_reference": ("regions",),
    # tests/nodes/test_regional.py
    "regional_reference": ("regions",),
    "uncond_rows": ("regions",),
    "region_text_reach": ("regions",),
    # tests/nodes/test_guidance.py
    "taca_reference": ("taca",),
    "taca_with_regions": ("taca", "regions"),
    "text_scale_reference": ("text_scale",),
    "text_scale_with_regions": ("text_scale", "regions"),
    # tests/nodes/test_maps.py, tests/nodes/test_concepts.py
    "maps_reference": ("maps", "regions", "taca"),
    "concepts_reference": ("concepts",),
    # tests/nodes/test_reference_images.py
    "reference_images_with_regions": ("reference_images", "regions"),
    "reference_images_with_regions[index_timestep_zero]": ("reference_images", "regions", "index_timestep_zero"),
    "reference_images_with_taca": ("reference_images", "taca"),
    "reference_images_with_taca[index_timestep_zero]": ("reference_images", "taca", "index_timestep_zero"),
    "reference_images_with_taca[index_timestep_zero_cond_rows]": ("reference_images", "taca", "index_timestep_zero"),
    # tests/nodes/test_dispatcher.py
    "empty_dispatcher": (),
    "block_numbering": (),
    "layout_slices": (),
    # tests/nodes/test_reach.py, tests/nodes/test_attention_backend.py
    "attention_routed_around": ("regions", "taca", "maps"),
    "attention_slot": ("regions", "taca", "text_scale", "maps"),
    # tests/fuzz/test_fuzz_classes.py
    "fuzz_region_text_lengths": ("regions",),
    # tests/nodes/test_region_lora.py
    "region_lora_identity": ("regions",),
    "region_lora_reference": ("regions",),
    "region_lora_selection": ("regions",),
    "region_lora_steps": ("regions",),
}


@dataclass(frozen=True)
class TinyFamily:
    name: str  # pytest id and ja_tiny.BUILDERS key
    family: str  # the pack's family name (families/)
    models: str  # the models it stands for
    encoder: Callable[[], object]  # the tiny text encoder (a real CLIP object) scenarios encode words with
    lacks: Mapping[str, str] = field(default_factory=dict)  # capability -> why the family has none
    sits_out: Mapping[str, str] = field(default_factory=dict)  # scenario (or "scenario[case]") -> why not run here
    # Model facts scenarios read.
    block_patches: bool = True  # the host's `dit` block patches reach every block (NextDiT: the pack wraps layers)
    pooled_text: bool = False  # a pooled text vector enters the blocks' modulation (FLUX.1 vector_in, SD3 y_embedder)
    caption_pad_multiple: int = 0  # the model pads the caption with learned pad tokens to a multiple of this
    image_pad_multiple: int = 0  # ... and the image tokens
    cell_latents: bool = False  # cell-mask scenarios sample from `cell_latent` (Lens: 16 px latent cells)
    text_prefix: int = 0  # tokens the model puts before the prompt in its text stream (AuraFlow's registers)
    latent_px: int = 8  # image pixels per latent cell
    token_px: int = 16  # image pixels per token side (the tiny Chroma Radiance: its 2-pixel patch)
    latent_frames: bool = False  # latents carry a frame axis [B, C, T, H, W] (Qwen-Image's reference latents)
    reference_tol: float = 1e-5  # regions and reference images against the dense reference (fp32)
    # Identities with long region texts (AuraFlow: layers that re-normalise after each update magnify fp32 rounding)
    identity_tol: float = 1e-5
    taca_tol: float = 1e-5  # TACA against the dense reference (fp32)
    index_timestep_zero_build: Mapping = field(default_factory=dict)  # builder arguments for that reference method
    host_class: str = ""  # the comfy.model_base class the builder makes: a host without it skips the family
    host_feature: tuple = ()  # (what, check): a model variant a host may lack (Ovis-Image's FLUX text norm)
    cell_tokens: int = 1  # tokens per side of a ja_regions mask cell in the tests' images (Ideogram 4: 2)

    def missing_from_host(self):
        """Why this host cannot run the family (it lacks its model class or variant), or None."""
        import comfy.model_base

        if self.host_class and not hasattr(comfy.model_base, self.host_class):
            return f"{self.name}: this host has no {self.host_class}"
        if self.host_feature and not self.host_feature[1]():
            return f"{self.name}: this host has no {self.host_feature[0]}"
        return None

    def on_this_host(self) -> bool:
        return self.missing_from_host() is None

    def build(self, **kw) -> ja_tiny.TinyModel:
        return ja_tiny.build(self.name, **kw)

    def has(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}: expected one of {CAPABILITIES}")
        return capability not in self.lacks

    def skip_reason(self, scenario: str, case: str = ""):
        """Why this entry does not run `scenario` (or its `case`), or None when it does."""
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}: add it to ja_families.SCENARIOS")
        keyed = f"{scenario}[{case}]"
        missing = self.missing_from_host()
        if missing:
            return missing
        for capability in SCENARIOS.get(keyed, SCENARIOS[scenario]):
            if not self.has(capability):
                return f"{self.name}: {self.lacks[capability]}"
        for key in (keyed, scenario):
            if key in self.sits_out:
                return f"{self.name}: {self.sits_out[key]}"
        return None

    def width_without_image_pads(self, width: int, height: int) -> int:
        """The smallest width from `width` (in 16 px steps) at which the image tokens need no pad tokens: pads belong
        to no region and see the base prompt (Z-Image pads image tokens to a multiple of 32)."""
        if not self.image_pad_multiple:
            return width
        while ((height // 16) * (width // 16)) % self.image_pad_multiple:
            width += 16
        return width

    def cell_latent(self, tiny, width: int, height: int):
        """The empty latent of a width x height image where `sample` would draw another (it draws 1/8 of the image):
        one cell per `latent_px` pixels, so ja_regions' token masks fit (Lens: 16 px cells, a token each). None where
        sample's own fits."""
        if not self.cell_latents:
            return None
        frames = (1,) if self.latent_frames else ()
        return torch.zeros(1, tiny.latent_channels, *frames, height // self.latent_px, width // self.latent_px)

    def reference_latent(self, tiny, rows: int, cols: int, seed: int = 7) -> torch.Tensor:
        """A reference image's latent for `tiny` (what the host's ReferenceLatent node puts in the conditioning)."""
        frames = (1,) if self.latent_frames else ()
        return torch.randn(1, tiny.latent_channels, *frames, rows, cols, generator=torch.Generator().manual_seed(seed))


def _each(scenarios, reason):
    return dict.fromkeys(scenarios, reason)


# Scenarios run against the dense reference model with ja_regions' token masks (a 4 x 6 token grid at WIDTH x HEIGHT).
_CELL_MASK_REFERENCE = ("regional_reference", "region_text_reach", "taca_with_regions", "maps_reference",
                        "long_regions_reference", "reference_images_with_regions")
_FLUX_COVERS = "FLUX.1 runs this on the same FLUX double / single block patches (kept off for suite time)"
_SD3_COVERS = ("SD3.5-M is SD3 plus an image-only attention (attn2) in its first blocks, which no text enters; SD3 "
               "runs this (kept off for suite time)")
_NO_REFERENCE_IMAGES = "the family takes no reference images"

FAMILIES = (
    TinyFamily(
        "flux", "flux", "FLUX.1 dev / schnell / Kontext", ja_tiny.tiny_clip, host_class="Flux", pooled_text=True, reference_tol=1e-4,
        lacks={"index_timestep_zero": "0.29's index_timestep_zero doubles the timestep batch, which a FLUX model with "
                                      "guidance weights (FLUX.1 Kontext dev) cannot take; FLUX.2 Klein runs it"},
        sits_out={"reference_images_with_taca": "FLUX.2 and Qwen-Image-Edit run reference tokens under TACA; Kontext's "
                                                "reference tokens are run with regions (kept off for suite time)"}),
    TinyFamily(
        "flux2", "flux2", "FLUX.2 dev / Klein", ja_tiny.tiny_clip, host_class="Flux2", latent_px=16,
        index_timestep_zero_build={"guidance_embed": False},  # Klein: no guidance weights
        sits_out={
            **_each(_CELL_MASK_REFERENCE, "ja_regions' token masks are a 4 x 6 grid; sample() draws FLUX.2's latent "
                                          "at 1/8 of WIDTH x HEIGHT (16 px cells, patch 1): an 8 x 12 token grid"),
            **_each(("uncond_rows", "leaves_alone", "taca_reference", "text_scale_reference",
                     "text_scale_with_regions"), _FLUX_COVERS),
            "concepts_reference": "the test's saliency reference modulates concepts through FLUX.1's vector_in or "
                                  "SD3's y_embedder; FLUX.2 has neither",
        }),
    TinyFamily(
        "chroma", "chroma", "Chroma", ja_tiny.tiny_clip, host_class="Chroma",
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out={
            **_each(_CELL_MASK_REFERENCE + ("uncond_rows", "leaves_alone", "taca_reference", "text_scale_reference",
                                            "text_scale_with_regions"), _FLUX_COVERS),
            "concepts_reference": "the test's saliency reference modulates concepts through FLUX.1's vector_in or "
                                  "SD3's y_embedder; Chroma has neither",
        }),
    TinyFamily(
        # Pixel space: the tests' latent (1/8 of WIDTH x HEIGHT) is the image here, at patch 2 the same 4 x 6 token
        # grid as the others. Sequential text ids where the host has them (0.33): the identity and the reference run
        # with region texts renumbered in the blocks' rope table (test_chroma_radiance checks the rows).
        "chroma_radiance", "chroma_radiance", "Chroma Radiance", ja_tiny.tiny_clip, host_class="ChromaRadiance", latent_px=1, token_px=2,
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out={
            **_each(("uncond_rows", "leaves_alone", "taca_reference", "text_scale_reference",
                     "text_scale_with_regions", "taca_with_regions", "maps_reference", "long_regions_reference",
                     "region_text_reach"), _FLUX_COVERS),
            "concepts_reference": "the test's saliency reference modulates concepts through FLUX.1's vector_in or "
                                  "SD3's y_embedder; Chroma Radiance has neither",
        }),
    TinyFamily(
        "sd3", "sd3", "SD3 / SD3.5", ja_tiny.tiny_clip, host_class="SD3", pooled_text=True, reference_tol=1e-4,
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out={"concepts_reference[batch2]": "FLUX.1 and Qwen-Image run batched concept rows (kept off for suite "
                                                "time)"}),
    TinyFamily(
        "sd35m", "sd3", "SD3.5-Medium (image-only attn2 in its first blocks)", ja_tiny.tiny_clip, host_class="SD3", pooled_text=True,
        reference_tol=1e-4,
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out=_each([s for s in SCENARIOS if "[" not in s and s not in (
            "full_region_identity", "half_image_mask", "empty_dispatcher", "block_numbering", "layout_slices")],
            _SD3_COVERS)),
    TinyFamily(
        # Encoder: the CLIP-L stand-in, as the concept scenarios scale its pooled output; the tiny Qwen2.5-VL encoder
        # (ja_tiny.tiny_llm_clip("qwen25_7b"), test_labels) gives none.
        "qwen_image", "qwen_image", "Qwen-Image / Qwen-Image-Edit", ja_tiny.tiny_clip, host_class="QwenImage", latent_frames=True,
        sits_out={
            "attention_routed_around": "Qwen-Image's blocks run through the same dit block patches as SD3's joint "
                                       "blocks; SD3 runs this (kept off for suite time)",
            "reference_images_with_regions[positive_only]": "FLUX.1 Kontext runs a reference on the positive prompt "
                                                            "only (kept off for suite time)",
            **_each(("reference_images_with_taca[cond_rows]", "reference_images_with_taca[index_timestep_zero_cond_rows]"),
                    "FLUX.2 runs TACA on cond rows beside a reference (kept off for suite time)"),
        }),
    TinyFamily(
        "z_image", "z_image", "Z-Image / Lumina-2 (NextDiT)", lambda: ja_tiny.tiny_llm_clip("qwen3_4b"), host_class="Lumina2",
        block_patches=False, caption_pad_multiple=32, image_pad_multiple=32,
        lacks={"concepts": "the pack refuses ConceptAttention on Z-Image by name (test_z_image)",
               "reference_images": "the pack refuses Z-Image's omni reference latents by name (test_z_image)"},
        sits_out={
            "empty_dispatcher": "test_z_image runs the wrapped layer lists against the plain model, bit for bit (kept "
                                "off for suite time)",
            "block_numbering": "modifiers' before_block comes from the host's dit block patches, which NextDiT has none "
                               "of (the pack wraps its layer lists: test_z_image)",
            "layout_slices": "NextDiT pads the image tokens to a multiple of 32, which the layout carries after the "
                             "image as reference tokens (test_z_image)",
        }),
    TinyFamily(
        # LongCat-Image (0.33): FLUX blocks; the image's rope shift is the text length, and every conditioning has the
        # same length (its encoder pads every prompt alike; the builder's `text_tokens`).
        "longcat_image", "longcat_image", "LongCat-Image", ja_tiny.tiny_clip, host_class="LongCatImage",
        reference_tol=1e-4,
        lacks={"index_timestep_zero": "FLUX.2 Klein runs the index_timestep_zero reference method"},
        sits_out={
            **_each(("long_region_identity", "long_regions_reference", "fuzz_region_text_lengths"),
                    "LongCat-Image refuses region texts longer or shorter than the prompt (test_families checks the "
                    "refusal)"),
            **_each(("uncond_rows", "attention_routed_around", "attention_slot", "reference_images_with_taca"),
                    _FLUX_COVERS),
            "concepts_reference": "the test's saliency reference modulates concepts through FLUX.1's vector_in or "
                                  "SD3's y_embedder; LongCat-Image has neither",
        }),
    TinyFamily(
        # Ovis-Image loads as FLUX (0.33): text norm before txt_in, text positions on two rope axes. It runs the
        # proofs where those differ from FLUX.1: the identity (positions), the references and ConceptAttention (norm).
        "ovis", "flux", "Ovis-Image (FLUX with a text norm)", ja_tiny.tiny_clip, host_class="Flux", pooled_text=True,
        reference_tol=1e-4, host_feature=("FLUX text norm (Ovis-Image)", ja_tiny.flux_has_text_norm),
        lacks={"index_timestep_zero": "FLUX.2 Klein runs the index_timestep_zero reference method"},
        sits_out={
            **_each(("uncond_rows", "leaves_alone", "taca_with_regions", "text_scale_with_regions", "maps_reference",
                     "long_regions_reference", "region_text_reach", "reference_images_with_regions",
                     "reference_images_with_taca", "attention_routed_around", "attention_slot", "empty_dispatcher",
                     "block_numbering", "layout_slices", "fuzz_region_text_lengths"), _FLUX_COVERS),
            "concepts_reference[batch2]": "FLUX.1 and Qwen-Image run batched concept rows (kept off for suite time)",
        }),
    TinyFamily(
        # Qwen-Image's blocks at patch 1 over 16 px latent cells (the builder draws its latent at 1/16 of the image,
        # so the tests' 4 x 6 token grid holds); zero text ids. Its text encoder (Qwen3-VL-4B) gives no pooled vector,
        # so the scenarios encode with the CLIP-L stand-in, as for Qwen-Image.
        "mage_flow", "mage_flow", "Mage-Flow", ja_tiny.tiny_clip, latent_px=16, host_class="MageFlow",
        sits_out={
            "attention_routed_around": "Mage-Flow's blocks are Qwen-Image's on the same dit block patches; SD3 runs "
                                       "this (kept off for suite time)",
            **_each(("reference_images_with_taca[cond_rows]", "reference_images_with_taca[index_timestep_zero_cond_rows]",
                     "reference_images_with_regions[positive_only]"),
                    "FLUX.2 and FLUX.1 Kontext run these reference cases (kept off for suite time)"),
        }),
    TinyFamily(
        # HunyuanImage 2.1: 32-pixel latent cells; the tiny model's patch 2 gives sample()'s latent (1/8 of WIDTH x
        # HEIGHT) the same 4 x 6 token grid as the others (64 image pixels per token). Glyph tokens, the token refiner
        # and the host's token order: test_hunyuan_image.
        "hunyuan_image", "hunyuan_image", "HunyuanImage 2.1", ja_tiny.tiny_clip, host_class="HunyuanImage21",
        latent_px=32, token_px=64,
        lacks={"concepts": "its text stream starts at a token refiner conditioned on the timestep and on the whole "
                           "context, which the concept stream (each concept through the text input layer alone) "
                           "does not reproduce; the pack refuses ConceptAttention on HunyuanImage by name",
               "reference_images": "HunyuanImage 2.1 takes no reference images"},
        sits_out={"layout_slices": "the test's odd latent (5 x 3) needs padding to the tiny model's patch 2, which "
                                   "HunyuanVideo's forward does not do (HunyuanImage 2.1 files have patch 1); the "
                                   "identities and references check its layout"}),
    TinyFamily(
        # ComfyUI 0.33: HunyuanImage 2.1's model code at patch [1, 1, 1] over a paired-frame latent (one frame pair
        # for an image, a token per 16 px cell; the builder draws its latent at 1/16 of the image), the image to
        # refine beside the noise as channels. Its token refiner, glyph tokens and text layout are the base model's
        # (test_hunyuan_image).
        "hunyuan_image_refiner", "hunyuan_image_refiner", "HunyuanImage 2.1 refiner", ja_tiny.tiny_clip,
        host_class="HunyuanImage21Refiner", latent_px=16, latent_frames=True,
        lacks={"concepts": "its text stream starts at a token refiner conditioned on the timestep and on the whole "
                           "context, as HunyuanImage 2.1's; the pack refuses ConceptAttention on it by name",
               "reference_images": "the refiner takes the image to refine as channels beside the noise, not as "
                                   "reference tokens"},
        sits_out={
            **_each(("uncond_rows", "taca_with_regions", "text_scale_with_regions", "long_regions_reference",
                     "region_text_reach", "attention_routed_around"),
                    "HunyuanImage 2.1 runs this on the same model code and block patches (kept off for suite time)"),
            "region_lora_steps": "sampling in two KSamplerAdvanced parts is not one sampling on the refiner, even with "
                                 "no LoRA (rel 0.37: its latent format pairs a copy of the first frame with it going in and "
                                 "drops one half of the pair coming out); HunyuanImage 2.1 runs this on the same blocks",
        }),
    TinyFamily(
        # Conditioning: T5 tokens and the Llama states of every layer (make_cond draws those from the tokens, so the
        # dense reference, ja_reference_hidream, holds each region text's own); the encoder is the host's HiDream
        # encoder at tiny size.
        "hidream", "hidream", "HiDream I1", ja_tiny.tiny_hidream_clip, host_class="HiDream", block_patches=False,
        lacks={"reference_images": "the pack refuses HiDream E1's edit image (image_cond) by name (test_hidream)"},
        sits_out={
            "block_numbering": "modifiers' before_block comes from the host's dit block patches, which HiDream reads "
                               "none of (the pack wraps its block lists: test_hidream)",
            "concepts_reference": "the test's reference hooks the host's dit block patches, which HiDream reads none "
                                  "of; test_hidream checks HiDream's concepts against a reference on its own hooks",
        }),
    TinyFamily(
        # The CLIP-L stand-in's 64 features per token are the tiny model's 2 stacked encoder layers x 32; the host's
        # Krea 2 tokenizer and encoder rules are checked in test_krea2 (labels).
        "krea2", "krea2", "Krea 2", ja_tiny.tiny_clip, block_patches=False, latent_frames=True, host_class="Krea2",
        lacks={"concepts": "Krea 2 runs text and image in one stream: no text stream of its own for the concepts"},
        sits_out={
            **_each(("reference_images_with_regions[both_prompts]", "reference_images_with_regions[positive_only]",
                     "reference_images_with_taca[both_rows]", "reference_images_with_taca[cond_rows]"),
                    "Krea 2 leaves reference latents out unless the conditioning names a reference method (its "
                    "checkpoints set no default); the index_timestep_zero cases run its reference tokens"),
        }),
    TinyFamily(
        # A patchified 128-channel latent: one 16 px cell per token, which sample() draws at 1/8 of the image, so a
        # ja_regions mask cell covers 2 x 2 tokens (ja_regions.on_token_grid).
        "ideogram4", "ideogram4", "Ideogram 4", ja_tiny.tiny_clip, block_patches=False, latent_px=16,
        host_class="Ideogram4", cell_tokens=2,
        lacks={"concepts": "Ideogram 4 runs text and image in one stream: no text stream of its own for the concepts",
               "reference_images": _NO_REFERENCE_IMAGES},
        sits_out={
            "layout_slices": "the test reads the token grid from the model's patch_size (2), but Ideogram 4's latent "
                             "comes patchified (a latent cell is a token); the regional references check its grid",
            "attention_slot": "the tiny Ideogram 4's text moves its latent by ~1e-3 at most, so one block's text "
                              "scale stays under the test's 1e-4 effect floor; Krea 2 and Z-Image run the backend "
                              "slot through the same wrapped-layer hooks",
        }),
    TinyFamily(
        # Encoder: the CLIP-L stand-in (64 features, as the tiny model's text_feat_dim); the conditioning carries the
        # text encoder's attention mask, which OmniGen2 reads its text length from (ja_tiny.make_cond).
        "omnigen2", "omnigen2", "OmniGen2", ja_tiny.tiny_clip, host_class="Omnigen2", block_patches=False,
        lacks={"concepts": "OmniGen2 has a single joint stream: the pack refuses ConceptAttention on it by name",
               "reference_images": "the pack refuses OmniGen2's reference latents by name (test_omnigen2)"},
        sits_out={
            "block_numbering": "modifiers' before_block comes from the host's dit block patches, which OmniGen2 has "
                               "none of (the pack wraps its layer lists: test_omnigen2)",
        }),
    TinyFamily(
        "boogu", "boogu", "Boogu", ja_tiny.tiny_clip, block_patches=False, host_class="Boogu",
        lacks={"concepts": "the pack does not carry ConceptAttention through Boogu's layers (as OmniGen2's)",
               "reference_images": "the pack refuses Boogu's reference latents by name (test_omnigen2)"},
        sits_out={
            "block_numbering": "modifiers' before_block comes from the host's dit block patches, which Boogu has "
                               "none of (the pack wraps its layer lists: test_omnigen2)",
        }),
    TinyFamily(
        # ComfyUI 0.33: the 128-channel FLUX.2 latent, a token per cell (16 px): scenarios on ja_regions' token masks
        # sample from `cell_latent`. Joint calls are [image ; text]; text rope positions count along the text.
        "lens", "lens", "Lens", ja_tiny.tiny_clip, host_class="Lens", latent_px=16, cell_latents=True,
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out={
            "layout_slices": "the test reads the token grid from the model's patch_size (2), but Lens's blocks take the "
                             "latent cells themselves (a cell is a token); the regional references check its grid",
            **_each(("uncond_rows", "taca_with_regions", "text_scale_with_regions", "long_regions_reference",
                     "region_text_reach", "attention_routed_around"),
                    "Qwen-Image runs this on the same dit block patches over its dual-stream blocks (kept off for "
                    "suite time)"),
            "concepts_reference[batch2]": "FLUX.1 and Qwen-Image run batched concept rows (kept off for suite time)",
        }),
    TinyFamily(
        # ComfyUI 0.33: Wan 2.1 latents with a frame axis. Joint calls are [image ; reference images ; text].
        # reference_tol, measured (ComfyUI 0.33, CPU): the regional and reference-image references differ from the
        # pack by 9.5e-6..1.4e-5 on latents up to ~16 in magnitude, a few fp32 ulps there (fp32 rounding; the host's
        # comfy_kitchen rope kernel takes no float64, so the float64 check that AuraFlow's figures have cannot run).
        "joy_image", "joy_image", "JoyImage-Edit", ja_tiny.tiny_clip, host_class="JoyImage", latent_frames=True,
        reference_tol=1e-4,
        lacks={"index_timestep_zero": "JoyImage's forward takes no reference_latents_method; its references follow "
                                      "the image with a frame position of their own"},
        sits_out={
            **_each(("uncond_rows", "taca_with_regions", "text_scale_with_regions", "long_regions_reference",
                     "region_text_reach", "attention_routed_around", "reference_images_with_regions[positive_only]",
                     "reference_images_with_taca[cond_rows]"),
                    "Qwen-Image runs this on the same dit block patches over its dual-stream blocks (kept off for "
                    "suite time); Lens runs the [image ; text] order"),
            "concepts_reference[batch2]": "FLUX.1 and Qwen-Image run batched concept rows (kept off for suite time)",
        }),
    TinyFamily(
        # Detected as AuraFlow by its 2048 text features: scenarios' conditioning is random at that width, concepts are
        # encoded by the host's AuraFlow encoder at tiny size (tiny_aura_clip, 2048 features). Its 8
        # register tokens come before the text in the text stream (text_prefix); each region text gets its own.
        # Tolerances, measured (ComfyUI 0.3.75, CPU): fp32 rounding, not a layout error. The pack against the dense
        # reference differs by at most 1.2e-5..2.1e-5 (regional references, TACA, long region texts), on latents up to
        # ~30 in magnitude (FLUX's tiny model: ~13), a few fp32 ulps there; with the model run in float64 the TACA
        # reference gives 0.0 and the regional one 4.8e-6 (the sampler keeps the latent in fp32 between steps).
        # Its layers norm the residual stream after adding each update (post-norm), which magnifies that rounding.
        "aura_flow", "aura_flow", "AuraFlow", ja_tiny.tiny_aura_clip, host_class="AuraFlow", text_prefix=8,
        reference_tol=1e-4, taca_tol=1e-4, identity_tol=1e-4,
        lacks={"reference_images": _NO_REFERENCE_IMAGES},
        sits_out={
            **_each(("uncond_rows", "taca_with_regions", "text_scale_with_regions", "long_regions_reference",
                     "region_text_reach", "attention_routed_around"),
                    "SD3 runs this on the same dit block patches over [text ; image] (kept off for suite time)"),
            "concepts_reference[batch2]": "FLUX.1 and Qwen-Image run batched concept rows (kept off for suite time)",
        }),
)

_HUNYUAN_VIDEO_LACKS = {
    "concepts": "its text stream starts at a token refiner conditioned on the timestep and on the whole context, "
                "which the concept stream does not reproduce; the pack refuses ConceptAttention on HunyuanVideo by name",
    "reference_images": "the pack refuses HunyuanVideo's reference latents and 1.5's vision tokens by name "
                        "(test_hunyuan_video)",
}
# The image-to-video and SR variants run the T2V blocks with more input channels (a concat image and mask): the proofs
# that tell a family's layout apart run on them, the rest on T2V 1.0 and 1.5.
_HUNYUAN_VIDEO_VARIANT_RUNS = ("full_region_identity", "half_image_mask", "leaves_alone", "regional_reference",
                               "taca_reference", "text_scale_reference", "maps_reference")
_HUNYUAN_VIDEO_VARIANT_SITS_OUT = _each([sc for sc in SCENARIOS if sc.split("[")[0] not in _HUNYUAN_VIDEO_VARIANT_RUNS],
                                        "T2V HunyuanVideo runs this on the same blocks (kept off for suite time)")
_HUNYUAN_VIDEO_LAYOUT = ("the test's odd latent (5 x 3) needs padding to the tiny 1.0's patch 2, which HunyuanVideo's "
                         "forward does not do; the identities and references check its layout")


def _hunyuan_video(name, models, host_class, variant=False, v15=False):
    sits_out = dict(_HUNYUAN_VIDEO_VARIANT_SITS_OUT) if variant else {}
    if not v15:
        sits_out.setdefault("layout_slices", _HUNYUAN_VIDEO_LAYOUT)
    # Video latents [B, C, T, H, W]: the scenarios sample one frame (test_hunyuan_video samples several). 1.0: patch
    # (1, 2, 2) on 8-pixel cells; 1.5: patch 1 on 16-pixel cells; a token is 16 pixels either way.
    return TinyFamily(name, "hunyuan_video", models, ja_tiny.tiny_clip, host_class=host_class, latent_frames=True,
                      latent_px=16 if v15 else 8, token_px=16, reference_tol=1e-4, taca_tol=1e-4,
                      # identity_tol, measured (0.33, CPU): with core's ModelAttentionBackend running the calls the
                      # capture leaves alone, one latent element of 1,536 moves by 1.07e-5 (fp32 rounding of another
                      # attention kernel on latents up to about 0.06 there); 2e-5 keeps the rest of the check at fp32.
                      identity_tol=2e-5,
                      lacks=_HUNYUAN_VIDEO_LACKS, sits_out=sits_out)


FAMILIES = FAMILIES + (
    _hunyuan_video("hunyuan_video", "HunyuanVideo 1.0 (T2V)", "HunyuanVideo"),
    _hunyuan_video("hunyuan_video_i2v", "HunyuanVideo 1.0 I2V (concat)", "HunyuanVideoI2V", variant=True),
    _hunyuan_video("hunyuan_video_skyreels", "SkyReels I2V (HunyuanVideo)", "HunyuanVideoSkyreelsI2V", variant=True),
    _hunyuan_video("hunyuan_video15", "HunyuanVideo 1.5", "HunyuanVideo15", v15=True),
    _hunyuan_video("hunyuan_video15_sr", "HunyuanVideo 1.5 SR", "HunyuanVideo15_SR_Distilled", variant=True, v15=True),
)

BY_NAME = {f.name: f for f in FAMILIES}


def _check_list():
    for entry in FAMILIES:
        if entry.name not in ja_tiny.BUILDERS:
            raise ValueError(f"family {entry.name!r}: no tiny builder in ja_tiny.BUILDERS")
        unknown = [c for c in entry.lacks if c not in CAPABILITIES]
        unknown += [s for s in entry.sits_out if s.split("[")[0] not in SCENARIOS]
        if unknown:
            raise ValueError(f"family {entry.name!r}: unknown capabilities or scenarios {unknown}")


_check_list()


def family_params(scenario: str, cases=None):
    """Params for `@pytest.mark.parametrize("family", ...)` over FAMILIES, or, with `cases` ({case id: value}), for
    `("family", "case")` over FAMILIES x cases (ids "<family>-<case>")."""
    if cases is None:
        return [_param(entry.skip_reason(scenario), entry.name, entry) for entry in FAMILIES]
    return [_param(entry.skip_reason(scenario, case), f"{entry.name}-{case}", entry, value)
            for entry in FAMILIES for case, value in cases.items()]


def _param(reason, id, *values):
    # family_skipped: the README's Works with table (ja_works_with) counts a combination's outcomes, not these.
    marks = (pytest.mark.skip(reason=reason), pytest.mark.family_skipped) if reason else ()
    return pytest.param(*values, id=id, marks=marks)


def host_param(name: str):
    """The entry `name` as a pytest param for tests that list families by hand: skipped, with the reason, on a host
    without the family's model."""
    entry = BY_NAME[name]
    missing = entry.missing_from_host()
    marks = pytest.mark.skip(reason=missing) if missing else ()
    return pytest.param(name, id=name, marks=marks)


def names(scenario: str) -> list:
    """The names of the entries that run `scenario` (for a hypothesis strategy, where a param cannot skip)."""
    return [entry.name for entry in FAMILIES if entry.skip_reason(scenario) is None]
