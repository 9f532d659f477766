"""ConceptAttention on the host: a concept stream carried through the model's own double blocks.

Each concept word (its first-token embedding, through the model's text input layer) rides
beside the model: before every double block the block's inputs are copied for the cond rows,
after it the host's own block runs a second time with the concepts as its text stream. Concept
queries thus attend [concepts ; image] with the text-stream weights, and the image never attends
to the concepts, so the sampled image is bit-identical. The saliency math and the per-run sum
are pure (attention/capture.py); everything about block inputs, rope tables and modulation
objects is here.
"""
from __future__ import annotations

import dataclasses

import torch

from ..attention.capture import CaptureModifier, concept_saliency, record_concepts
from ..attention.forward import COND
from .common import node_error
from .families import model_family
from .host import BLOCK_KEY, FORWARD_KEY, RECORD_KEY


class ConceptStream:
    """Concept words: their first-token embeddings [n, C], the model's text input layer (applied
    at the first double block), and the double blocks whose outputs are read."""

    def __init__(self, names, tokens: torch.Tensor, embed, blocks):
        self.names = list(names)
        self.tokens = tokens
        self.embed = embed
        self.blocks = frozenset(blocks)


class ConceptModifier(CaptureModifier):
    """Records ConceptAttention saliency (and no text maps: every attention call of the model stays
    the host's own)."""

    records_maps = False

    def __init__(self, handle, gate, concepts: ConceptStream, registry=None):
        super().__init__(handle, gate, registry)
        self.concepts = concepts

    def tensors(self) -> list:
        return [self.concepts.tokens]

    def sink(self, state):
        sink = super().sink(state)
        if sink is not None:
            sink.concept_names = self.concepts.names
        return sink

    def before_block(self, state, block, inputs):
        c = self.concepts
        if block.kind != "double" or not self.gate.in_window(state.sigma) or COND not in state.row_kinds:
            return
        key = self.key + ":concepts"
        if block.index == 0 or key not in state.data:
            rows = sum(1 for kind in state.row_kinds if kind == COND)
            weight = next(c.embed.parameters())
            start = c.embed(c.tokens.to(weight.device, weight.dtype))
            state.data[key] = start.unsqueeze(0).expand(rows, -1, -1)
        # The host block may update its inputs in place (FLUX: img += ...): copy the cond rows now.
        cond = _cond_rows(state)
        batch = len(state.row_kinds)
        state.data[key + ":inputs"] = {name: _rows(value, cond, batch, copy=True)
                                       for name, value in inputs.items() if name not in ("transformer_options", "txt")}
        if block.index in c.blocks:
            outputs = state.data.setdefault(key + ":img", {})
            joint = state.n_context + state.n_img

            def record(out, b=block.index):  # the joint call only (SD3.5-M blocks also make an image-only call)
                if b not in outputs and out.shape[1] >= joint:
                    outputs[b] = out

            inputs["transformer_options"] = {**inputs["transformer_options"], RECORD_KEY: record}

    def after_block(self, state, block, inputs, run_block, output):
        key = self.key + ":concepts"
        if block.kind != "double" or key not in state.data or key + ":inputs" not in state.data:
            return
        residual = state.data[key]
        n_c = residual.shape[1]
        side = dict(state.data.pop(key + ":inputs"))
        side["txt"] = residual.to(side["img"].dtype)
        if inputs.get("pe") is not None:  # concept positions are 0, like text: reuse a text row of the RoPE table
            pe = side["pe"]
            side["pe"] = torch.cat([pe[:, :, :1].expand(*pe.shape[:2], n_c, *pe.shape[3:]), pe[:, :, state.n_context:]], dim=2)
        recorded = {}
        options = {k: v for k, v in inputs["transformer_options"].items() if k not in (FORWARD_KEY, RECORD_KEY)}
        options[BLOCK_KEY] = block
        if block.index in self.concepts.blocks:
            def record(out):
                if "out" not in recorded and out.shape[1] >= n_c + state.n_img:
                    recorded["out"] = out

            options[RECORD_KEY] = record
        side["transformer_options"] = options
        result = run_block(side)
        if result.get("txt") is not None:
            state.data[key] = result["txt"]
        else:
            state.data.pop(key)
        image_out = state.data.get(key + ":img", {}).pop(block.index, None)
        if "out" in recorded and image_out is not None:
            cond = _cond_rows(state).to(image_out.device)
            o_image = image_out[cond, state.n_context:state.n_context + state.n_img]
            sink = self.sink(state)
            if sink is not None:
                record_concepts(sink, concept_saliency(recorded["out"][:, :n_c], o_image), block.number, state.sigma,
                                self.registry)


def concept_stream(node, model, concepts: str, clip, double: frozenset, double_text: str):
    """Each concept encoded alone, first real token kept (T5 has no start token; CLIP's is skipped)."""
    if clip is None:
        raise node_error(node, "clip", "concepts need the text encoder: connect the CLIP used for the prompt")
    names = [c.strip() for c in concepts.split(",") if c.strip()]
    if len(names) > 64:
        raise node_error(node, "concepts", f"at most 64 concepts, got {len(names)}")
    tokens = []
    for name in names:
        tokenized = clip.tokenize(name)
        first = 0
        for chunk in clip.tokenizer.tokenize_with_weights(name, return_word_ids=True).values():
            word_ids = [t[2] if len(t) > 2 else 1 for t in chunk[0]] if chunk else []
            first = next((i for i, w in enumerate(word_ids) if w > 0), 0)
            break
        cond = clip.encode_from_tokens_scheduled(tokenized)[0][0]
        tokens.append(cond[0, min(first, cond.shape[1] - 1)].detach().cpu())
    tokens = torch.stack(tokens)
    family = model_family(model)
    dm = family.diffusion_model(model)
    expected = family.text_features(dm)
    if expected is not None and tokens.shape[-1] != expected:
        raise node_error(node, "clip", f"the concepts have {tokens.shape[-1]} features per token but the model expects "
                         f"{expected}: connect the text encoder that matches the model")
    embed = family.text_embedder(dm)
    n_double, _ = family.block_counts(dm)
    # Default for concepts (ConceptAttention paper): the last 4 double blocks.
    blocks = frozenset(range(max(0, n_double - 4), n_double)) if double_text.strip().lower() == "all" else double
    return ConceptStream(names, tokens, embed, blocks)


def _cond_rows(state) -> torch.Tensor:
    return torch.tensor([i for i, kind in enumerate(state.row_kinds) if kind == COND])


def _rows(value, rows: torch.Tensor, batch: int, copy: bool = False):
    """`value` restricted to the given batch rows (tensors with a batch dimension, nested tuples)."""
    if torch.is_tensor(value):
        if value.ndim and value.shape[0] == batch:
            return value.index_select(0, rows.to(value.device))  # index_select always copies
        return value.clone() if copy else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # FLUX.2 modulation outputs
        return dataclasses.replace(value, **{f.name: _rows(getattr(value, f.name), rows, batch, copy)
                                             for f in dataclasses.fields(value)})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_rows(v, rows, batch, copy) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, rows, batch, copy) for v in value)
    return value
