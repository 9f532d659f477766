"""TACA and per-block text enhancement nodes."""
from __future__ import annotations

from comfy_api.latest import io

from ..attention.blocks import BlockSelectionError, parse_blocks, parse_token_range
from ..attention.gate import Gate
from ..attention.taca import APPLY_TO, TacaModifier
from ..attention.text_scale import MODES, TextScaleModifier
from ..families import block_counts
from ..integration.install import install
from .common import (
    CATEGORY,
    DISPLAY_NAMES,
    MODEL_TOOLTIP,
    block_range_inputs,
    choice,
    finite,
    node_error,
    percent_input,
    selections,
    sigma_window,
    supported_family,
)


class JointAttentionTACA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionTACA",
            display_name=DISPLAY_NAMES["JointAttentionTACA"],
            category=f"{CATEGORY}/guidance",
            description="TACA (arXiv 2506.07986): in early steps, multiplies the image-to-text attention logits by "
                        "gamma so the prompt is followed more closely.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                io.Float.Input("gamma", default=1.2, min=0.5, max=3.0, step=0.01,
                               tooltip="Multiplier on image-query x text-key logits (1 = off; the paper uses 1.2)."),
                io.Float.Input("sigma_threshold", default=0.97, min=0.0, max=1000.0, step=0.01,
                               tooltip="Active while the current sigma is at least this. 0.97 = the paper's timestep "
                                       "rule (t >= 970/1000 on flow models); 0 = every step, as the released inference "
                                       "scripts do."),
                io.Combo.Input("apply_to", options=list(APPLY_TO), default="both",
                               tooltip="Which CFG half is scaled (the official code scales both)."),
                *block_range_inputs(),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip="The model with TACA temperature scaling.")],
        )

    @classmethod
    def execute(cls, model, gamma, sigma_threshold, apply_to, double_blocks, single_blocks) -> io.NodeOutput:
        node = "JointAttentionTACA"
        supported_family(node, model)
        choice(node, "apply_to", apply_to, APPLY_TO)
        gamma = finite(node, "gamma", gamma, 0.5, 3.0)
        sigma_threshold = finite(node, "sigma_threshold", sigma_threshold, 0.0, 1000.0)
        double, single = selections(node, model, double_blocks, single_blocks)
        if gamma == 1.0 or not (double or single):
            return io.NodeOutput(model)
        return io.NodeOutput(install(model, TacaModifier(gamma, apply_to, Gate(double, single, sigma_low=sigma_threshold))))


class JointAttentionTextScale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionTextScale",
            display_name=DISPLAY_NAMES["JointAttentionTextScale"],
            category=f"{CATEGORY}/guidance",
            description="Per-block text enhancement (arXiv 2601.02211): scales, empties or skips the text stream before "
                        "chosen blocks to strengthen prompt following.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                io.String.Input("blocks", default="2,7,12,17,22", tooltip="Blocks to act before. FLUX: 0-18 double, "
                                "19-56 single; SD3: joint blocks from 0; Qwen-Image: 0-59."),
                io.Float.Input("scale", default=1.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Multiplier on the text stream (mode scale)."),
                io.Combo.Input("mode", options=list(MODES), default="scale",
                               tooltip="scale: multiply the text; empty: zero it; skip: skip the block."),
                percent_input("start_percent", 0.0, "Where in the schedule the edit starts."),
                percent_input("end_percent", 1.0, "Where in the schedule the edit stops."),
                io.String.Input("token_range", default="", optional=True,
                                tooltip="Text positions a-b (inclusive) to scale; empty = all text tokens."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model",
                                     tooltip="The model with the text stream scaled before the chosen blocks.")],
        )

    @classmethod
    def execute(cls, model, blocks, scale, mode, start_percent, end_percent, token_range="") -> io.NodeOutput:
        node = "JointAttentionTextScale"
        supported_family(node, model)
        choice(node, "mode", mode, MODES)
        scale = finite(node, "scale", scale, 0.0, 10.0)
        n_double, n_single = block_counts(model)
        try:
            chosen = parse_blocks(blocks, n_double + n_single, "blocks")
            tokens = parse_token_range(token_range)
        except BlockSelectionError as exc:
            field = "token_range" if str(exc).startswith("token_range") else "blocks"
            raise node_error(node, field, str(exc)) from None
        sigma_high, sigma_low = sigma_window(node, model, start_percent, end_percent)
        modifier = TextScaleModifier(Gate(numbers=chosen, sigma_high=sigma_high, sigma_low=sigma_low), scale, mode, tokens,
                                     owner=DISPLAY_NAMES[node])
        if modifier.is_identity():
            return io.NodeOutput(model)
        return io.NodeOutput(install(model, modifier))


NODES = [JointAttentionTACA, JointAttentionTextScale]
