"""HiDream I1: dual-stream then single-stream blocks, a text stream partly re-made in every block from Llama layers.

The model takes T5 tokens as the context and the Llama encoder's hidden states of every layer
(`encoder_hidden_states_llama3`, [B, layers, L, C]) beside it. Its text stream is
`[T5 ; Llama last layer ; Llama layer of this block]`, each part through its own projection: the first two
parts run through the blocks as a residual stream, the third is projected afresh from the block's Llama layer
before every block and dropped after it. Every text position is 0 (the rope rows of all text tokens are the
same); the blocks' joint attention runs over `[image ; text]`.

The host offers no block patches here (`patches_replace` is not read), only the DIFFUSION_MODEL wrapper and the
attention override, so the pack wraps the two block lists through ComfyUI's object patches on its clone, as it
does NextDiT's layer lists: the same modules under the same names; iterating a list, which is how the model runs
its blocks, yields callables that name the block for the pack and call it.

Region texts, each as the prompt alone:
- each region brings its T5 tokens (the region text) and its Llama states (its conditioning's
  `conditioning_llama3`); the context gets the T5 tokens after the prompt's, every Llama layer gets the region's
  Llama tokens after the prompt's, so the model's own parts come out as
  `[T5: prompt, r1, ... ; Llama last: prompt, r1, ... ; Llama block: prompt, r1, ...]`;
- a wrapped block gets its text in the pack's order, `[prompt: T5, last, block ; r1: T5, last, block ; ...]`
  (a permutation of rows: every op of a block but attention is per token, and every text token has position 0),
  and gives its output back in the host's order, so the model keeps and drops the parts it would;
- the attention override reads the block's `[image ; text]` call as `[text ; image]` (`image_first`).
So each region text is, token for token, the text stream of its prompt alone, and the prompt's is the same with
or without regions.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch

from ..attention.forward import BlockRef, ForwardState, TextStream
from ..attention.token_weights import IMAGE, JOINT_IMAGE_FIRST, SHARED, TEXT
from .base import Family

LLAMA = "encoder_hidden_states_llama3"  # the model's input with the Llama states of every layer
LLAMA_OPTION = "conditioning_llama3"  # the conditioning entry the HiDream text encoder puts them in
PARTS = ("hidream", "parts")  # ForwardState.tables: ((T5 tokens, Llama tokens) of the prompt, then of each region)
DOUBLE, SINGLE = "double_stream_blocks", "single_stream_blocks"
BLOCK_ARGS = ("image_tokens", "image_tokens_masks", "text_tokens", "adaln_input", "rope")


class HiDream(Family):
    name = "hidream"
    models = "HiDream I1 (Full / Dev / Fast)"
    table_order = 6
    blocks_doc = "double 0-15, single 0-31 (text scale: 0-47)"
    references_doc = "E1 edit images (image_cond) refused with a message"
    classes = ("HiDream",)
    diffusion_classes = ("HiDreamImageTransformer2DModel",)
    # Region LoRAs: *_t layers and ff_t act on the text, the others on the image; single blocks run [image ; text].
    # The routed experts (ff_i.experts) see tokens in routing order, not as a sequence: no role, refused.
    adapter_roles = (
        (r"double_stream_blocks\.\d+\.block\.(attn1\.(to_[qkv]|to_out)|ff_i\.shared_experts\.w[123])", IMAGE),
        (r"double_stream_blocks\.\d+\.block\.(attn1\.(to_[qkv]_t|to_out_t)|ff_t\.w[123])", TEXT),
        (r"single_stream_blocks\.\d+\.block\.(attn1\.(to_[qkv]|to_out)|ff_i\.shared_experts\.w[123])",
         JOINT_IMAGE_FIRST),
        (r"(double|single)_stream_blocks\.\d+\.block\.adaLN_modulation\.\d+", SHARED),
    )
    double_blocks, single_blocks, text_input = DOUBLE, SINGLE, "caption_projection"
    context_encoders = ("t5xxl",)  # word labels: the T5 part; the Llama parts (twice the Llama tokens) get none
    pooled_input = "p_embedder"  # the pooled CLIP vector's term of the blocks' modulation (adaln_input)
    reference_images = False

    def image_first(self, state: ForwardState, block) -> bool:
        return True  # every joint call is [image ; text]
    blocks_help = "double_blocks are HiDream's 16 dual-stream blocks, single_blocks its 32 single-stream blocks"

    def hook_blocks(self, m, hooks) -> None:
        """HiDream reads no block patches: wrap its two block lists on the clone `m` (object patches; nothing if
        already wrapped)."""
        for name, kind in ((DOUBLE, "double"), (SINGLE, "single")):
            key = f"diffusion_model.{name}"
            current = m.get_model_object(key)
            if not isinstance(current, HookedBlocks):
                offset = 0 if kind == "double" else len(m.get_model_object(f"diffusion_model.{DOUBLE}"))
                m.add_object_patch(key, HookedBlocks(current, kind, offset, hooks))

    def rebind(self, clone) -> None:
        """A MultiGPU device clone runs its own copy of the weights: its object patches must wrap its own blocks."""
        dm = getattr(getattr(clone, "model", None), "diffusion_model", None)
        if dm is None:
            return
        for name in (DOUBLE, SINGLE):
            key = f"diffusion_model.{name}"
            found = clone.object_patches.get(key)
            if isinstance(found, HookedBlocks):
                own = getattr(dm, name)
                if isinstance(own, HookedBlocks):  # copied while the patches were applied
                    own = torch.nn.ModuleList(list(torch.nn.ModuleList.__iter__(own)))
                clone.object_patches = {**clone.object_patches,
                                        key: HookedBlocks(own, found.kind, found.offset, found.hooks)}

    def refused_inputs(self, kwargs: dict) -> Optional[str]:
        if kwargs.get("image_cond") is not None:
            return ("the conditioning carries an edit image for HiDream (image_cond, HiDream E1), whose tokens the "
                    "model sets beside the image inside each token row, where this pack's nodes cannot place them; "
                    "remove the edit image from the conditioning, or sample without this pack's nodes")
        return None

    def text_features(self, dm):
        layers = getattr(dm, "caption_projection", None)
        return layers[-1].linear.in_features if layers is not None else None

    def text_embedder(self, dm):
        layers = getattr(dm, "caption_projection", None)
        return layers[-1] if layers is not None else None

    # -- ConceptAttention: each concept laid out as HiDream lays out a prompt of that one word -------------------
    # A concept's stream is [T5 ; Llama last layer] (its word's first T5 token and first Llama token, each through its
    # own projection), carried from block to block as the prompt's is; each double block also gets the concepts'
    # Llama layer of that block, projected afresh and dropped after it, as the prompt's. Saliency reads the T5 rows.
    def concept_extra(self, tokens: dict, options: dict):
        llama = options.get(LLAMA_OPTION)
        if not torch.is_tensor(llama) or llama.ndim != 4 or "llama" not in tokens:
            raise ValueError("HiDream's concepts need the Llama states of each concept word (conditioning_llama3): "
                             "connect HiDream's text encoder (the QuadrupleCLIPLoader with its Llama 3.1 file) as the "
                             "clip, the one that encodes the prompt")
        word_ids = [t[2] if len(t) > 2 else 1 for chunk in tokens["llama"][:1] for t in chunk]
        first = next((i for i, w in enumerate(word_ids) if w > 0), 0)
        return llama[0, :, min(first, llama.shape[2] - 1)]  # [Llama layers, C]

    def concept_stream_start(self, dm, embedded, extra):
        last = len(dm.llama_layers) - 1  # the projected Llama layers, in order; the last one starts the stream
        return torch.cat([embedded, _projected(dm, last, extra)], dim=0)

    def concept_block_text(self, dm, block_index, stream, extra):
        own = _projected(dm, block_index, extra).to(stream.dtype)
        return torch.cat([stream, own.unsqueeze(0).expand(stream.shape[0], -1, -1)], dim=1)

    def concept_block_inputs(self, state: ForwardState, inputs: dict, n_concepts: int) -> dict:
        """The rope table over [image ; concept text]: every text position is 0, so any text row is theirs."""
        rope = inputs["rope"]  # [B, L, 1, ...], the sequence on dim 1
        n_img = rope.shape[1] - state.n_context
        text_row = rope[:, n_img:n_img + 1]
        return {**inputs, "rope": torch.cat([rope[:, :n_img], text_row.expand(-1, n_concepts, *rope.shape[2:])], 1)}

    # -- the text layout ----------------------------------------------------------------------------------------
    def read_inputs(self, state: ForwardState, dm, inputs: dict) -> None:
        """The prompt's text stream is its T5 tokens and twice its Llama tokens (the last layer's and the block's)."""
        llama = inputs.get(LLAMA)
        n_llama = llama.shape[2] if torch.is_tensor(llama) and llama.ndim == 4 else 0
        state.tables[PARTS] = ((state.n_txt, n_llama),)
        state.n_txt = state.n_context = state.n_txt + 2 * n_llama

    def refused_region(self, options: dict) -> Optional[str]:
        llama = options.get(LLAMA_OPTION)
        if not torch.is_tensor(llama) or llama.ndim != 4 or llama.shape[0] != 1:
            return ("has no Llama states (the conditioning's conditioning_llama3): encode region prompts with "
                    "HiDream's text encoder (the QuadrupleCLIPLoader with its Llama 3.1 file), as the main prompt")
        return None

    def text_layout(self, state: ForwardState, dm, context, regions):
        if regions is None:
            return context
        t5_lens = tuple(state.region_lens)
        if sum(t5_lens) != regions.shape[0] or len(state.region_inputs) != len(t5_lens):
            raise RuntimeError(f"[joint_attention] region texts of {sum(t5_lens)} tokens expected, got "
                               f"{regions.shape[0]}")
        llama_lens = tuple(_region_llama(options, i).shape[2] for i, options in enumerate(state.region_inputs))
        parts = state.tables[PARTS][:1] + tuple(zip(t5_lens, llama_lens))
        state.tables[PARTS] = parts
        state.region_lens = tuple(t + 2 * n for t, n in parts[1:])
        state.n_context = state.n_txt + sum(state.region_lens)
        return torch.cat([context, regions.unsqueeze(0).expand(context.shape[0], -1, -1)], dim=1)

    def region_inputs(self, state: ForwardState, dm, inputs: dict) -> dict:
        llama = inputs.get(LLAMA)
        if not torch.is_tensor(llama) or not state.region_lens:
            return inputs
        rows = []
        for i, options in enumerate(state.region_inputs):
            own = _region_llama(options, i)
            if own.shape[1] != llama.shape[1] or own.shape[3] != llama.shape[3]:
                raise ValueError(
                    f"[Apply Regional Attention] input 'regions': region {i + 1}'s Llama states are "
                    f"{own.shape[1]} layers x {own.shape[3]} features, the prompt's {llama.shape[1]} x "
                    f"{llama.shape[3]}: encode region prompts with the same text encoder as the main prompt")
            rows.append(own.to(device=llama.device, dtype=llama.dtype).expand(llama.shape[0], -1, -1, -1))
        return {**inputs, LLAMA: torch.cat([llama] + rows, dim=2)}

    def forward_patches(self, state: ForwardState) -> dict:
        return {}  # every text position is 0: region texts have their prompt-alone positions as they are


