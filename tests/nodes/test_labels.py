"""Issue 17: word labels from the real tokenizer files shipped with the host (Qwen2.5-VL for Qwen-Image, Qwen3 for
Z-Image) and the hosts' own text-encoder classes.

The Qwen-Image text encoder wraps the prompt in a chat template and ComfyUI's encoder cuts the system turn and the
user turn's header off (the context starts at the user's text); the closing template (`<|im_end|>`, `assistant`)
stays in the context. Z-Image's encoder wraps the prompt in a user turn and keeps every token; Lumina-2's node puts
a system prompt before `<Prompt Start>`. Positions must line up with the context the model gets, and no template,
system-prompt or pad token is ever offered as a word. The Qwen-Image tests read only `clip.tokenizer` (the host's
own class with its own files); the Z-Image and Lumina-2 tests run the host's encoder classes at tiny size.
"""
from types import SimpleNamespace

import pytest
import torch

from joint_attention_pack.integration.labels import context_tokens, words_of

# The chat-template families whose encoder cuts the context to start at the user's text: (family, tokenizer module
# and class, encoder class, tokenizer key). Mage-Flow (0.33) wraps Qwen3-VL-4B in Qwen-Image's text-to-image template.
CUT_TO_USER_TEXT = {
    "qwen_image": ("comfy.text_encoders.qwen_image", "QwenImageTokenizer", "QwenImageTEModel", "qwen25_7b"),
    "mage_flow": ("comfy.text_encoders.mage_flow", "MageFlowTokenizer", "MageFlowTEModel", "qwen3vl_4b"),
}


def _cut_to_user_text(family):
    import importlib

    module_name, tokenizer, encoder, key = CUT_TO_USER_TEXT[family]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pytest.skip(f"this host has no {module_name}")
    return SimpleNamespace(tokenizer=getattr(module, tokenizer)()), getattr(module, encoder), key


def _encoder_context_start(encoder_cls, tokens, key):
    """Where the host's encoder starts the context (its `encode_token_weights`), by running its own method on the
    token list with a stand-in for the base class's encoder output."""
    import comfy.sd1_clip
    import torch

    pairs = tokens[key]
    n = len(pairs[0])
    model = encoder_cls.__new__(encoder_cls)
    original = comfy.sd1_clip.SD1ClipModel.encode_token_weights
    try:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = lambda self, pairs: (
            torch.arange(n, dtype=torch.float32).view(1, n, 1), None, {"attention_mask": torch.ones(1, n)})
        out, _, _ = model.encode_token_weights(tokens)
    finally:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = original
    return int(out[0, 0, 0]), n


