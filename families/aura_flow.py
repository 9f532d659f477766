"""AuraFlow: double layers over [registers ; text] and [image], then single layers over [registers ; text ; image].

The model puts 8 learned register tokens in front of the text in its text stream (`register_tokens`, the same for
every prompt); they carry no word. No text or image rope (the image has a learned position table added before the
blocks), so text positions need no renumbering, and no pooled text vector. The host's forward offers `dit` block
patches (`("double_block", i)`, `("single_block", i)`), a DIFFUSION_MODEL wrapper, and its attention takes
`transformer_options`.

Where the registers sit in the pack's layout: the model's own registers come first in the text stream and count with
the base prompt's text (they belong to no region: every token that sees the base prompt sees them). The prompt alone
reads `[registers ; prompt]`, so each region text gets registers of its own, as it has them as the prompt alone: the
context the model gets is `[prompt ; slots ; region 1 ; slots ; region 2 ...]` with one register-sized slot of zero
rows before each region text, and where the text stream first enters a block, those rows become the model's register
tokens. The base text is `[registers ; prompt]`, region text r is `[its registers ; region r]`, and a region covering
the whole image sees, bit for bit, what its text sees as the prompt.
"""
from __future__ import annotations

import torch

from ..attention.forward import ForwardState, TextStream
from ..attention.token_weights import IMAGE, JOINT, SHARED, TEXT
from .base import Family, UnsupportedModel

REGISTER_SLOTS = ("aura_flow", "register slots")  # ForwardState.tables: [(start, stop)] text-stream rows to fill


class AuraFlow(Family):
    name = "aura_flow"
    models = "AuraFlow"
    table_order = 6
    blocks_doc = "double_layers 0-3, single_layers 0-31 (text scale: 0-35)"
    references_doc = "the model takes none"
    classes = ("AuraFlow",)
    diffusion_classes = ("MMDiT",)
    # Region LoRAs: in double layers w1* / mlpC act on the text (with the register tokens), w2* / mlpX on the image;
    # single layers run [text ; image].
    adapter_roles = (
        (r"double_layers\.\d+\.(attn\.w2[qkvo]|mlpX\.c_(fc1|fc2|proj))", IMAGE),
        (r"double_layers\.\d+\.(attn\.w1[qkvo]|mlpC\.c_(fc1|fc2|proj))", TEXT),
        (r"single_layers\.\d+\.(attn\.w1[qkvo]|mlp\.c_(fc1|fc2|proj))", JOINT),
        (r"(double_layers\.\d+\.mod[CX]|single_layers\.\d+\.modCX)\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input = "double_layers", "single_layers", "cond_seq_linear"
    context_encoders = ("pile_t5xl",)
    leading_text = 8  # register tokens before the prompt in the text stream
    reference_images = False
    blocks_help = "double_blocks are AuraFlow's double_layers (0-3), single_blocks its single_layers (0-31)"

    def check_model(self, model_patcher) -> None:
        super().check_model(model_patcher)
        registers = getattr(self.diffusion_model(model_patcher), "register_tokens", None)
        if not torch.is_tensor(registers) or registers.ndim != 3 or registers.shape[1] != self.leading_text:
            raise UnsupportedModel(f"expected an AuraFlow model with {self.leading_text} register tokens, got "
                                   f"{None if registers is None else tuple(registers.shape)}, a variant the pack does "
                                   "not support")

    # ConceptAttention: the concepts laid out as the model lays out a prompt, after its register tokens (they carry no
    # word, so the maps read the rows after them).
    def concept_stream_start(self, dm, embedded, extra):
        tokens = dm.register_tokens[0].to(device=embedded.device, dtype=embedded.dtype)
        return torch.cat([tokens, embedded], dim=0)

    def concept_rows(self, dm, n_concepts: int) -> slice:
        return slice(registers(dm), registers(dm) + n_concepts)

    def prompt_layout(self, state: ForwardState, dm) -> None:
        # The model puts its registers before the prompt: the base text counts them.
        state.n_txt = state.n_context = state.n_txt + registers(dm)

    def text_layout(self, state: ForwardState, dm, context, regions):
        if regions is None:
            return context
        lens = tuple(state.region_lens)
        if sum(lens) != regions.shape[0]:
            raise RuntimeError(f"[joint_attention] region texts of {sum(lens)} tokens expected, got {regions.shape[0]}")
        n_reg = registers(dm)
        batch = context.shape[0]
        parts, slots, row, offset = [context], [], state.n_txt, 0
        for length in lens:
            parts.append(context.new_zeros(batch, n_reg, context.shape[2]))
            parts.append(regions[offset:offset + length].unsqueeze(0).expand(batch, -1, -1))
            slots.append((row, row + n_reg))
            row += n_reg + length
            offset += length
        state.region_lens = tuple(n_reg + n for n in lens)
        state.n_context = state.n_txt + sum(state.region_lens)
        state.tables[REGISTER_SLOTS] = slots
        return torch.cat(parts, dim=1)

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # no text positions, and the forward runs no `post_input` patch

    def block_text(self, state: ForwardState, args: dict) -> tuple:
        key, text = super().block_text(state, args)
        slots = state.tables.pop(REGISTER_SLOTS, None)  # the first block the text stream enters
        if slots:
            text = TextStream(with_registers(state, text.tensor, slots), text.start, text.stop)
            args[key] = text.tensor  # also what a skipped block passes on
        return key, text


def registers(dm) -> int:
    return int(dm.register_tokens.shape[1])


def with_registers(state: ForwardState, stream: torch.Tensor, slots) -> torch.Tensor:
    """The text stream (or single layers' [text ; image] stream) with each region text's register slot set to the
    model's register tokens, as the model puts them before the prompt."""
    tokens = state.host_model.register_tokens.to(device=stream.device, dtype=stream.dtype)
    stream = stream.clone()
    for start, stop in slots:
        stream[:, start:stop] = tokens[0]
    return stream
