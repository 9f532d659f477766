"""Regional prompting nodes: build regions, apply them to a model of a supported family (families/)."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

import torch
from comfy_api.latest import io

from ..attention.regional import GLOBAL_PROMPT, IMAGE_ATTENTION, MAX_REGIONS, Region, RegionalModifier
from ..families import model_family
from ..integration.conditioning import model_text
from ..integration.install import install
from ..integration.options import find_dispatcher
from ..integration.region_lora import INJECTION_KEY, build_layers, hook_loras, sigma_converter
from ..integration.runtime import MEMORY
from .common import (
    CATEGORY,
    DISPLAY_NAMES,
    MODEL_TOOLTIP,
    block_range_inputs,
    choice,
    finite,
    gate,
    node_error,
    percent_input,
    supported_family,
)

log = logging.getLogger("joint_attention")

REGIONS_TYPE = "JA_REGIONS"
Regions = io.Custom(REGIONS_TYPE)  # the socket type between Region / Region Canvas and Apply


def _digest(*tensors, extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def region_from(node: str, conditioning, mask, strength: float):
    """A `Region` from a CONDITIONING and a MASK, or None (with a warning) when it cannot act."""
    if not conditioning:
        raise node_error(node, "conditioning", "is empty; connect a CLIPTextEncode output")
    if len(conditioning) > 1:
        log.warning("[joint_attention] %s: conditioning has %d entries; using the first", node, len(conditioning))
    tokens = conditioning[0][0]
    if tokens.ndim != 3 or tokens.shape[1] == 0:
        raise node_error(node, "conditioning", f"expected text tokens [1, T, C], got shape {tuple(tokens.shape)}")
    tokens = tokens[0].detach().to("cpu")
    if not bool(torch.isfinite(tokens).all()):
        raise node_error(node, "conditioning", "holds NaN or infinite values; re-encode the prompt")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise node_error(node, "mask", f"expected a MASK [batch, height, width], got shape {tuple(mask.shape)}")
    if mask.numel() == 0:
        raise node_error(node, "mask", f"is empty (shape {tuple(mask.shape)}); connect a mask with pixels")
    mask = mask.detach().to("cpu").float()
    if not bool(torch.isfinite(mask).all()):
        raise node_error(node, "mask", "holds NaN or infinite values; masks take values from 0 to 1")
    mask = mask.clamp(0.0, 1.0)
    if mask.shape[0] > 1 and bool((mask == mask[:1]).all()):
        mask = mask[:1]  # one mask repeated: keep one
    if mask.shape[0] > 1:
        log.info("[joint_attention] %s: %d masks, one per image of the batch (video models: per frame)", node, mask.shape[0])
    strength = finite(node, "strength", strength, 0.0, 4.0)
    if strength <= 0:
        log.warning("[joint_attention] %s: strength 0 drops this region", node)
        return None
    if not bool((mask > 0).any()):
        log.warning("[joint_attention] %s: the mask is empty (all zero); this region is dropped", node)
        return None
    options = {k: v for k, v in conditioning[0][1].items() if k in _TEXT_OPTIONS}
    loras, refused = hook_loras(conditioning[0][1].get("hooks"))
    if refused:
        raise node_error(node, "conditioning", refused)
    return Region(tokens, mask, float(strength), _digest(tokens, mask, extra=repr(float(strength))), options, loras)


# Conditioning entries that describe the text itself (kept so the model can prepare region texts as it
# prepares a prompt); others (reference latents, areas, masks) belong to the sampler's conditioning. LoRA hooks
# become the region's LoRAs (region_from).
# HunyuanImage's byT5 glyph tokens (quoted text) are kept so that the model's family can refuse them by name; HiDream's
# Llama states per layer are the region text's too.
_TEXT_OPTIONS = ("pooled_output", "attention_mask", "guidance", "conditioning_byt5small", "conditioning_llama3")


class JointAttentionRegion(io.ComfyNode):
    """One region: a prompt and where it applies. Chain nodes for more regions."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionRegion",
            display_name=DISPLAY_NAMES["JointAttentionRegion"],
            category=f"{CATEGORY}/regional",
            description="Pairs a region prompt with a mask. Chain several to describe any number of regions.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The region's prompt, encoded with the same text encoder "
                                      "as the main prompt. LoRA hooks on it (Create Hook LoRA -> Cond Set Props) act "
                                      "on this region only, as a Region LoRA does."),
                io.Mask.Input("mask", tooltip="Where the region applies. Any resolution; soft values weaken the region "
                              "smoothly. A batch gives one mask per image of the sampled batch. Video models "
                              "(HunyuanVideo): 1 mask for every frame, one per latent frame, or one per pixel frame "
                              "(1 + 4 x (latent frames - 1): the first frame alone, then each group of 4 averaged)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="Multiplies the image's attention to this region's text (0 drops the region)."),
                Regions.Input("regions", optional=True, tooltip="Regions from a previous Region node, to chain."),
            ],
            outputs=[Regions.Output("regions_out", display_name="regions", tooltip="Regions so far; connect to another "
                                    "Region node or to Apply Regional Attention.")],
        )

    @classmethod
    def execute(cls, conditioning, mask, strength, regions=None) -> io.NodeOutput:
        node = "Region (mask + prompt)"
        previous = tuple(regions or ())
        if len(previous) >= MAX_REGIONS:
            raise node_error(node, "regions", f"already holds {len(previous)} regions; a chain takes at most "
                             f"{MAX_REGIONS} (merge masks that share a prompt)")
        region = region_from(node, conditioning, mask, strength)
        return io.NodeOutput(previous + ((region,) if region is not None else ()))


