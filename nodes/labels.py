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

    Word number 0 marks start/end/padding tokens. ComfyUI's word ids count weighted segments,
    so words are split by the tokenizers' own markers: CLIP's "</w>" ends a word, SentencePiece's
    "▁" starts one."""
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    order = context_order(family, tokens)
    out, position, word, open_word = [], 0, 0, False
    for key in order:
        hf = _hf_tokenizer(clip, key)
        for chunk in tokens[key]:
            for token in chunk:
                tok_id, segment = token[0], token[2] if len(token) > 2 else 1
                raw = _raw_token(hf, tok_id)
                if segment <= 0:
                    number, open_word = 0, False
                else:
                    if not open_word or raw.startswith("\u2581"):
                        word += 1
                    number = word
                    open_word = not raw.endswith("</w>")
                if position < n_txt:
                    out.append((position, _clean(raw), number))
                position += 1
            open_word = False
    return out


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
    return raw.replace("</w>", "").replace("\u2581", "")


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
