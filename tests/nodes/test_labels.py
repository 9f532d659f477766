"""Issue 17: word labels from the real tokenizer files shipped with the host (Qwen2.5-VL for Qwen-Image).

The Qwen-Image text encoder wraps the prompt in a chat template and ComfyUI's encoder cuts the system turn and the
user turn's header off (the context starts at the user's text); the closing template (`<|im_end|>`, `assistant`)
stays in the context. Positions must line up with the context the model gets, and no template or pad token is
ever offered as a word. The labels only read `clip.tokenizer`: the tokenizer here is the host's own class with its
own files; no text-encoder weights are needed.
"""
from types import SimpleNamespace

import pytest

from joint_attention_pack.nodes.labels import context_tokens, words_of


def _qwen_image_clip():
    import comfy.text_encoders.qwen_image

    return SimpleNamespace(tokenizer=comfy.text_encoders.qwen_image.QwenImageTokenizer())


def _encoder_context_start(tokens):
    """Where ComfyUI's Qwen-Image encoder starts the context (QwenImageTEModel.encode_token_weights), by running
    its own method on the token list with a stand-in for the base class's encoder output."""
    import comfy.sd1_clip
    import comfy.text_encoders.qwen_image
    import torch

    pairs = tokens["qwen25_7b"]
    n = len(pairs[0])
    model = comfy.text_encoders.qwen_image.QwenImageTEModel.__new__(comfy.text_encoders.qwen_image.QwenImageTEModel)
    original = comfy.sd1_clip.SD1ClipModel.encode_token_weights
    try:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = lambda self, pairs: (
            torch.arange(n, dtype=torch.float32).view(1, n, 1), None, {"attention_mask": torch.ones(1, n)})
        out, _, _ = model.encode_token_weights(tokens)
    finally:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = original
    return int(out[0, 0, 0]), n


@pytest.mark.parametrize("prompt,words", [
    ("a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
    ("Neon sign reading OPEN\nover a door", ["Neon", "sign", "reading", "OPEN", "over", "a", "door"]),
])
def test_qwen_image_labels_follow_the_encoders_context_and_offer_no_template_tokens(prompt, words):
    clip = _qwen_image_clip()
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    start, n = _encoder_context_start(tokens)
    n_txt = n - start  # the length of the context the model gets
    labelled = context_tokens(clip, prompt, n_txt, "qwen_image")
    assert [p for p, _, _ in labelled] == list(range(n_txt))
    ids = [t[0] for t in tokens["qwen25_7b"][0]][start:]
    hf = clip.tokenizer.qwen25_7b.tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    for text, positions in offered:  # each word's positions decode to the word
        assert hf.decode([ids[p] for p in positions]).strip() == text
    template = {hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant")}
    for position, _, word in labelled:
        if ids[position] in template:
            assert word == 0
    assert labelled[-1][2] == 0 and labelled[-5][1] == "<|im_end|>"  # the closing template ends the context