class JointAttentionRegionalApply(io.ComfyNode):
    """Enforce regions through joint-attention masks in one model pass (FLUX, SD3)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionRegionalApply",
            display_name=DISPLAY_NAMES["JointAttentionRegionalApply"],
            category=f"{CATEGORY}/regional",
            description="Region texts are appended to the prompt and masked in joint attention, so every region costs "
                        "no extra model pass. Negative prompts and CFG work as usual.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                Regions.Input("regions", tooltip="Regions from Region nodes or the Region Canvas."),
                io.Float.Input("base_ratio", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of unmasked attention to the base prompt blended into image tokens "
                                       "(0.1-0.3 keeps the image coherent)."),
                percent_input("start_percent", 0.0, "Where in the schedule regions start to apply."),
                percent_input("end_percent", 0.4, "Where regions stop applying; layout is set early, so 0.3-0.5 is "
                              "usually enough."),
                *block_range_inputs(),
                io.Combo.Input("image_attention", options=list(IMAGE_ATTENTION), default="restricted",
                               tooltip="restricted: image tokens attend within their region (sharper separation); "
                                       "open: everywhere (more coherent)."),
                io.Combo.Input("global_prompt", options=list(GLOBAL_PROMPT), default="background",
                               tooltip="background: the main prompt drives uncovered areas only; everywhere: it "
                                       "reaches every token."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip="The model with regional attention; use "
                                     "it in the sampler with the usual prompts.")],
        )

    @classmethod
    def execute(cls, model, regions, base_ratio, start_percent, end_percent, double_blocks, single_blocks,
                image_attention, global_prompt) -> io.NodeOutput:
        node = "Apply Regional Attention"
        supported_family(node, model)
        choice(node, "image_attention", image_attention, IMAGE_ATTENTION)
        choice(node, "global_prompt", global_prompt, GLOBAL_PROMPT)
        if not regions:
            log.info("[joint_attention] %s: no regions; the model passes through unchanged", node)
            return io.NodeOutput(model)
        if len(regions) > MAX_REGIONS:
            raise node_error(node, "regions", f"{len(regions)} regions; at most {MAX_REGIONS} are accepted "
                             "(merge masks that share a prompt)")
        _check_feature_size(node, model, regions)
        regions = as_model_text(node, model, regions)
        base_ratio = finite(node, "base_ratio", base_ratio, 0.0, 1.0)
        where = gate(node, model, double_blocks, single_blocks, start_percent, end_percent)
        regions = with_earlier_regions(node, model, regions, (image_attention, global_prompt, base_ratio), where)
        modifier = RegionalModifier(regions, base_ratio, where, image_attention, global_prompt,
                                    cache=MEMORY.cache, registry=MEMORY.registry)
        return io.NodeOutput(with_region_loras(node, install(model, modifier), regions))


def with_region_loras(node, model, regions):
    """`model` (a clone the node owns) with the LoRAs the regions carry, wrapped into the layers they target."""
    layers = build_layers(node, model, model_family(model), modifier_regions(regions), sigma_converter(model),
                          MEMORY.registry)  # its errors name the node, the LoRA and the keys
    if layers is None:
        model.remove_injections(INJECTION_KEY)
    else:
        model.set_injections(INJECTION_KEY, [layers.injection()])
    return model


def modifier_regions(regions):
    """The regions in the order the regional modifier lays their texts out (it keeps those with strength > 0)."""
    return tuple(r for r in regions if r.strength > 0)


def with_earlier_regions(node, model, regions, settings, where):
    """`regions` after those an earlier Apply Regional Attention node put on `model`: two Apply nodes in a row act
    as one Apply with both chains of Region nodes, first the earlier one's (the dispatcher holds one regional
    modifier, so a second one would otherwise replace the first). Exact only when both nodes use the same settings;
    different settings are refused, naming both nodes."""
    found = find_dispatcher(model.model_options.get("transformer_options"))
    earlier = next((m for m in found.modifiers if isinstance(m, RegionalModifier)), None) if found else None
    if earlier is None or not earlier.regions:
        return regions
    if earlier.settings != settings or earlier.gate != where:
        raise node_error(node, "model", "this model already has regions from an earlier Apply Regional Attention node "
                         "with other settings (base_ratio, start_percent, end_percent, double_blocks, single_blocks, "
                         "image_attention or global_prompt); two Apply Regional Attention nodes in a row act as one "
                         "only with the same settings. Fix: give both Apply Regional Attention nodes the same "
                         "settings, or chain all Region nodes into one Apply Regional Attention node")
    combined = tuple(earlier.regions) + tuple(regions)
    if len(combined) > MAX_REGIONS:
        raise node_error(node, "regions", f"{len(regions)} regions here and {len(earlier.regions)} from the earlier "
                         f"Apply Regional Attention node make {len(combined)}; at most {MAX_REGIONS} are accepted on "
                         "one model (merge masks that share a prompt)")
    log.info("[joint_attention] %s: adds its %d region(s) to the %d of the earlier Apply Regional Attention node",
             node, len(regions), len(earlier.regions))
    return combined


def as_model_text(node, model, regions):
    """Each region's tokens as the model sees a prompt (FLUX.2 pads text to 512 tokens)."""
    out = []
    for i, region in enumerate(regions):
        try:
            tokens = model_text(model, region.tokens, region.options)
        except Exception as exc:  # the host's conditioning code raised: say which region
            raise node_error(node, "regions", f"region {i + 1}'s prompt could not be prepared for this model "
                             f"({type(exc).__name__}: {exc}); encode it with the model's text encoder") from None
        if tokens is not region.tokens:
            region = replace(region, tokens=tokens, content_hash=f"{region.content_hash}:{tuple(tokens.shape)}")
        out.append(region)
    return tuple(out)


def _check_feature_size(node, model, regions):
    family = model_family(model)
    expected = family.text_features(family.diffusion_model(model))
    for i, region in enumerate(regions):
        refused = family.refused_region(region.options)
        if refused:
            raise node_error(node, "regions", f"region {i + 1}'s prompt {refused}")
        got = region.tokens.shape[-1]
        if expected is not None and got != expected:
            raise node_error(node, "regions", f"region {i + 1}'s prompt has {got} features per token but this model "
                             f"expects {expected}: encode region prompts with the text encoder that matches the model "
                             "(e.g. the FLUX DualCLIPLoader for FLUX, the SD3 TripleCLIPLoader for SD3)")


NODES = [JointAttentionRegion, JointAttentionRegionalApply]
