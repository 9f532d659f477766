"""What every model family tells the pack, and the defaults most families share.

A family module (one per family, beside this file) subclasses `Family` and says, for its models inside ComfyUI:
which exact `comfy.model_base` classes it has been proven on, where the transformer blocks are and how they are
hooked, how the context holds the prompt and the region texts, how region texts get the text positions they have as
the prompt alone, how many image pixels a token covers, which inputs the pack refuses, how its text encoder's
tokens read as words, and which layers make ConceptAttention's text stream. The integration layer (integration/)
calls these methods and never asks which family it has; the attention math (attention/) never sees a model object.
"""
from __future__ import annotations

import re
from typing import Optional

import torch

from ..attention.forward import BlockRef, ForwardState, TextStream
from ..attention.layout import as_prompt_alone


class UnsupportedModel(ValueError):
    pass


class RefusedForward(ValueError):
    """A forward whose inputs the family cannot serve with the pack's features; the message says why and what to do,
    the caller names the nodes on the model."""


class Family:
    name = ""
    # The README's support table row: the models, how their blocks are numbered, where reference images go.
    models = ""
    table_order = 100
    blocks_doc = ""
    references_doc = "-"
    # The `comfy.model_base` classes the family has been proven on, by exact class name: a subclass (a newer model
    # built on this one) is never taken as its parent, it is refused by name until a family entry names it.
    classes: tuple = ()
    # The diffusion model classes the hooks are written for; empty when any model of `classes` will do.
    diffusion_classes: tuple = ()
    # Attributes of the diffusion model with the double / joint blocks and the single blocks ("" when none).
    double_blocks = "double_blocks"
    single_blocks = "single_blocks"
    text_input = "txt_in"  # the layer that turns text-encoder features into the text stream
    text_norm = ""  # a norm the model applies to text-encoder features before `text_input`, "" when none
    pooled_input = ""  # the layer adding the pooled text vector to the blocks' modulation vector, "" when none
    latent_px = 8  # image pixels per latent cell, for hosts whose latent format does not say
    # Tokenizer keys whose tokens make up the context, in order; the first present wins when only one is.
    context_encoders: tuple = ("t5xxl",)
    # The text encoder wraps prompts in a chat template: word labels start at the user's text.
    chat_template = False
    # ... and cuts the context to start at the user's text (Qwen-Image), instead of keeping the template.
    cuts_to_user_text = False
    # Tokens the text encoder drops from the front of its tokenizer's tokens (JoyImage: its template's system turn).
    context_drop = 0
    # Word labels can be read from the text encoder's tokenizer (False: Lens, whose encoder cuts a fixed-length chat
    # template off its tokens; its maps show the base prompt whole and name text positions by number).
    word_labels = True
    # Why not, where `word_labels` is False (part of the maps node's error when it is asked for a word).
    word_labels_refused = ""
    # Tokens the model puts before the context in its text stream (AuraFlow's register tokens): they count as text in
    # the layout and carry no word, so word labels start after them.
    leading_text = 0
    blocks_help = ""  # how the block numbering reads in tooltips, the README and errors
    concepts = True  # ConceptAttention has a text stream of its own to carry the concepts through the blocks
    # Why ConceptAttention cannot run on this family's models, where `concepts` is False (part of the node's error).
    concepts_refused = ("it carries the concepts through a separate text stream, and these models have one single "
                        "joint stream")
    reference_images = True  # reference-image tokens (Kontext, Qwen-Image-Edit, FLUX.2) work with the features
    # Why the pack refuses this family's models (a sentence a user can act on), "" for a supported family. A refused
    # entry names its classes like a supported one, so its models get this reason instead of a generic refusal, and
    # the README's support table lists it with the reason.
    refused = ""

    def context_template(self, key: str, ids: list) -> Optional[tuple]:
        """Where the text encoder of tokenizer key `key` cuts its tokens `ids` into the context, where the family's
        encoder has a rule of its own: (first token kept, first token of the user's text, end of the user's text),
        or None for the shared rules (`chat_template`, `cuts_to_user_text`, `context_drop`)."""
        return None

    def __repr__(self) -> str:
        return f"<family {self.name}>"

    # -- which models -------------------------------------------------------------------------------------------------
    def accepts(self, base) -> bool:
        return type(base).__name__ in self.classes

    def check_model(self, model_patcher) -> None:
        """Raise UnsupportedModel when the model is one of `classes` but a variant the hooks are not written for."""
        dm = self.diffusion_model(model_patcher)
        if self.diffusion_classes and type(dm).__name__ not in self.diffusion_classes:
            raise UnsupportedModel(
                f"expected a {' or '.join(self.diffusion_classes)} diffusion model for this {self.name} model, got "
                f"{type(dm).__name__!r}, a variant the pack does not support; connect the MODEL of a checkpoint/UNET "
                f"loader of {self.models}")

    # -- where blocks are ---------------------------------------------------------------------------------------------
    def diffusion_model(self, model_patcher):
        return model_patcher.model.diffusion_model

    def block_counts(self, dm) -> tuple:
        """(double / joint blocks, single blocks)."""
        double = getattr(dm, self.double_blocks, None)
        if double is None:
            raise UnsupportedModel(f"cannot find the transformer blocks of {type(dm).__name__!r}")
        return len(double), len(getattr(dm, self.single_blocks, ())) if self.single_blocks else 0

    def hook_blocks(self, m, hooks) -> None:
        """Put the pack's block hooks on the clone `m`: here the host's `patches_replace["dit"]` block patches, one
        per block, numbered model-wide (singles follow doubles). `hooks.block_patch(ref, found)` makes a patch that
        runs `found` (another node's patch already there) inside it."""
        n_double, n_single = self.block_counts(self.diffusion_model(m))
        existing = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
        for kind, count, offset in (("double", n_double, 0), ("single", n_single, n_double)):
            for i in range(count):
                found = existing.get((f"{kind}_block", i))
                if hooks.is_block_patch(found):
                    continue
                m.set_model_patch_replace(hooks.block_patch(BlockRef(kind, i, offset + i), found),
                                          "dit", f"{kind}_block", i)

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: hooks that hold layers must hold its own."""

    def block_text(self, state: ForwardState, args: dict) -> tuple:
        """(key, TextStream) of a `patches_replace["dit"]` block's text: double / joint blocks get it as "txt";
        single blocks get one stream in "img" whose first n_context tokens are the text."""
        if args.get("txt") is not None:
            return "txt", TextStream(args["txt"], 0, args["txt"].shape[1])
        return "img", TextStream(args["img"], 0, state.n_context)

    # -- sizes --------------------------------------------------------------------------------------------------------
    def patch_size(self, dm) -> int:
        return getattr(dm, "patch_size", 2)

    # -- frames (video) ------------------------------------------------------------------------------------------
    # The latent axis holding frames ([B, C, T, H, W]: 2), None for image families. A family with a frame axis lays
    # its image tokens out frame by frame ((frames, rows, cols) token grid) and reads a region's MASK batch as
    # frames, not as images (attention.frame_masks).
    frame_axis: Optional[int] = None

    def token_frames(self, dm, x) -> int:
        """Frames of the image token grid for latent `x` (latent frames over the model's temporal patch); 1 for
        image families."""
        return 1

    def frame_stride(self, base) -> int:
        """Pixel frames per latent frame after the first (a causal video VAE's temporal compression): the host's
        latent format says so where it can (`temporal_downscale_ratio`), else 1."""
        declared = getattr(getattr(base, "latent_format", None), "temporal_downscale_ratio", None)
        return declared if isinstance(declared, int) and declared > 0 else 1

    def latent_pixels(self, base) -> int:
        """Image pixels per latent cell side: the host's latent format says so where it can
        (`spacial_downscale_ratio`, after 0.3.75), else the family's own figure."""
        declared = getattr(getattr(base, "latent_format", None), "spacial_downscale_ratio", None)
        return declared if isinstance(declared, int) and declared > 0 else self.latent_px

    # -- the context ----------------------------------------------------------------------------------------------
    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        """Why this forward's inputs cannot take the pack's features (a sentence naming the input), or None."""
        return None

    def refused_latent(self, shape: tuple) -> Optional[str]:
        """Why the diffusion model's input of this shape cannot take the pack's features (a sentence naming the
        latent and the fix), or None (HunyuanImage 2.1 refiner: a latent of more than one frame pair)."""
        return None

    def forward_inputs(self, state: ForwardState, kwargs: dict) -> dict:
        """The forward's keyword inputs as the model gets them under the pack: a family may drop an input that
        changes nothing (Lens: a text mask of all ones, which the model makes itself when it gets none)."""
        return kwargs

    def open_call_mask(self, state: ForwardState) -> bool:
        """Whether the attention mask the model passes to its joint attention calls in this forward masks nothing
        (Lens passes one on every call, all zeros when its text mask is all ones); a call with any other mask is left
        to the host."""
        return False

    def prompt_layout(self, state: ForwardState, dm) -> None:
        """Set the forward's text layout for the prompt as the model will lay it out, before features see the
        forward (NextDiT: the prompt counts the pads the model adds)."""

    def prompt_context(self, state: ForwardState, dm, context: torch.Tensor) -> torch.Tensor:
        """The prompt's context as the pack lays it out, before region texts join it (HunyuanVideo 1.0: its padding
        tokens dropped, `forward_inputs` having taken the padding mask), with the state's text layout set to match.
        Default: unchanged."""
        return context

    def read_inputs(self, state: ForwardState, dm, inputs: dict) -> None:
        """Read the forward's other model inputs (apply_model's keyword arguments) into the prompt's text layout,
        before features see the forward (HiDream: the prompt's Llama tokens are text-stream tokens too)."""

    def refused_region(self, options: dict) -> Optional[str]:
        """Why a region's conditioning (its text options: pooled vector, the text encoder's side outputs) cannot be
        laid out for this family (a sentence naming what is missing and the fix), or None."""
        return None

    def region_inputs(self, state: ForwardState, dm, inputs: dict) -> dict:
        """The forward's other model inputs with what the region texts bring beside their tokens placed as the
        context places them (HiDream: each region's per-layer Llama states); called after `text_layout`, with the
        regions' conditioning options in `state.region_inputs`. Default: unchanged."""
        return inputs

    def text_layout(self, state: ForwardState, dm, context: torch.Tensor, regions: Optional[torch.Tensor]):
        """The context the model gets, with region texts `regions` [T, C] (None: no region texts) placed after the
        prompt, and the state's text layout (`n_txt`, `n_context`, `region_lens`) set to match it."""
        if regions is None:
            return context
        context = torch.cat([context, regions.unsqueeze(0).expand(context.shape[0], -1, -1)], dim=1)
        state.n_context = context.shape[1]
        return context

    # -- text positions of region texts -------------------------------------------------------------------------
    # Every region text must read as the prompt alone: its tokens take the text positions 0..T_r-1 the prompt would
    # have. One rule (`attention.layout.as_prompt_alone`: copy rows 0..T_r-1 of a position table into each region
    # text's rows); the family says which table holds the text positions and where the pack can reach it.
    def forward_patches(self, state: ForwardState) -> dict:
        """`transformer_options["patches"]` entries the forward needs for its region texts (FLUX: a `post_input`
        patch renumbering the text ids), {} when none."""
        if not state.region_lens:
            return {}
        return {"post_input": [TextIdsAsPromptAlone(state)]}

    def forward_options(self, state: ForwardState, options: dict) -> dict:
        """The forward's `transformer_options` with what the family sets for region texts before the model's own
        `_apply_model` reads them (LongCat-Image: the image's rope shift), `options` itself when nothing."""
        return options

    def refused_region_texts(self, state: ForwardState) -> Optional[str]:
        """Why this forward's region texts (`state.region_lens` beside the prompt's `n_txt`) cannot read as the
        prompt alone in this family (a sentence naming what to change), or None."""
        return None

    def block_inputs(self, state: ForwardState, args: dict) -> dict:
        """A block's inputs with what the family changes there for region texts (Qwen-Image: its rope table), before
        the features see the block's text."""
        return args

    def image_first(self, state: ForwardState, block) -> bool:
        """Whether the block's joint attention calls hold the image before the text ([image ; text]: HiDream, HunyuanVideo
        blocks on 0.3.75): the pack's attention then runs them with the text moved first, as every layout reads."""
        return False

    # -- region LoRAs -----------------------------------------------------------------------------------------------
    # Which tokens each LoRA-targeted layer of the diffusion model acts on: (regex over the layer's path, role), first
    # full match wins; roles are attention.token_weights' IMAGE, TEXT, JOINT, JOINT_IMAGE_FIRST, or SHARED for layers
    # whose output every token of a stream shares (modulation from the timestep / pooled vector). A path no entry
    # matches is outside the blocks (embedders, final layer). Empty: region LoRAs are not mapped for the family yet.
    adapter_roles: tuple = ()

    def adapter_role(self, path: str, dm) -> Optional[str]:
        """The role of the layer at `path` (no "diffusion_model." prefix, no ".weight"), None when outside the
        blocks."""
        for pattern, role in self.adapter_roles:
            if re.fullmatch(pattern, path):
                return role
        return None

    def adapter_block(self, path: str) -> Optional[tuple]:
        """("double" | "single", index) of the block holding the layer at `path`, numbered as the nodes' block
        selections number them (each kind from 0), or None when the layer is in no numbered block."""
        for kind, attr in (("double", self.double_blocks), ("single", self.single_blocks)):
            found = re.match(rf"{re.escape(attr)}\.(\d+)\.", path) if attr else None
            if found:
                return kind, int(found.group(1))
        return None

    # -- ConceptAttention's text stream -------------------------------------------------------------------------
    def concept_block_inputs(self, state: ForwardState, inputs: dict, n_concepts: int) -> dict:
        """A double block's inputs for ConceptAttention's pass with `n_concepts` concept tokens as its text: the rope
        table (`pe`, sequence on dim 2) with every concept at the first text position, like text, and the image's
        rows."""
        pe = inputs.get("pe")
        if pe is None:
            return inputs
        return {**inputs, "pe": torch.cat([pe[:, :, :1].expand(*pe.shape[:2], n_concepts, *pe.shape[3:]),
                                           pe[:, :, state.n_context:]], dim=2)}

    def concept_extra(self, tokens: dict, options: dict) -> Optional[torch.Tensor]:
        """What the concept stream needs of one concept word beside its context token, read from the word encoded
        alone (`tokens`: the tokenizer's output with word ids, by encoder key; `options`: the conditioning's side
        outputs), or None (HiDream: the Llama states of every layer at the word's first Llama token)."""
        return None

    def concept_stream_start(self, dm, embedded: torch.Tensor, extra: Optional[torch.Tensor]) -> torch.Tensor:
        """The concept stream as it enters the first double block, [rows, D], from the concepts' context tokens
        through the text input layers (`embedded`, [n, D]) and their `concept_extra`s stacked ([n, ...] or None):
        the concepts laid out as the model lays out a prompt (AuraFlow: its register tokens first). Default: the
        concepts alone."""
        return embedded

    def concept_rows(self, dm, n_concepts: int) -> slice:
        """The concept stream's rows that are the concepts (saliency is read there)."""
        return slice(0, n_concepts)

    def concept_block_text(self, dm, block_index: int, stream: torch.Tensor, extra: Optional[torch.Tensor]):
        """The text a double block's concept pass gets from the concept stream [B, rows, D]: the stream, and what
        the model adds to its text stream for this block only (HiDream: the concepts' Llama layer of the block).
        The rows past the stream's are dropped after the block, as the model drops them."""
        return stream

    def text_embedder(self, dm):
        """The layers that turn text-encoder features into the text stream, as one module (Qwen-Image: `txt_norm`
        then `txt_in`). The model's own layers, never copies."""
        layer = getattr(dm, self.text_input, None)
        norm = getattr(dm, self.text_norm, None) if self.text_norm else None
        if layer is not None and norm is not None:
            return torch.nn.Sequential(norm, layer)
        return layer

    def text_features(self, dm):
        """Features per text token the model takes, or None when it cannot be read."""
        layer = getattr(dm, self.text_input, None)
        if layer is None:
            return None
        for module in layer.modules():  # the layer itself, or the first linear of a stack (NextDiT: norm, linear)
            if hasattr(module, "in_features"):
                return module.in_features
        weight = getattr(layer, "weight", None)
        return weight.shape[1] if torch.is_tensor(weight) and weight.ndim == 2 else None

    def concept_vec_delta(self, dm, vec, pooled):
        """What turns the double blocks' modulation vector `vec` [B, D] (timestep, guidance and the prompt's pooled
        vector) into the same vector with the pooled input replaced by zeros, as ConceptAttention's released code
        modulates its concepts (`vector_in(0)`): a [B, D] fp32 tensor to add to `vec`, or None when the family has
        no pooled input or the forward got none (the host then uses zeros itself)."""
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


class TextIdsAsPromptAlone:
    """`post_input` patch: the text ids with each region text's rows taken from the prompt-alone positions.

    The host numbers text tokens along the whole context (FLUX.2: a rope axis counts 0..T-1), so appended region
    texts would read as a continuation of the prompt. The host computed ids for every index of the context, so rows
    0..T_r-1 exist even when a region text is longer than the prompt; they are read from the host's ids, never from
    the copy being written. FLUX.1 / Chroma ids are all zero: a no-op there. The rope table the host then builds
    from these ids is right as it is, which the forward records (`ForwardState.text_ids_renumbered`)."""

    def __init__(self, state: ForwardState):
        self.state = state

    def __call__(self, args):
        ids = args.get("txt_ids")
        state = self.state
        if ids is None or ids.ndim != 3 or ids.shape[1] != state.n_context:
            return args
        state.text_ids_renumbered = True
        return {**args, "txt_ids": as_prompt_alone(ids, 1, state.n_txt, state.region_lens)}


def rope_rows_as_prompt_alone(state: ForwardState, args: dict) -> dict:
    """A `patches_replace["dit"]` block's inputs with its rope table (`pe`, sequence on dim 2: [B, 1, L, ...]) giving
    each region text the rows of its prompt-alone positions: for families whose text positions count along the context
    and whose forward offers no `post_input` patch before it builds the table (Qwen-Image before 0.29, Chroma Radiance
    with sequential text ids). The host's own table when the text ids were already renumbered (`post_input`). Made
    once per forward: every block gets the same table."""
    pe = args.get("pe")
    if not state.region_lens or not torch.is_tensor(pe) or pe.ndim < 3 or pe.shape[2] < state.n_context \
            or state.text_ids_renumbered:
        return args
    cached = state.tables.get("rope rows as prompt alone")
    if cached is None or cached[0] is not pe:
        cached = state.tables["rope rows as prompt alone"] = (pe, as_prompt_alone(pe, 2, state.n_txt, state.region_lens))
    return {**args, "pe": cached[1]}
