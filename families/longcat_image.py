"""LongCat-Image: FLUX's double and single blocks, text from Qwen2.5-VL, no pooled vector, text positions on rope
axes 1 and 2 (renumbered for region texts by the FLUX `post_input` rule).

Its model class (`LongCatImage(Flux)`) shifts the image's rope positions by the length of the text context in its own
`_apply_model`, which runs after the pack has appended the region texts: left alone, the image would sit after the
prompt and every region text. The pack hands it the prompt's length instead (`rope_options`, which LongCat only sets
by default, so a RoPE node's own shift still wins). The image then sits where the prompt alone puts it, and a region
text reads as the prompt alone when it is as long as the prompt: LongCat's text encoder pads every prompt to the same
512 tokens, so that always holds for its own conditionings; region texts of another length are refused by name.
"""
from __future__ import annotations

from typing import Optional

from ..attention.forward import ForwardState
from .flux import Flux


class LongCatImage(Flux):
    name = "longcat_image"
    models = "LongCat-Image"
    table_order = 0.5
    blocks_doc = "double 0-18, single 0-37"
    references_doc = "Edit: always visible"
    classes = ("LongCatImage",)
    pooled_input = ""  # no pooled text vector
    text_norm = ""
    context_encoders = ("qwen25_7b",)
    chat_template = True
    cuts_to_user_text = True

    def forward_options(self, state: ForwardState, options: dict) -> dict:
        if not state.region_lens:
            return options
        shift = float(state.n_txt)
        rope = {"shift_t": 1.0, "shift_y": shift, "shift_x": shift, **(options.get("rope_options") or {})}
        return {**options, "rope_options": rope}

    def refused_region_texts(self, state: ForwardState) -> Optional[str]:
        other = [n for n in state.region_lens if n != state.n_txt]
        if not other:
            return None
        return (f"LongCat-Image places the image after the text by the prompt's length ({state.n_txt} tokens), so a "
                f"region text must be as long as the prompt to read as a prompt alone; got region texts of {other} "
                "tokens. Encode region prompts with the same LongCat-Image text encoder as the prompt (it pads every "
                "prompt to the same length)")
