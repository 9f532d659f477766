"""Model families: the one place that knows how each supported model looks inside ComfyUI.

A family says which `comfy.model_base` class it is, where its transformer blocks and text input
layer are, how many image pixels a latent cell covers, and which text encoders' tokens make up its
context (for labelling maps). Adding a family is one entry here, its tiny test model and its
example workflow; the attention math (attention/) never sees a model object.
"""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_base
import torch


class UnsupportedModel(ValueError):
    pass


@dataclass(frozen=True)
class Family:
    name: str
    base_class: str  # comfy.model_base class (a subclass listed before its base)
    double_blocks: str  # attribute of the diffusion model with the double / joint blocks
    single_blocks: str  # ... and with the single blocks ("" when there are none)
    text_input: str  # the layer that turns text-encoder features into the text stream
    latent_px: int = 8  # image pixels per latent cell, for hosts whose latent format does not say
    # Tokenizer keys whose tokens make up the context, in order; the first present wins when only one is.
    context_encoders: tuple = ("t5xxl",)
    # The layer that adds the pooled text vector (CLIP pooled output) to the blocks' modulation vector,
    # "" when the family has none (FLUX.2, Chroma).
    pooled_input: str = ""
    # A norm the model applies to text-encoder features before `text_input` (Qwen-Image: txt_norm), "" when none.
    text_norm: str = ""
    # Text rope positions count along the whole context in the rope table the blocks get (Qwen-Image): region
    # texts' rows are renumbered there, in the block patches.
    text_rope_by_index: bool = False
    # The text encoder wraps prompts in a chat template (Qwen2.5-VL, Qwen3): word labels start at the user's text.
    chat_template: bool = False
    # How the block numbering reads in tooltips / README / errors.
    blocks_help: str = ""
    # How the pack finds the blocks: "dit" = the host's `patches_replace["dit"]` block patches; "layer_lists" =
    # the model offers none (NextDiT): the pack wraps its layer lists (nodes/nextdit.py).
    block_hooks: str = "dit"
    # The model pads its caption to a multiple of `dm.pad_tokens_multiple` with a learned pad token and refines
    # the caption alone first (NextDiT): region texts get their own pads and are refined alone.
    padded_caption: bool = False
    # ConceptAttention needs a text stream of its own to carry the concepts through the blocks.
    concepts: bool = True
    # Reference-image tokens (Kontext, Qwen-Image-Edit, FLUX.2) work with the pack's features.
    reference_images: bool = True
    # The diffusion model class the pack's hooks are written for, "" when any model of `base_class` will do
    # (NextDiT: 0.29's pixel-space variant runs a forward of its own).
    diffusion_class: str = ""

    def diffusion_model(self, model_patcher):
        return model_patcher.model.diffusion_model

    def block_counts(self, dm) -> tuple:
        """(double / joint blocks, single blocks)."""
        double = getattr(dm, self.double_blocks, None)
        if double is None:
            raise UnsupportedModel(f"cannot find the transformer blocks of {type(dm).__name__!r}")
        return len(double), len(getattr(dm, self.single_blocks, ())) if self.single_blocks else 0

    def patch_size(self, dm) -> int:
        return getattr(dm, "patch_size", 2)

    def text_embedder(self, dm):
        """The layers that turn text-encoder features into the text stream, as one module (Qwen-Image:
        `txt_norm` then `txt_in`). The model's own layers, never copies."""
        layer = getattr(dm, self.text_input, None)
        norm = getattr(dm, self.text_norm, None) if self.text_norm else None
        if layer is not None and norm is not None:
            return torch.nn.Sequential(norm, layer)
        return layer

    def text_features(self, dm):
        """Features per text token the model takes, or None when it cannot be read."""
        layer = getattr(dm, self.text_input, None)
        if layer is not None and hasattr(layer, "in_features"):
            return layer.in_features
        if layer is not None and hasattr(layer, "weight"):
            return layer.weight.shape[1]
        return None

    def concept_vec_delta(self, dm, vec, pooled):
        """What turns the double blocks' modulation vector `vec` [B, D] (timestep, guidance and the
        prompt's pooled vector) into the same vector with the pooled input replaced by zeros, as
        ConceptAttention's released code modulates its concepts (`vector_in(0)`): a [B, D] fp32 tensor
        to add to `vec` (in fp32), or None when the family has no pooled input or the forward got none (the host then
        uses zeros itself). FLUX.1: vec = time_in + guidance_in + vector_in(y[:, :vec_in_dim]);
        SD3: c = t_embedder + y_embedder(y)."""
        layer = getattr(dm, self.pooled_input, None) if self.pooled_input else None
        if layer is None or pooled is None or not torch.is_tensor(vec) or vec.ndim != 2:
            return None
        width = getattr(getattr(dm, "params", None), "vec_in_dim", None)  # FLUX reads y[:, :vec_in_dim]
        y = pooled[:, :width] if width else pooled
        y = y.to(vec.device, vec.dtype)
        if y.shape[0] != vec.shape[0]:
            return None
        with torch.no_grad():
            # The prompt's term is recomputed from the same input, so it equals what the host added.
            return layer(torch.zeros_like(y)).float() - layer(y).float()

    def latent_pixels(self, base) -> int:
        """Image pixels per latent cell side: the host's latent format says so where it can
        (`spacial_downscale_ratio`, after 0.3.75), else the family's own figure."""
        declared = getattr(getattr(base, "latent_format", None), "spacial_downscale_ratio", None)
        return declared if isinstance(declared, int) and declared > 0 else self.latent_px


