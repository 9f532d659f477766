"""Lens: dual-stream blocks over [image ; text], text features from several layers of its GPT-OSS encoder.

Each block's joint attention call orders its tokens [image ; text] (`Family.image_first`). A latent cell is a token
(the model takes the 128-channel FLUX.2 latent as it is: no patches, 16 image pixels per token). The host's forward
offers `dit` block patches (`("double_block", i)`) and a DIFFUSION_MODEL wrapper, and its attention takes
`transformer_options`.

Text rope positions count from `max(rows, cols) // 2` along the whole text, on all three axes, in the rope table the
blocks get (`pe`: the image's rows, then the text's): each region text gets the rows of its prompt-alone positions
there (the model's `post_input` patch comes before the table is made, and it holds no ids).

Its text mask: the text encoder gives one (all ones for a prompt), and the model passes a joint mask built from it
to every attention call. A mask of all ones is the mask the model makes itself when it gets none, so the pack drops
it, and the model's joint mask then masks nothing; a padded text (a batch of prompts of different lengths) keeps its
mask and the pack leaves its calls to the host (regions refuse it by name).
"""
from __future__ import annotations

import torch

from ..attention.forward import ForwardState
from ..attention.layout import as_prompt_alone
from ..attention.token_weights import IMAGE, SHARED, TEXT
from .base import Family

OPEN_MASK = ("lens", "open mask")  # ForwardState.tables: the model's joint mask masks nothing in this forward
ROPE = ("lens", "rope")


class Lens(Family):
    name = "lens"
    models = "Lens"
    table_order = 7
    blocks_doc = "double_blocks 0-47"
    references_doc = "the model takes none"
    classes = ("Lens",)
    diffusion_classes = ("LensTransformer2DModel",)
    # Region LoRAs: img_qkv / to_out / img_mlp act on the image stream, txt_qkv / to_add_out / txt_mlp on the text.
    adapter_roles = (
        (r"transformer_blocks\.\d+\.(attn\.(img_qkv|to_out\.0)|img_mlp\.w[123])", IMAGE),
        (r"transformer_blocks\.\d+\.(attn\.(txt_qkv|to_add_out)|txt_mlp\.w[123])", TEXT),
        (r"transformer_blocks\.\d+\.(img|txt)_mod\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input = "transformer_blocks", "", "txt_in"
    context_encoders = ("gpt_oss",)
    latent_px = 16

    def image_first(self, state, block) -> bool:
        return True  # every joint call is [image ; text]
    reference_images = False
    word_labels = False
    word_labels_refused = ("Lens's tokenizer ships inside its text-encoder checkpoint, not with ComfyUI, so the pack "
                           "cannot read its tokens as words")
    blocks_help = "48 dual-stream blocks 0-47"

    def patch_size(self, dm) -> int:
        return 1  # the model's blocks take the latent cells themselves (`patch_size` only shapes its output layer)

    def forward_inputs(self, state: ForwardState, kwargs: dict) -> dict:
        mask = kwargs.get("attention_mask")
        if mask is None:
            state.tables[OPEN_MASK] = True
        elif torch.is_tensor(mask) and bool(mask.bool().all()):
            state.tables[OPEN_MASK] = True
            kwargs = {k: v for k, v in kwargs.items() if k != "attention_mask"}
        return kwargs

    def open_call_mask(self, state: ForwardState) -> bool:
        return bool(state.tables.get(OPEN_MASK))

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # text positions are fixed in the blocks' rope table

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        pe = args.get("pe")
        if not state.region_lens or not torch.is_tensor(pe) or pe.ndim < 3 or pe.shape[2] < state.n_context:
            return args
        cached = state.tables.get(ROPE)
        if cached is None or cached[0] is not pe:
            visual = pe.shape[2] - state.n_context
            text = as_prompt_alone(pe[:, :, visual:], 2, state.n_txt, state.region_lens)
            cached = state.tables[ROPE] = (pe, torch.cat([pe[:, :, :visual], text], dim=2))
        return {**args, "pe": cached[1]}

    def text_embedder(self, dm):
        return LensTextInput(dm)

    def concept_block_inputs(self, state: ForwardState, inputs: dict, n_concepts: int) -> dict:
        """The image's rope rows, then every concept at the first text position; no joint mask (the concepts are
        not padded)."""
        pe = inputs.get("pe")
        inputs = {**inputs, "attn_mask": None}
        if pe is None:
            return inputs
        visual = pe.shape[2] - state.n_context
        text = pe[:, :, visual:visual + 1]
        return {**inputs, "pe": torch.cat([pe[:, :, :visual], text.expand(*pe.shape[:2], n_concepts, *pe.shape[3:])],
                                          dim=2)}


class LensTextInput(torch.nn.Module):
    """Lens's text input as one module: each encoder layer's features through its own norm, then `txt_in` (the
    model's own layers, never copies)."""

    def __init__(self, dm):
        super().__init__()
        self.norms = dm.txt_norm
        self.txt_in = dm.txt_in
        self.multi_layer = bool(getattr(dm, "multi_layer_encoder_feature", False))

    def forward(self, x):
        if not self.multi_layer:
            return self.txt_in(self.norms(x))
        n = len(self.norms)
        parts = x.reshape(*x.shape[:-1], n, x.shape[-1] // n).unbind(dim=-2)
        return self.txt_in(torch.cat([norm(part) for norm, part in zip(self.norms, parts)], dim=-1))
