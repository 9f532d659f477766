"""Labels for text positions in a model's context: which token, which word, from the model's own tokenizers."""
from __future__ import annotations

from ..families import Family, named


def context_order(family: str, tokens: dict) -> list:
    """The tokenizer keys whose tokens make up the family's context, in order (SD3: CLIP-L or -G, then T5;
    FLUX: T5). A text encoder the family does not list (e.g. a tiny test CLIP) counts on its own."""
    encoders = _family(family).context_encoders
    clip_keys = [k for k in encoders if k in tokens and k != "t5xxl"]
    if "t5xxl" in tokens and "t5xxl" in encoders:
        return clip_keys[:1] + ["t5xxl"]
    return clip_keys[:1] or [next(iter(tokens))]


def context_tokens(clip, prompt: str, n_txt: int, family: str):
    """[(position, token string, word number)] for the base text's positions in the model's context.

    Word number 0 marks start/end/padding tokens, and the chat template around the prompt of LLM text
    encoders (Qwen2.5-VL, Qwen3) or Lumina-2's system prompt: those are never offered as words. ComfyUI's word
    ids count weighted segments, so words are split by the tokenizers' own markers: CLIP's "</w>" ends a word,
    SentencePiece's "\u2581" and byte-level BPE's "\u0120" (space) / "\u010a" (newline) start one.
    Positions past the tokens (a caption the model pads itself, Z-Image's learned pad tokens) get no label, nor do the
    tokens a model puts before the context (AuraFlow's register tokens, `Family.leading_text`).
    Qwen-Image-Edit's reference pictures come before the prompt: a longer context places the prompt after them
    (`_prompt_after_pictures`); a context the prompt cannot fit raises UnplacedLabels. No labels for a family whose
    tokens cannot be read as words (`Family.word_labels`)."""
    if not _family(family).word_labels:
        return []
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    order = context_order(family, tokens)
    flat = []  # (token id, raw string, segment, special)
    for key in order:
        hf = _hf_tokenizer(clip, key)
        own = _entries(tokens[key], hf)
        cut = _family(family).context_template(key, [e[0] for e in own])
        if cut is not None:  # the encoder's own rule (Ovis-Image's on FLUX)
            begin, text, stop = cut
            own = [e if text <= i < stop else _no_word(e) for i, e in enumerate(own) if i >= begin]
        elif _chat_template(family):
            own = _after_system_prompt(_user_turn(own, hf, _cuts_to_user_text(family)))
            if _cuts_to_user_text(family) and order == [key] and n_txt != len(own):
                own = _prompt_after_pictures(clip, prompt, hf, key, n_txt, len(own))
        own = own[_family(family).context_drop:]  # what the encoder drops never reaches the model
        flat += own + [None]  # an encoder's tokens end: no word runs across
    # Byte-level BPE (Qwen) keeps punctuation in tokens of its own: those end a word and stand alone.
    split_punctuation = _chat_template(family)
    # Tokens the model puts before the context (AuraFlow's registers) take the first positions, with no label.
    out, position, word, open_word = [], _family(family).leading_text, 0, False
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


class UnplacedLabels(ValueError):
    """The prompt's tokens cannot be placed in the context the model got (a different prompt, or pictures
    before it in a layout the pack does not know): no labels rather than shifted ones."""


def no_word_labels(family: str) -> str:
    """Why a family's text positions carry no word labels (a sentence), "" where they do."""
    found = _family(family)
    return "" if found.word_labels else (found.word_labels_refused or f"{found.models} has no word labels")


def _entries(chunks, hf):
    """(token id, raw string, segment, special) of a tokenizer key's tokens."""
    special = set(getattr(hf, "all_special_ids", ()) or ()) if hf is not None else set()
    return [(tok_id, _raw_token(hf, tok_id), token[2] if len(token) > 2 else 1, tok_id in special)
            for chunk in chunks for token in chunk for tok_id in (token[0],)]


def _family(name: str) -> Family:
    """The family a capture recorded, by name; the defaults (T5 context, no chat template) for a name no family has
    (a capture from a family the pack dropped since)."""
    try:
        return named(name)
    except KeyError:
        return Family()


def _chat_template(family: str) -> bool:
    return _family(family).chat_template


def _cuts_to_user_text(family: str) -> bool:
    """Whether the family's chat-template text encoder cuts the context to start at the user's text (Qwen-Image's
    QwenImageTEModel.encode_token_weights: from the second `<|im_start|>`, and past `user\n` when it follows), or
    keeps every token of the template (Z-Image's ZImageTEModel, `<|im_start|>user\n{}<|im_end|>\n...`)."""
    return _family(family).cuts_to_user_text