def _projected(dm, index: int, extra: torch.Tensor) -> torch.Tensor:
    """The concepts' Llama states of the model's `index`-th Llama layer (`llama_layers[index]`) through its projection,
    [n, D] (`extra`: [n, Llama layers, C])."""
    layer = dm.caption_projection[index]
    weight = layer.linear.weight
    return layer(extra[:, dm.llama_layers[index]].to(weight.device, weight.dtype))


def _region_llama(options: dict, index: int) -> torch.Tensor:
    llama = options.get(LLAMA_OPTION)
    if not torch.is_tensor(llama) or llama.ndim != 4:
        raise ValueError(f"[Apply Regional Attention] input 'regions': region {index + 1}'s prompt has no Llama "
                         "states (conditioning_llama3): encode region prompts with HiDream's text encoder")
    return llama


def text_order(state: ForwardState, device) -> Optional[tuple]:
    """(pack order, host order) of the text stream's rows: `text[:, pack]` is the pack's order
    `[prompt: T5, last, block ; r1: T5, last, block ; ...]`, `pack_text[:, host]` the host's; None without regions."""
    parts = state.tables.get(PARTS) or ()
    if len(parts) < 2:
        return None
    key = ("hidream", "order", str(device))
    found = state.tables.get(key)
    if found is not None:
        return found
    n_t5, n_llama = sum(t for t, _ in parts), sum(n for _, n in parts)
    pieces, t5_at, llama_at = [], 0, 0
    for t, n in parts:
        pieces += [torch.arange(t5_at, t5_at + t),  # T5
                   torch.arange(n_t5 + llama_at, n_t5 + llama_at + n),  # Llama, last layer
                   torch.arange(n_t5 + n_llama + llama_at, n_t5 + n_llama + llama_at + n)]  # Llama, this block
        t5_at, llama_at = t5_at + t, llama_at + n
    pack = torch.cat(pieces)
    host = torch.empty_like(pack)
    host[pack] = torch.arange(pack.numel())
    found = state.tables[key] = (pack.to(device), host.to(device))
    return found


