"""ConceptAttention on the host: a concept stream carried through the model's own double blocks.

Each concept word (its first-token embedding, through the model's text input layer) rides
beside the model: before every double block the block's inputs are copied for the cond rows,
after it the host's own block runs a second time with the concepts as its text stream. Concept
queries thus attend [concepts ; image] with the text-stream weights, and the image never attends
to the concepts, so the sampled image is bit-identical. The saliency math and the per-run sum
are pure (attention/capture.py); everything about block inputs, rope tables and modulation
objects is here.

Modulation, as ConceptAttention's released code (its FLUX path: `time_in + guidance_in + vector_in(0)`):
the concept stream is modulated with the block's vector with the pooled text vector replaced by
zeros (FLUX.1: vector_in(0); SD3: c = t_embedder + y_embedder(0)), while the image tokens the concepts
attend to keep the prompt's real modulation. The second run of the block gets the zero-pooled vector,
and in its joint attention call the image keys and values are replaced by the ones the block's own
run computed (cond rows), so only the concept half sees the changed vector. Families without a
pooled vector (FLUX.2, Chroma) run the block as it is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..attention.capture import CaptureModifier, concept_saliency, record_concepts
from ..attention.forward import ATTENTION, BLOCKS, COND
from ..families import model_family, named
from .labels import UnplacedLabels, context_order, context_tokens
from .options import BLOCK_KEY, FORWARD_KEY, KEYS_KEY, RECORD_KEY


class ConceptInputError(ValueError):
    """A node input that cannot make a concept stream: `input_name` names it, the message says the fix."""

    def __init__(self, input_name: str, message: str):
        super().__init__(message)
        self.input_name = input_name


@dataclass
class ConceptForward:
    """The concept stream's record of one forward (`ForwardState.owned`): the stream as it leaves the last double
    block, the pooled-term delta of the blocks' vector, and what one double block's run left for its concept pass."""

    stream: Optional[torch.Tensor] = None  # [cond rows, concepts, C]
    vec_delta: Optional[torch.Tensor] = None
    block_inputs: Optional[dict] = None  # the block's inputs, cond rows, copied before the host block ran
    image_kv: Optional[dict] = None  # the image keys / values of the block's joint call, cond rows
    image_outputs: dict = field(default_factory=dict)  # block index -> the joint call's output


class ConceptStream:
    """Concept words: their first-token embeddings [n, C], the model's text input layer (applied
    at the first double block), and the double blocks whose outputs are read.

    `embed(dm)` / `vec_delta(dm, vec, pooled)` take the diffusion model that runs the forward: with
    MultiGPU work units each device runs its own copy of the weights (a device clone), so the layers are
    looked up in the running model, never kept from the model the node saw."""

    def __init__(self, names, tokens: torch.Tensor, embed, blocks, vec_delta=None, extra=None):
        self.names = list(names)
        self.tokens = tokens
        self.extra = extra  # the family's `concept_extra` of each concept, stacked [n, ...], or None
        self.embed = embed  # callable(dm) -> the model's text input layer
        self.blocks = frozenset(blocks)
        # callable(dm, vec, pooled) -> what to add to the blocks' vector to zero its pooled term, or None
        self.vec_delta = vec_delta


class ConceptModifier(CaptureModifier):
    """Records ConceptAttention saliency (and no text maps: every attention call of the model stays
    the host's own)."""

    records_maps = False

    def __init__(self, handle, gate, concepts: ConceptStream, registry=None):
        super().__init__(handle, gate, registry)
        self.concepts = concepts

    def tensors(self) -> list:
        extra = self.concepts.extra
        return [self.concepts.tokens] + ([extra] if extra is not None else [])

    def sink(self, state):
        sink = super().sink(state)
        if sink is not None:
            sink.concept_names = self.concepts.names
        return sink

    def expects(self, state) -> tuple:
        # The concept stream rides the double blocks and reads their joint attention calls.
        return (BLOCKS, ATTENTION) if self.gate.in_window(state.sigma) and COND in state.row_kinds else ()

    def before_block(self, state, block, inputs):
        c = self.concepts
        if block.kind != "double" or not self.gate.in_window(state.sigma) or COND not in state.row_kinds:
            return
        record = state.owned(self, ConceptForward)
        if block.index == 0 or record.stream is None:
            rows = sum(1 for kind in state.row_kinds if kind == COND)
            layer = c.embed(state.host_model)
            weight = next(layer.parameters())
            extra = c.extra.to(weight.device, weight.dtype) if c.extra is not None else None
            start = named(state.family).concept_stream_start(state.host_model, layer(c.tokens.to(weight.device,
                                                                                                 weight.dtype)), extra)
            # One copy per cond row: the host block updates its text stream in place (FLUX: txt += ...).
            record.stream = start.unsqueeze(0).repeat(rows, 1, 1)
            record.vec_delta = self._vec_delta(state, inputs.get("vec"))
        # The host block may update its inputs in place (FLUX: img += ...): copy the cond rows now.
        cond = _cond_rows(state)
        batch = len(state.row_kinds)
        record.block_inputs = {name: (_vec_rows if name == "vec" else _rows)(value, cond, batch, copy=True)
                                       for name, value in inputs.items() if name not in ("transformer_options", "txt")}
        joint = state.n_context + state.n_img
        if record.vec_delta is not None:
            kept = record.image_kv = {}
            n_context = state.n_context
            image_at = 0 if named(state.family).image_first(state, block) else n_context

            def keep(args, kwargs):  # the image keys / values of the block's joint call, cond rows
                seq = 2 if kwargs.get("skip_reshape", False) else 1
                if "k" not in kept and args[1].shape[seq] >= joint:
                    rows = cond.to(args[1].device)
                    kept["k"], kept["v"] = (t.narrow(seq, image_at, t.shape[seq] - n_context).index_select(0, rows)
                                            for t in args[1:3])
                return args

            inputs["transformer_options"] = {**inputs["transformer_options"], KEYS_KEY: keep}
        if block.index in c.blocks:
            outputs = record.image_outputs

            def keep_output(out, b=block.index):  # the joint call only (SD3.5-M blocks also make an image-only call)
                if b not in outputs and out.shape[1] >= joint:
                    outputs[b] = out

            inputs["transformer_options"] = {**inputs["transformer_options"], RECORD_KEY: keep_output}

    def _vec_delta(self, state, vec):
        """For this forward's cond rows: what zeroes the pooled term of the blocks' vector, or None."""
        pooled = state.pooled
        if self.concepts.vec_delta is None or pooled is None or not torch.is_tensor(vec):
            return None
        cond = _cond_rows(state)
        batch = len(state.row_kinds)
        return self.concepts.vec_delta(state.host_model, _rows(vec, cond, batch), _rows(pooled, cond, batch))

    def after_block(self, state, block, inputs, run_block, output):
        record = state.owned(self, ConceptForward)
        if block.kind != "double" or record.stream is None or record.block_inputs is None:
            return
        residual = record.stream
        family = named(state.family)
        side, record.block_inputs = dict(record.block_inputs), None
        extra = self.concepts.extra
        text = family.concept_block_text(state.host_model, block.index, residual,
                                         extra.to(residual.device) if extra is not None else None)
        n_c = text.shape[1]  # the concept pass's text rows
        rows = family.concept_rows(state.host_model, len(self.concepts.names))
        side["txt"] = text.to(side["img"].dtype)
        image_first = family.image_first(state, block)
        side = family.concept_block_inputs(state, side, n_c)  # concepts sit at a text position, as the family says
        recorded = {}
        options = {k: v for k, v in inputs["transformer_options"].items() if k not in (FORWARD_KEY, RECORD_KEY, KEYS_KEY)}
        options[BLOCK_KEY] = block
        delta = record.vec_delta
        kept, record.image_kv = record.image_kv, None
        if delta is not None:
            # Concepts modulated without the prompt's pooled vector; the image keys / values they attend
            # to are the block's own (modulated with the prompt's vector), put into the call below.
            vec = side["vec"]
            side["vec"] = (vec.float() + delta.to(vec.device)).to(vec.dtype)
            if not kept:
                raise RuntimeError(f"[joint_attention] ConceptAttention: double block {block.index} made no joint "
                                   "attention call the concept stream could take its image keys from")

            def swap(args, kwargs):
                seq = 2 if kwargs.get("skip_reshape", False) else 1
                if "k" not in kept or args[1].shape[seq] != n_c + kept["k"].shape[seq]:
                    return args

                def joined(t, name):  # the call's concept keys / values beside the block's own image ones
                    image = kept.pop(name).to(t.device, t.dtype)
                    if image_first:
                        return torch.cat([image, t.narrow(seq, t.shape[seq] - n_c, n_c)], dim=seq)
                    return torch.cat([t.narrow(seq, 0, n_c), image], dim=seq)

                k, v = joined(args[1], "k"), joined(args[2], "v")
                return (args[0], k, v, *args[3:])

            options[KEYS_KEY] = swap
        if block.index in self.concepts.blocks:
            def keep_concept_output(out):
                if "out" not in recorded and out.shape[1] >= n_c + state.n_img:
                    # [image ; concepts] where the model puts the image first (Lens, JoyImage)
                    recorded["out"] = (out[:, -n_c:] if image_first else out[:, :n_c])[:, rows]

            options[RECORD_KEY] = keep_concept_output
        side["transformer_options"] = options
        result = run_block(side)
        if delta is not None and "k" in kept:
            raise RuntimeError(f"[joint_attention] ConceptAttention: the concept pass of double block {block.index} "
                               "made no attention call over [concepts ; image]")
        stream = result.get("txt")  # None after SD3's last block (context_pre_only)
        # The rows the family adds for this block only are dropped after it (HiDream's Llama layer of the block).
        record.stream = stream[:, :residual.shape[1]] if stream is not None else None
        image_out = record.image_outputs.pop(block.index, None)
        if "out" in recorded and image_out is not None:
            cond = _cond_rows(state).to(image_out.device)
            first = 0 if image_first else state.n_context
            o_image = image_out[cond, first:first + state.n_img]
            sink = self.sink(state)
            if sink is not None:
                record_concepts(sink, concept_saliency(recorded["out"], o_image), block.number, state.sigma,
                                self.registry)


def concept_stream(model, concepts: str, clip, double: frozenset, double_text: str):
    """Each concept encoded alone by the prompt's text encoder, the context row of its first real token kept (T5 has
    no start token; CLIP's is skipped), with what the family's concept stream needs beside it (`concept_extra`)."""
    family = model_family(model)
    if not family.concepts:
        raise ConceptInputError("concepts", f"ConceptAttention is not available for {family.name} models "
                         f"({family.models}): {family.concepts_refused}. Leave 'concepts' empty and use the word maps of "
                         "Attention Maps instead")
    if clip is None:
        raise ConceptInputError("clip", "concepts need the text encoder: connect the CLIP used for the prompt")
    names = [c.strip() for c in concepts.split(",") if c.strip()]
    if len(names) > 64:
        raise ConceptInputError("concepts", f"at most 64 concepts, got {len(names)}")
    tokens, extras = [], []
    for name in names:
        tokenized = clip.tokenizer.tokenize_with_weights(name, return_word_ids=True)
        cond, options = clip.encode_from_tokens_scheduled(clip.tokenize(name))[0]
        first = _first_word_row(clip, name, tokenized, cond.shape[1], family)
        tokens.append(cond[0, first].detach().cpu())
        try:
            extra = family.concept_extra(tokenized, options)
        except ValueError as exc:  # the text encoder does not give what the family's concept stream needs
            raise ConceptInputError("clip", str(exc)) from None
        extras.append(extra.detach().cpu() if extra is not None else None)
    tokens = torch.stack(tokens)
    extra = torch.stack(extras) if extras and all(e is not None for e in extras) else None
    dm = family.diffusion_model(model)
    expected = family.text_features(dm)
    if expected is not None and tokens.shape[-1] != expected:
        raise ConceptInputError("clip", f"the concepts have {tokens.shape[-1]} features per token but the model expects "
                         f"{expected}: connect the text encoder that matches the model")
    n_double, _ = family.block_counts(dm)
    # Default for concepts (ConceptAttention paper): the last 4 double blocks.
    blocks = frozenset(range(max(0, n_double - 4), n_double)) if double_text.strip().lower() == "all" else double
    return ConceptStream(names, tokens, family.text_embedder, blocks, vec_delta=family.concept_vec_delta, extra=extra)


def _first_word_row(clip, word: str, tokenized: dict, n_context: int, family) -> int:
    """The context row of a concept word's first real token, as the context's own encoder places it (FLUX: T5, no
    start token; CLIP: after its start token; chat-template encoders: the template's place), read from the word
    labels of the context (integration/labels.py); where the family has none (Lens), or the encoder is not one the
    family lists (the template rules are its encoder's), the first real token of the context encoder's tokens."""
    own = any(key in tokenized for key in family.context_encoders)  # else another encoder (a test's stand-in)
    lead = family.leading_text  # labels count the tokens the model puts before the context (AuraFlow's registers)
    labelled = []
    if own:
        try:
            labelled = context_tokens(clip, word, n_context + lead, family.name)
        except UnplacedLabels:
            pass
    found = next((position - lead for position, _, number in labelled if number > 0), None)
    if found is None:
        key = context_order(family.name, tokenized)[0]
        word_ids = [t[2] if len(t) > 2 else 1 for chunk in tokenized[key][:1] for t in chunk]
        found = next((i for i, w in enumerate(word_ids) if w > 0), 0) - (family.context_drop if own else 0)
    return min(max(found, 0), n_context - 1)


def _cond_rows(state) -> torch.Tensor:
    return torch.tensor([i for i, kind in enumerate(state.row_kinds) if kind == COND])


def _vec_rows(value, rows: torch.Tensor, batch: int, copy: bool = False):
    """The blocks' modulation vector for the given rows. With a reference image and the `index_timestep_zero`
    method (ComfyUI 0.29: Qwen-Image-Edit, FLUX.2) the host doubles it: [vector of every row ; the same at
    timestep 0], and the block splits it in halves; keep the rows in both halves."""
    if torch.is_tensor(value) and value.ndim and value.shape[0] == 2 * batch and batch > 0:
        both = torch.cat([rows, rows + batch])
        return value.index_select(0, both.to(value.device))
    return _rows(value, rows, batch, copy)


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