_FLUX_LIKE = dict(double_blocks="double_blocks", single_blocks="single_blocks", text_input="txt_in")

# Most specific class first: Flux2 and Chroma derive from Flux.
FAMILIES = (
    # Qwen-Image / -Edit: 60 dual-stream blocks over [text ; image ; reference images], rope positions of text
    # numbered from `txt_start` along the context (region texts are renumbered in the block patches).
    Family("qwen_image", "QwenImage", double_blocks="transformer_blocks", single_blocks="", text_input="txt_in",
           text_norm="txt_norm", context_encoders=("qwen25_7b",), text_rope_by_index=True, chat_template=True,
           blocks_help="60 dual-stream blocks 0-59"),
    # Z-Image / Lumina-2 (NextDiT): caption refiner and noise refiner layers, then single-stream joint layers over
    # [caption ; image], each padded to a multiple of 32 by learned pad tokens (nodes/nextdit.py).
    Family("z_image", "Lumina2", double_blocks="layers", single_blocks="", text_input="cap_embedder",
           context_encoders=("qwen3_4b", "gemma2_2b"), chat_template=True, block_hooks="layer_lists",
           padded_caption=True, concepts=False, reference_images=False, diffusion_class="NextDiT",
           blocks_help="double_blocks are the joint layers (Z-Image-Turbo: 0-29); the caption and noise refiners "
                       "are not numbered"),
    Family("flux2", "Flux2", latent_px=16, **_FLUX_LIKE),
    Family("chroma", "Chroma", **_FLUX_LIKE),
    Family("flux", "Flux", pooled_input="vector_in", **_FLUX_LIKE),
    Family("sd3", "SD3", double_blocks="joint_blocks", single_blocks="", text_input="context_embedder",
           context_encoders=("l", "g", "t5xxl"), pooled_input="y_embedder"),
)


# The README's model-support table (checked by tests/nodes/test_docs.py): family x feature, with how each
# family's blocks are numbered and where reference images go.
FEATURES = ("regions", "TACA", "text scale", "attention maps", "ConceptAttention", "reference images")
SUPPORT = (
    # (models, family name or "" when not supported, blocks, reference images)
    ("FLUX.1 dev / schnell / Kontext", "flux", "double 0-18, single 0-37 (text scale: 0-56)",
     "Kontext: always visible"),
    ("FLUX.2 dev / Klein", "flux2", "double and single, numbered per kind", "always visible"),
    ("Chroma", "chroma", "double 0-18, single 0-37", "-"),
    ("SD3 / SD3.5", "sd3", "joint 0-23 (3.5-M) / 0-37 (3.5-L)", "-"),
    ("Qwen-Image / Qwen-Image-Edit", "qwen_image", "double_blocks 0-59", "Edit: always visible"),
    ("Z-Image / Lumina-2 (NextDiT)", "z_image", "double_blocks = joint layers from 0 (Z-Image-Turbo: 0-29)",
     "omni references refused with a message"),
)


def support_table() -> str:
    """The README's model-support table, from SUPPORT and FAMILIES."""
    by_name = {f.name: f for f in FAMILIES}
    lines = ["| model | " + " | ".join(FEATURES) + " | blocks | reference images |",
             "|---|" + "---|" * (len(FEATURES) + 2)]
    for models, family, blocks, refs in SUPPORT:
        found = by_name.get(family)
        unsupported = {"ConceptAttention": not found.concepts, "reference images": not found.reference_images} \
            if found is not None else {}
        marks = ["no" if found is None or unsupported.get(feature) else "yes" for feature in FEATURES]
        lines.append(f"| {models} | " + " | ".join(marks) + f" | {blocks} | {refs} |")
    return "\n".join(lines)


def family_of_base(base):
    """The family of a `comfy.model_base` instance, or None."""
    for family in FAMILIES:
        cls = getattr(comfy.model_base, family.base_class, None)
        if cls is not None and isinstance(base, cls):
            return family
    return None


def model_family(model_patcher) -> Family:
    family = family_of_base(model_patcher.model)
    if family is None:
        raise UnsupportedModel(
            f"expected a joint-attention model (FLUX.1, FLUX.2/Klein, Chroma, SD3/SD3.5, Qwen-Image/-Edit, "
            f"Z-Image/Lumina-2), got {type(model_patcher.model).__name__!r}; connect the MODEL output of a FLUX, SD3, "
            "Qwen-Image or Z-Image checkpoint/UNET loader")
    dm = family.diffusion_model(model_patcher)
    if family.diffusion_class and type(dm).__name__ != family.diffusion_class:
        raise UnsupportedModel(
            f"expected a {family.diffusion_class} diffusion model for this {family.name} model, got "
            f"{type(dm).__name__!r}, a variant the pack does not support; connect the MODEL of a Z-Image-Turbo or "
            "Lumina-2 checkpoint/UNET loader")
    return family


def block_counts(model_patcher) -> tuple:
    family = model_family(model_patcher)
    return family.block_counts(family.diffusion_model(model_patcher))
