"""Labels for text positions in a model's context: which token, which word, from the model's own tokenizers."""
from __future__ import annotations

from .families import FAMILIES


def context_order(family: str, tokens: dict) -> list:
    """The tokenizer keys whose tokens make up the family's context, in order (SD3: CLIP-L or -G, then T5;
    FLUX: T5). A text encoder the family does not list (e.g. a tiny test CLIP) counts on its own."""
    encoders = next((f.context_encoders for f in FAMILIES if f.name == family), ("t5xxl",))
    clip_keys = [k for k in encoders if k in tokens and k != "t5xxl"]
    if "t5xxl" in tokens and "t5xxl" in encoders:
        return clip_keys[:1] + ["t5xxl"]
    return clip_keys[:1] or [next(iter(tokens))]


def context_tokens(clip, prompt: str, n_txt: int, family: str):
    """[(position, token string, word number)] for the base text's positions in the model's context.

    Word number 0 marks start/end/padding tokens, and the chat template around the prompt of LLM text
    encoders (Qwen2.5-VL, Qwen3): those are never offered as words. ComfyUI's word ids count weighted
    segments, so words are split by the tokenizers' own markers: CLIP's "</w>" ends a word,
    SentencePiece's "\u2581" and byte-level BPE's "\u0120" (space) / "\u010a" (newline) start one."""
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    order = context_order(family, tokens)
    flat = []  # (token id, raw string, segment, special)
    for key in order:
        hf = _hf_tokenizer(clip, key)
        special = set(getattr(hf, "all_special_ids", ()) or ()) if hf is not None else set()
        own = [(tok_id, _raw_token(hf, tok_id), token[2] if len(token) > 2 else 1, tok_id in special)
               for chunk in tokens[key] for token in chunk for tok_id in (token[0],)]
        if _chat_template(family):
            own = _user_turn(own, hf)
        flat += own + [None]  # an encoder's tokens end: no word runs across
    # Byte-level BPE (Qwen) keeps punctuation in tokens of its own: those end a word and stand alone.
    split_punctuation = _chat_template(family)
    out, position, word, open_word = [], 0, 0, False
    for entry in flat:
        if entry is None:
            open_word = False
            continue
        _, raw, segment, special = entry
        if segment <= 0 or special:
            number, open_word = 0, False
        elif split_punctuation and not any(c.isalnum() for c in _clean(raw)):
            word += 1
            number, open_word = word, False
        else:
            if not open_word or raw.startswith(("\u2581", "\u0120", "\u010a")):
                word += 1
            number = word
            open_word = not raw.endswith("</w>")
        if position < n_txt:
            out.append((position, _clean(raw), number))
        position += 1
    return out


def _chat_template(family: str) -> bool:
    return any(f.chat_template for f in FAMILIES if f.name == family)


def _user_turn(flat, hf):
    """The context of a chat-template text encoder: from the user turn's text on (the system turn and the
    turn's header are cut off by the encoder, as ComfyUI's Qwen-Image encoder does: the second
    `<|im_start|>`, and past `user\n` when it follows), with everything from the last `<|im_end|>` on
    (the closing template) marked as no word."""
    if hf is None:
        return flat
    ids = [e[0] for e in flat]
    im_start, im_end = hf.convert_tokens_to_ids("<|im_start|>"), hf.convert_tokens_to_ids("<|im_end|>")
    starts = [i for i, t in enumerate(ids) if t == im_start][:2]
    if not starts:
        return flat
    begin = starts[-1]
    user, newline = hf.convert_tokens_to_ids("user"), hf.convert_tokens_to_ids("\u010a")
    if ids[begin + 1:begin + 3] == [user, newline]:
        begin += 3
    ends = [i for i, t in enumerate(ids) if t == im_end and i >= begin]
    stop = ends[-1] if ends else len(flat)
    return [e if i < stop else (e[0], e[1], 0, True) for i, e in enumerate(flat) if i >= begin]


def _hf_tokenizer(clip, key):
    for name in (f"clip_{key}", key):
        wrapper = getattr(clip.tokenizer, name, None)
        if wrapper is not None and hasattr(wrapper, "tokenizer"):
            return wrapper.tokenizer
    return None


def _raw_token(hf, tok_id) -> str:
    if hf is None or not isinstance(tok_id, int):
        return str(tok_id)
    return str(hf.convert_ids_to_tokens(tok_id))


def _clean(raw: str) -> str:
    return raw.replace("</w>", "").replace("\u2581", "").replace("\u0120", " ").replace("\u010a", " ").strip()


def words_of(tokens):
    """Group token positions by word id; word id 0 (start/end/padding) is never offered."""
    words: dict = {}
    for position, text, word in tokens:
        if word <= 0:
            continue
        entry = words.setdefault(word, {"text": "", "positions": []})
        entry["text"] += text
        entry["positions"].append(position)
    # Punctuation-only "words" (commas, periods) are not offered.
    return [(w["text"], w["positions"]) for _, w in sorted(words.items()) if any(c.isalnum() for c in w["text"])]
