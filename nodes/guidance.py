"""TACA and per-block text enhancement nodes."""
from __future__ import annotations

from ..attention.blocks import BlockSelectionError, parse_blocks, parse_token_range
from ..attention.gate import Gate
from ..attention.taca import APPLY_TO, TacaModifier
from ..attention.text_scale import MODES, TextScaleModifier
from .common import CATEGORY, block_range_fields, family_of, finite, node_error, selections, sigma_window
from .families import block_counts
from .host import install


class JointAttentionTACA:
    CATEGORY = f"{CATEGORY}/guidance"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with TACA temperature scaling.",)
    FUNCTION = "apply"
    DESCRIPTION = ("TACA (arXiv 2506.07986): in early steps, multiplies the image-to-text attention logits by gamma "
                   "so the prompt is followed more closely.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A FLUX.1, FLUX.2/Klein, Chroma or SD3/SD3.5 model."}),
                "gamma": ("FLOAT", {"default": 1.2, "min": 0.5, "max": 3.0, "step": 0.01,
                                    "tooltip": "Multiplier on image-query x text-key logits (1 = off; the paper uses 1.2)."}),
                "sigma_threshold": ("FLOAT", {"default": 0.97, "min": 0.0, "max": 1000.0, "step": 0.01,
                                              "tooltip": "Active while the current sigma is at least this. 0.97 = the paper's timestep rule (t >= 970/1000 on flow models); 0 = every step, as the released inference scripts do."}),
                "apply_to": (list(APPLY_TO), {"default": "both", "tooltip": "Which CFG half is scaled (the official code scales both)."}),
                **block_range_fields(),
            }
        }

    def apply(self, model, gamma, sigma_threshold, apply_to, double_blocks, single_blocks):
        node = "JointAttentionTACA"
        family_of(node, model)
        gamma = finite(node, "gamma", gamma, 0.5, 3.0)
        sigma_threshold = finite(node, "sigma_threshold", sigma_threshold, 0.0, 1000.0)
        double, single = selections(node, model, double_blocks, single_blocks)
        if gamma == 1.0 or not (double or single):
            return (model,)
        return (install(model, TacaModifier(gamma, apply_to, Gate(double, single, sigma_low=sigma_threshold))),)


class JointAttentionTextScale:
    CATEGORY = f"{CATEGORY}/guidance"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with the text stream scaled before the chosen blocks.",)
    FUNCTION = "apply"
    DESCRIPTION = ("Per-block text enhancement (arXiv 2601.02211): scales, empties or skips the text stream before "
                   "chosen blocks to strengthen prompt following.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A FLUX.1, FLUX.2/Klein, Chroma or SD3/SD3.5 model."}),
                "blocks": ("STRING", {"default": "2,7,12,17,22",
                                      "tooltip": "Blocks to act before. FLUX: 0-18 double, 19-56 single; SD3: joint blocks from 0."}),
                "scale": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 10.0, "step": 0.05,
                                    "tooltip": "Multiplier on the text stream (mode scale)."}),
                "mode": (list(MODES), {"default": "scale",
                                       "tooltip": "scale: multiply the text; empty: zero it; skip: skip the block."}),
                "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                            "tooltip": "Where in the schedule the edit starts."}),
                "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Where in the schedule the edit stops."}),
            },
            "optional": {
                "token_range": ("STRING", {"default": "", "tooltip": "Text positions a-b (inclusive) to scale; empty = all text tokens."}),
            },
        }

    def apply(self, model, blocks, scale, mode, start_percent, end_percent, token_range=""):
        node = "JointAttentionTextScale"
        family_of(node, model)
        scale = finite(node, "scale", scale, 0.0, 10.0)
        n_double, n_single = block_counts(model)
        try:
            chosen = parse_blocks(blocks, n_double + n_single, "blocks")
            tokens = parse_token_range(token_range)
        except BlockSelectionError as exc:
            field = "token_range" if str(exc).startswith("token_range") else "blocks"
            raise node_error(node, field, str(exc)) from None
        sigma_high, sigma_low = sigma_window(node, model, start_percent, end_percent)
        modifier = TextScaleModifier(Gate(numbers=chosen, sigma_high=sigma_high, sigma_low=sigma_low), scale, mode, tokens)
        if modifier.is_identity():
            return (model,)
        return (install(model, modifier),)


NODE_CLASS_MAPPINGS = {
    "JointAttentionTACA": JointAttentionTACA,
    "JointAttentionTextScale": JointAttentionTextScale,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "JointAttentionTACA": "TACA (text attention temperature)",
    "JointAttentionTextScale": "Text Scale per Block",
}
