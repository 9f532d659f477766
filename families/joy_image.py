"""JoyImage-Edit: dual-stream blocks over [image ; reference images ; text], text from Qwen3-VL.

Each block's joint attention call orders its tokens [image ; reference images ; text] (`Family.image_first`); the
reference images' tokens follow the image's and stay visible to every token, as Kontext's do. Only the image tokens
have rope positions (the blocks' `pe` holds image and reference rows alone), so region texts need no renumbering. The
host's forward offers `dit` block patches (`("double_block", i)`) and a DIFFUSION_MODEL wrapper, and its attention
takes `transformer_options`. The model takes no text mask and no pooled text vector.

Its text encoder wraps the prompt in a chat template and drops the template's first 34 tokens (the system turn and
the user turn's `<|im_start|>`): the context starts at its `user` header, and word labels start there too.
"""
from __future__ import annotations

from ..attention.forward import ForwardState
from ..attention.token_weights import IMAGE, TEXT
from .base import Family


class JoyImage(Family):
    name = "joy_image"
    models = "JoyImage-Edit"
    table_order = 8
    blocks_doc = "double_blocks from 0 (one per dual-stream block)"
    references_doc = "always visible"
    classes = ("JoyImage",)
    diffusion_classes = ("JoyImageTransformer3DModel",)
    # Region LoRAs: dual-stream blocks only (their modulation is a table, not a layer).
    adapter_roles = (
        (r"double_blocks\.\d+\.(attn\.img_attn_(qkv|proj)|img_mlp\.net\.(0\.proj|2))", IMAGE),
        (r"double_blocks\.\d+\.(attn\.txt_attn_(qkv|proj)|txt_mlp\.net\.(0\.proj|2))", TEXT),
    )
    double_blocks, single_blocks, text_input = "double_blocks", "", ""
    context_encoders = ("qwen3vl_8b",)
    chat_template = True
    context_drop = 34  # the encoder's JOYIMAGE_DROP_IDX: tokens it drops from the front of the template

    def image_first(self, state, block) -> bool:
        return True  # every joint call is [image ; text]
    blocks_help = "double_blocks are the dual-stream blocks, numbered from 0"

    def patch_size(self, dm) -> int:
        size = getattr(dm, "patch_size", (1, 2, 2))
        return int(size[-1]) if isinstance(size, (list, tuple)) else int(size)

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # no text positions

    def text_embedder(self, dm):
        return dm.condition_embedder.text_embedder

    def text_features(self, dm):
        return self.text_embedder(dm).linear_1.in_features

    def concept_block_inputs(self, state: ForwardState, inputs: dict, n_concepts: int) -> dict:
        return inputs  # the rope table holds the image's rows alone: the concepts, like text, take none