def _reordered(seq: torch.Tensor, first: int, index: torch.Tensor) -> torch.Tensor:
    """`seq` with its rows from `first` on taken in the order `index` (rows before `first` kept)."""
    if first == 0:
        return seq.index_select(1, index)
    return torch.cat([seq[:, :first], seq[:, first:].index_select(1, index)], dim=1)


class HookedBlocks(torch.nn.ModuleList):
    """One of HiDream's block lists, as an object patch: the same modules under the same names; iterating yields
    `HookedBlock`s, which name the block for the pack and pass the host's arguments on."""

    def __init__(self, blocks, kind: str, offset: int, hooks):
        super().__init__(list(blocks))
        self.kind, self.offset = kind, offset
        self.hooks = hooks  # the integration layer's block hooks (integration/blocks.py)

    def __iter__(self):
        for index, block in enumerate(super().__iter__()):
            yield HookedBlock(block, BlockRef(self.kind, index, self.offset + index), self.hooks)


class HookedBlock:
    def __init__(self, block, ref: BlockRef, hooks):
        self.block, self.ref, self.hooks = block, ref, hooks

    def _run_named(self, inputs: dict) -> dict:
        """The double block run on inputs named as the other families' block patches name them."""
        img, txt = self.block(image_tokens=inputs["img"], image_tokens_masks=inputs.get("image_tokens_masks"),
                              text_tokens=inputs["txt"], adaln_input=inputs["vec"], rope=inputs["rope"],
                              transformer_options=inputs["transformer_options"])
        return {"img": img, "txt": txt}

    # As the other families' block hooks: under torch.compile this frame runs eagerly (it reads per-step Python
    # state), the block it calls is compiled as usual.
    @partial(torch.compiler.disable, recursive=False)
    def __call__(self, *args, **kwargs):
        entered = self.hooks.enter(kwargs.get("transformer_options") or {}, self.ref)
        if entered is None:
            return self.block(*args, **kwargs)
        kwargs = {**dict(zip(BLOCK_ARGS, args)), **kwargs, "transformer_options": entered.options}
        state = entered.state
        key, first = ("text_tokens", 0) if self.ref.kind == "double" else ("image_tokens", state.n_img)
        given = kwargs[key]
        order = text_order(state, given.device)
        seq = _reordered(given, first, order[0]) if order else given
        text = TextStream(seq, first, first + state.n_context)
        if entered.edit_text(text):  # skipped: the block's inputs go on as its outputs
            return (kwargs["image_tokens"], given) if self.ref.kind == "double" else given
        kwargs[key] = text.tensor
        if self.ref.kind == "double":  # host-side features (ConceptAttention) see the block's inputs and output
            inputs = {"img": kwargs["image_tokens"], "txt": kwargs["text_tokens"], "vec": kwargs["adaln_input"],
                      "rope": kwargs["rope"], "image_tokens_masks": kwargs.get("image_tokens_masks"),
                      "transformer_options": kwargs["transformer_options"]}
            entered.before(inputs)
            kwargs["transformer_options"] = inputs["transformer_options"]
            out = self.block(**kwargs)
            entered.after(inputs, self._run_named, {"img": out[0], "txt": out[1]})
        else:
            out = self.block(**kwargs)
        if not order:
            return out
        if self.ref.kind == "double":
            return out[0], _reordered(out[1], 0, order[1])
        return _reordered(out, first, order[1])