def _user_turn(flat, hf, cuts: bool):
    """The context of a chat-template text encoder, with only the user's text offered as words: the template
    before it (system turn, the user turn's header `<|im_start|>user\n`) is cut off where the encoder cuts it and
    marked as no word where the encoder keeps it, and everything from the last `<|im_end|>` on (the closing
    template, `assistant`) is marked as no word."""
    if hf is None or not hasattr(hf, "convert_tokens_to_ids"):
        return flat
    ids = [e[0] for e in flat]
    im_start, im_end = hf.convert_tokens_to_ids("<|im_start|>"), hf.convert_tokens_to_ids("<|im_end|>")
    starts = [i for i, t in enumerate(ids) if t == im_start]
    if not starts:
        return flat
    user, newline = hf.convert_tokens_to_ids("user"), hf.convert_tokens_to_ids("\u010a")
    if cuts:
        begin = text = starts[:2][-1]  # the encoder's own rule: the second <|im_start|> (of the first two)
        if ids[begin + 1:begin + 3] == [user, newline]:
            begin = text = begin + 3
    else:
        begin = 0
        header = next((i for i in starts if ids[i + 1:i + 3] == [user, newline]), None)
        text = header + 3 if header is not None else 0
    ends = [i for i, t in enumerate(ids) if t == im_end and i >= text]
    stop = ends[-1] if ends else len(flat)
    return [e if text <= i < stop else _no_word(e) for i, e in enumerate(flat) if i >= begin]


# Qwen-Image-Edit's text nodes put the reference pictures into the user turn before the prompt:
# TextEncodeQwenImageEdit "<|vision_start|><|image_pad|><|vision_end|>{prompt}", -EditPlus "Picture 1:
# <|vision_start|><|image_pad|><|vision_end|>Picture 2: ...{prompt}"; the encoder turns each <|image_pad|> into
# the picture's vision tokens (as many as its size gives). Either way the prompt follows a <|vision_end|> and the
# closing template ends the context, so the prompt is placed from the end. The tokens before it (vision tokens,
# their markers, "Picture n:") are named as one kind: their split between pictures is not in the context's length.
PICTURE_TOKEN = "<picture>"
_MIN_PICTURE_TOKENS = 3  # <|vision_start|>, at least one vision token, <|vision_end|>


def _prompt_after_pictures(clip, prompt, hf, key, n_txt, n_alone):
    """The context of a Qwen-Image prompt encoded after reference pictures, n_txt tokens long: the pictures'
    tokens (no word), then the prompt as it is tokenized after <|vision_end|>, then the closing template. Raises
    UnplacedLabels when n_txt cannot hold such a context."""
    if n_txt < n_alone:
        raise UnplacedLabels(f"the model got {n_txt} text tokens, fewer than this prompt makes ({n_alone}): it is "
                             "not the prompt the conditioning was encoded from; connect that prompt")
    template = getattr(clip.tokenizer, "llama_template_images", None)  # the host's Edit template
    vision_end = hf.convert_tokens_to_ids("<|vision_end|>") if hasattr(hf, "convert_tokens_to_ids") else None
    if not isinstance(template, str) or "<|vision_end|>{}" not in template or vision_end is None:
        raise UnplacedLabels(f"the model got {n_txt} text tokens where this prompt makes {n_alone}, and this host's "
                             "Qwen-Image tokenizer has no picture template to place the prompt after reference "
                             "pictures; disconnect 'clip', empty 'prompt' and name positions (#n) instead")
    chunks = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True, llama_template=template)[key]
    own = _user_turn(_entries(chunks, hf), hf, cuts=True)  # only Qwen-Image places pictures before the prompt
    ends = [i for i, entry in enumerate(own) if entry[0] == vision_end]
    tail = own[ends[-1] + 1:] if ends else []
    n_pictures = n_txt - len(tail)
    if not tail or n_pictures < _MIN_PICTURE_TOKENS:
        raise UnplacedLabels(f"the model got {n_txt} text tokens where this prompt makes {n_alone} alone, too few "
                             "for reference pictures before it (TextEncodeQwenImageEdit / -EditPlus): it is not "
                             "the prompt the conditioning was encoded from; connect that prompt")
    return [(None, PICTURE_TOKEN, 0, True)] * n_pictures + tail


# Lumina-2's text node (CLIPTextEncodeLumina2) encodes f"{system_prompt} <Prompt Start> {prompt}": the whole
# text is in the context, only what follows the marker is the user's.
_PROMPT_START = "<Prompt Start>"


def _after_system_prompt(flat):
    """Tokens up to and including a `<Prompt Start>` marker (Lumina-2's system prompt) marked as no word; the
    marker is found in the tokens' own text, whatever pieces the tokenizer split it into."""
    text, end = "", None
    for i, e in enumerate(flat):
        text += (" " if e[1].startswith(("\u2581", "\u0120", "\u010a")) else "") + _clean(e[1])
        if _PROMPT_START in text:
            end = i
            break
    if end is None:
        return flat
    return [_no_word(e) if i <= end else e for i, e in enumerate(flat)]


def _no_word(entry):
    return (entry[0], entry[1], 0, True)


def _hf_tokenizer(clip, key):
    for name in (f"clip_{key}", key):
        wrapper = getattr(clip.tokenizer, name, None)
        if wrapper is not None and hasattr(wrapper, "tokenizer"):
            return wrapper.tokenizer
    return None


def _raw_token(hf, tok_id) -> str:
    if hf is None or not isinstance(tok_id, int):
        return str(tok_id)
    if hasattr(hf, "convert_ids_to_tokens"):  # Hugging Face tokenizers (CLIP, T5, Qwen)
        return str(hf.convert_ids_to_tokens(tok_id))
    piece = getattr(getattr(hf, "tokenizer", None), "id_to_piece", None)  # ComfyUI's SentencePiece wrapper (Gemma)
    return str(piece(tok_id)) if piece is not None else str(tok_id)


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