@pytest.mark.parametrize("family", list(CUT_TO_USER_TEXT))
@pytest.mark.parametrize("prompt,words", [
    ("a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
    ("Neon sign reading OPEN\nover a door", ["Neon", "sign", "reading", "OPEN", "over", "a", "door"]),
])
def test_chat_template_labels_follow_the_encoders_context_and_offer_no_template_tokens(family, prompt, words):
    clip, encoder_cls, key = _cut_to_user_text(family)
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    start, n = _encoder_context_start(encoder_cls, tokens, key)
    n_txt = n - start  # the length of the context the model gets
    labelled = context_tokens(clip, prompt, n_txt, family)
    assert [p for p, _, _ in labelled] == list(range(n_txt))
    ids = [t[0] for t in tokens[key][0]][start:]
    hf = getattr(clip.tokenizer, key).tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    for text, positions in offered:  # each word's positions decode to the word
        assert hf.decode([ids[p] for p in positions]).strip() == text
    template = {hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant")}
    for position, _, word in labelled:
        if ids[position] in template:
            assert word == 0
    assert labelled[-1][2] == 0 and labelled[-5][1] == "<|im_end|>"  # the closing template ends the context


# -- Z-Image (Qwen3-4B) and Lumina-2 (Gemma-2): the encoders keep every token ------------------------------------


def _conditioning(clip, text):
    """The conditioning tensor CLIPTextEncode makes from `text` with this CLIP ([1, tokens, features])."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))[0][0]


def _first_changed_row(a, b):
    """The first context position where two conditionings differ. The text encoders are causal LLMs: a token's
    row depends on it and the tokens before it only, so changing one word first changes the row of its first
    token, whatever the encoder cut or kept. Rows before it agree up to float rounding (the two sequences differ
    in length, so the host's matmuls may block differently: ~1e-8 here); a changed token moves its row by ~0.1."""
    n = min(a.shape[1], b.shape[1])
    changed = ((a[0, :n] - b[0, :n]).abs().amax(dim=-1) > 1e-4).nonzero()
    return int(changed[0]) if len(changed) else n


def _word_swapped(prompt, k, other="zebra"):
    """`prompt` with its k-th word (a run of letters/digits) replaced."""
    import re

    spans = [m.span() for m in re.finditer(r"\w+", prompt)]
    start, end = spans[k]
    return prompt[:start] + other + prompt[end:]


def _assert_positions_follow_the_conditioning(prompt, offered, encode):
    """Each offered word's first position is where the real encoder's conditioning first changes when that word
    is replaced (the k-th offered word is the k-th word of `prompt`)."""
    base = encode(prompt)
    for k, (text, positions) in enumerate(offered):
        swapped = encode(_word_swapped(prompt, k))
        assert _first_changed_row(base, swapped) == positions[0], (k, text, positions)


Z_IMAGE_PROMPTS = [
    ("a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
    ("Neon sign reading OPEN\nover a door", ["Neon", "sign", "reading", "OPEN", "over", "a", "door"]),
]


@pytest.mark.parametrize("prompt,words", Z_IMAGE_PROMPTS)
def test_z_image_labels_line_up_with_the_whole_template_the_encoder_keeps(prompt, words):
    """ComfyUI's Z-Image encoder (ZImageTEModel, CLIPLoader type lumina2 with a Qwen3-4B file) cuts nothing: the
    conditioning holds `<|im_start|>user\\n`, the prompt, and `<|im_end|>\\n<|im_start|>assistant\\n`, one row per
    token. The model then pads the caption to a multiple of 32 with learned pad tokens, so the context is longer
    than the tokens: those positions get no label. Tiny real Qwen3 encoder with the host's tokenizer files."""
    from ja_tiny import tiny_llm_clip

    clip = tiny_llm_clip("qwen3_4b")
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    ids = [t[0] for t in tokens["qwen3_4b"][0]]
    n_tokens = _conditioning(clip, prompt).shape[1]
    assert n_tokens == len(ids)  # the whole template is in the conditioning
    n_txt = n_tokens + (-n_tokens) % 32  # the caption as the model pads it
    assert n_txt > n_tokens
    labelled = context_tokens(clip, prompt, n_txt, "z_image")
    assert [p for p, _, _ in labelled] == list(range(n_tokens))
    hf = clip.tokenizer.qwen3_4b.tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text
    # The template around the prompt: header (3 tokens) and closing (5 tokens) are in the context, never words.
    assert [t for _, t, w in labelled[:3]] == ["<|im_start|>", "user", ""] and {w for _, _, w in labelled[:3]} == {0}
    assert [t for _, t, _ in labelled[-5:]] == ["<|im_end|>", "", "<|im_start|>", "assistant", ""]
    assert {w for _, _, w in labelled[-5:]} == {0}
    template = {hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant")}
    assert all(word == 0 for position, _, word in labelled if ids[position] in template)
    _assert_positions_follow_the_conditioning(prompt, offered, lambda p: _conditioning(clip, p))


def test_z_image_labels_are_cut_to_the_context_the_model_gets():
    """n_txt shorter than the tokens (a context cut by the caller) labels only the first n_txt positions."""
    from ja_tiny import tiny_llm_clip

    clip = tiny_llm_clip("qwen3_4b")
    labelled = context_tokens(clip, "a red cat", 4, "z_image")
    assert [(p, t) for p, t, _ in labelled] == [(0, "<|im_start|>"), (1, "user"), (2, ""), (3, "a")]
    assert [w for w, _ in words_of(labelled)] == ["a"]


def _lumina2_clip():
    """Lumina-2's real tokenizer and encoder classes (LuminaTokenizer, Gemma-2 encoder) at tiny size. Gemma's
    SentencePiece model ships inside the text-encoder checkpoint, not with the host: the host's own pile-T5
    SentencePiece model stands in for its vocabulary (the rules under test read pieces, not ids)."""
    from ja_host import host_path
    from ja_tiny import tiny_llm_clip

    model = (host_path() / "comfy" / "text_encoders" / "t5_pile_tokenizer" / "tokenizer.model").read_bytes()
    return tiny_llm_clip("gemma2_2b", tokenizer_data={"spiece_model": model})


def _lumina2_encode(clip, user_prompt, system_prompt="superior"):
    """What the host's CLIPTextEncodeLumina2 node outputs, and the text it encoded."""
    from comfy_extras.nodes_lumina2 import CLIPTextEncodeLumina2

    out = CLIPTextEncodeLumina2.execute(clip, user_prompt, system_prompt)
    return out.result[0][0][0], f"{CLIPTextEncodeLumina2.SYSTEM_PROMPT[system_prompt]} <Prompt Start> {user_prompt}"


@pytest.mark.parametrize("system_prompt", ["superior", "alignment"])
def test_lumina2_labels_offer_the_user_prompt_after_the_system_prompt(system_prompt):
    """CLIPTextEncodeLumina2 encodes "<system prompt> <Prompt Start> <prompt>" after Gemma's BOS token, and the
    encoder keeps every token. Given that whole text, the labels name every conditioning row, offer only the
    words after <Prompt Start>, and put each where the conditioning changes when the word does."""
    clip = _lumina2_clip()
    user = "a red cat, sitting on grass"
    cond, text = _lumina2_encode(clip, user, system_prompt)
    tokens = clip.tokenizer.tokenize_with_weights(text, return_word_ids=True)["gemma2_2b"][0]
    assert cond.shape[1] == len(tokens)  # nothing cut
    labelled = context_tokens(clip, text, cond.shape[1], "z_image")
    assert [p for p, _, _ in labelled] == list(range(len(tokens)))
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "cat", "sitting", "on", "grass"]
    marker = max(p for p, t, _ in labelled if t.endswith(">"))  # the last piece of "<Prompt Start>"
    assert all(w == 0 for p, _, w in labelled if p <= marker) and labelled[0][2] == 0
    assert min(positions[0] for _, positions in offered) == marker + 1
    _assert_positions_follow_the_conditioning(user, offered,
                                              lambda p: _lumina2_encode(clip, p, system_prompt)[0])


def test_lumina2_labels_without_a_system_prompt_offer_every_word():
    """Lumina-2 prompts encoded by plain CLIPTextEncode (no system prompt): every word after BOS is offered."""
    clip = _lumina2_clip()
    prompt = "a red cat, sitting on grass"
    cond = _conditioning(clip, prompt)
    labelled = context_tokens(clip, prompt, cond.shape[1], "z_image")
    assert labelled[0][2] == 0  # BOS
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "cat", "sitting", "on", "grass"]
    _assert_positions_follow_the_conditioning(prompt, offered, lambda p: _conditioning(clip, p))


# -- Qwen-Image-Edit: the reference pictures' vision tokens come before the prompt ---------------------------------


@pytest.fixture(scope="module")
def qwen_vl_clip():
    """The host's Qwen-Image tokenizer and Qwen2.5-VL encoder at tiny size, vision tower included."""
    from ja_tiny import tiny_llm_clip

    return tiny_llm_clip("qwen25_7b")


def _pictures(n, width=40):
    generator = torch.Generator().manual_seed(3)
    return [torch.rand(1, 32, width + 8 * i, 3, generator=generator) for i in range(n)]


def _edit_conditioning(node, clip, prompt, pictures):
    """What the host's TextEncodeQwenImageEdit / -EditPlus outputs for `prompt` and `pictures` (no VAE: the
    pictures go to the text encoder only)."""
    from comfy_extras import nodes_qwen

    if node == "TextEncodeQwenImageEdit":
        return nodes_qwen.TextEncodeQwenImageEdit.execute(clip, prompt, None, pictures[0]).result[0]
    return nodes_qwen.TextEncodeQwenImageEditPlus.execute(clip, prompt, None, *pictures).result[0]


EDIT_CASES = [  # (node, pictures, prompt, words): Edit scales its picture to 1 Mpx (~1350 vision tokens)
    ("TextEncodeQwenImageEdit", 1, "a red cat", ["a", "red", "cat"]),
    ("TextEncodeQwenImageEditPlus", 2, "a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
]


@pytest.mark.parametrize("node,n_pictures,prompt,words", EDIT_CASES)
def test_qwen_image_edit_labels_name_the_words_after_the_pictures_vision_tokens(qwen_vl_clip, node, n_pictures,
                                                                                prompt, words):
    """TextEncodeQwenImageEdit / -EditPlus put the pictures (their vision tokens, spliced in by the real encoder)
    before the prompt in the user turn. Every word sits where the conditioning changes when that word is
    replaced; the pictures' tokens and the closing template are never words."""
    pictures = _pictures(n_pictures)
    cond = _edit_conditioning(node, qwen_vl_clip, prompt, pictures)[0][0]
    n_txt = cond.shape[1]
    alone = _conditioning(qwen_vl_clip, prompt).shape[1]
    assert n_txt > alone + 100  # the vision tokens are in the context
    labelled = context_tokens(qwen_vl_clip, prompt, n_txt, "qwen_image")
    assert [p for p, _, _ in labelled] == list(range(n_txt))
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    _assert_positions_follow_the_conditioning(
        prompt, offered, lambda p: _edit_conditioning(node, qwen_vl_clip, p, pictures)[0][0])
    assert [t for _, t, _ in labelled[-5:]] == ["<|im_end|>", "", "<|im_start|>", "assistant", ""]
    from joint_attention_pack.integration.labels import PICTURE_TOKEN

    first_word = offered[0][1][0]
    assert all(t == PICTURE_TOKEN and w == 0 for _, t, w in labelled[:first_word])


def _captured(clip, conditioning):
    """Attention Capture's handle after sampling a tiny Qwen-Image with `conditioning`, and the latent."""
    from ja_nodes import run_node
    from ja_tiny import build, sample
    from joint_attention_pack.nodes.maps import JointAttentionCapture

    tiny = build("qwen_image")
    model, handle = run_node(JointAttentionCapture, tiny.patcher, "all", "none", 0.0, 1.0).args
    latent = sample(model, conditioning, conditioning, steps=2, width=32, height=32)
    return handle, {"samples": latent}


def test_attention_maps_show_each_edit_prompt_word_at_the_row_the_encoder_gives_it(qwen_vl_clip):
    """Attention Maps on a Qwen-Image-Edit capture: the map of a word is the capture's column at the position
    where the encoder's conditioning changes when that word is replaced."""
    from ja_nodes import run_node
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    node, prompt, pictures = "TextEncodeQwenImageEditPlus", "a red cat", _pictures(1)
    conditioning = _edit_conditioning(node, qwen_vl_clip, prompt, pictures)
    handle, samples = _captured(qwen_vl_clip, conditioning)
    result = handle.result
    _, masks, info = run_node(JointAttentionMaps, handle, samples, "cat", "", clip=qwen_vl_clip, prompt=prompt).args
    swapped = _edit_conditioning(node, qwen_vl_clip, "a red zebra", pictures)[0][0]
    position = _first_changed_row(conditioning[0][0], swapped)
    assert f"cat [{position}]" in info
    column = result["maps"][:, position]
    want = (column - column.min()) / (column.max() - column.min())
    rows, cols = masks.shape[1] // 16, masks.shape[2] // 16
    got = torch.nn.functional.interpolate(want.reshape(1, 1, rows, cols), size=masks.shape[1:], mode="bilinear",
                                          align_corners=False)[0, 0]
    torch.testing.assert_close(masks[0], got, atol=1e-6, rtol=0)


@pytest.mark.parametrize("maps_prompt", ["a red cat on the grass", "red cat"])
def test_attention_maps_refuse_a_qwen_image_prompt_that_does_not_fit_the_context(qwen_vl_clip, maps_prompt):
    """A plain Qwen-Image capture of "a red cat" labelled with another prompt: longer than the context, or
    shorter by fewer tokens than any picture takes. The node refuses by name rather than shift the labels."""
    from ja_nodes import run_node
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    conditioning = qwen_vl_clip.encode_from_tokens_scheduled(qwen_vl_clip.tokenize("a red cat"))
    handle, samples = _captured(qwen_vl_clip, conditioning)
    with pytest.raises(ValueError, match=r"\[Attention Maps\] input 'prompt': the model got 8 text tokens.*"
                                         r"not the prompt the conditioning was encoded from"):
        run_node(JointAttentionMaps, handle, samples, "", "", clip=qwen_vl_clip, prompt=maps_prompt)


def _host_module(name):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"this host has no {name}")


def test_ovis_image_labels_name_the_user_text_where_its_encoder_cuts_the_template():
    """Ovis-Image loads as FLUX; its encoder (the host's OvisTEModel, here at tiny size) wraps the prompt in a chat
    template and keeps the context from the ':' that ends the template's instruction: the labels name the user's
    words at their rows in that context, and no template word is offered."""
    import comfy.sd
    import comfy.supported_models_base

    ovis = _host_module("comfy.text_encoders.ovis")
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1}
    clip = comfy.sd.CLIP(target=comfy.supported_models_base.ClipTarget(ovis.OvisTokenizer, ovis.te()),
                         model_options={"qwen3_2b_model_config": small, "dtype": torch.float32})
    prompt = "a red fox"
    n_context = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))[0][0].shape[1]
    ids = [t[0] for t in clip.tokenizer.tokenize_with_weights(prompt)["qwen3_2b"][0]]
    kept = ids[len(ids) - n_context:]  # the encoder keeps the tokens' tail
    labelled = context_tokens(clip, prompt, n_context, "flux")
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "fox"]
    hf = clip.tokenizer.qwen3_2b.tokenizer
    for text, positions in offered:
        assert hf.decode([kept[p] for p in positions]).strip() == text


def test_boogu_labels_come_from_its_own_encoder_and_skip_its_template():
    """Boogu's encoder (the host's BooguTokenizer, Qwen3-VL-8B) keeps its whole chat template (system turn, user turn)
    in the context: the labels name the user's words at their token positions, and no template word."""
    boogu = _host_module("comfy.text_encoders.boogu")
    tokenizer = boogu.BooguTokenizer()
    prompt = "a red fox"
    ids = [t[0] for t in tokenizer.tokenize_with_weights(prompt)["qwen3vl_8b"][0]]
    labelled = context_tokens(SimpleNamespace(tokenizer=tokenizer), prompt, len(ids), "boogu")
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "fox"]
    hf = tokenizer.qwen3vl_8b.tokenizer
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text
