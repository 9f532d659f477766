"""AuraFlow, Lens and JoyImage-Edit: what their family scenarios (ja_families) do not show.

AuraFlow's register tokens lead its text stream: each region text gets registers of its own, set to the model's
where the text first enters a block, and word labels start after the model's own. JoyImage's encoder drops its chat
template's system turn: word labels start where its context does. (Lens and JoyImage's [image ; text] calls run every
family scenario, ConceptAttention's reference included.)
"""
from types import SimpleNamespace

import pytest
import torch

from ja_families import BY_NAME
from ja_nodes import run_node
from ja_regions import cell_masks, regions_for
from ja_tiny import build, make_cond, sample
from joint_attention_pack.integration.labels import context_tokens, words_of
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


def test_aura_flow_region_texts_get_the_models_register_tokens_in_the_first_block():
    """The text stream entering the first double layer is [registers ; prompt ; registers ; region 1 ; registers ;
    region 2], each register row the model's own; the region texts' rows are the host's projection of them."""
    tiny = build("aura_flow")
    dm = tiny.patcher.model.diffusion_model
    regions, conds = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, tiny.patcher, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    seen = []
    hook = dm.double_layers[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    pos, neg = make_cond(tiny, seed=1, n_tokens=5), make_cond(tiny, seed=2, n_tokens=5)
    try:
        sample(model, pos, neg, steps=1, cfg=1.0, width=96, height=64)
    finally:
        hook.remove()
    stream = seen[0][0]
    registers = dm.register_tokens[0]
    lens = [c.shape[0] for c in conds]  # each region's tokens [T, C]
    assert stream.shape[0] == 8 + 5 + sum(8 + n for n in lens)
    torch.testing.assert_close(stream[:8], registers, rtol=0, atol=0)
    start = 13
    for cond, n in zip(conds, lens):
        torch.testing.assert_close(stream[start:start + 8], registers, rtol=0, atol=0)
        with torch.no_grad():
            want = dm.cond_seq_linear(cond)
        torch.testing.assert_close(stream[start + 8:start + 8 + n], want)
        start += 8 + n


def test_aura_flow_word_labels_start_after_the_register_tokens():
    """The host's Pile-T5 tokenizer; the model's text stream is [8 registers ; the encoder's tokens]."""
    import comfy.text_encoders.aura_t5

    clip = SimpleNamespace(tokenizer=comfy.text_encoders.aura_t5.AuraT5Tokenizer())
    prompt = "a red cat sitting on grass"
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    ids = [t[0] for t in tokens["pile_t5xl"][0]]
    n_txt = 8 + len(ids)
    labelled = context_tokens(clip, prompt, n_txt, "aura_flow")
    assert [p for p, _, _ in labelled] == list(range(8, n_txt))
    spiece = clip.tokenizer.clip_pile_t5xl.tokenizer.tokenizer  # the SentencePiece processor
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "cat", "sitting", "on", "grass"]
    for text, positions in offered:
        assert spiece.decode([ids[p - 8] for p in positions]).strip() == text


def test_joy_image_word_labels_start_where_the_encoder_context_does():
    """ComfyUI's JoyImage encoder drops the first 34 tokens of its template (the system turn and the user turn's
    `<|im_start|>`): the context starts at `user`. Labels line up with it, and no template token is offered as a word."""
    reason = BY_NAME["joy_image"].missing_from_host()
    if reason:
        pytest.skip(reason)
    import comfy.text_encoders.joyimage

    clip = SimpleNamespace(tokenizer=comfy.text_encoders.joyimage.JoyImageTokenizer())
    prompt = "a red cat, sitting on grass"
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    ids = [t[0] for t in tokens["qwen3vl_8b"][0]][comfy.text_encoders.joyimage.JOYIMAGE_DROP_IDX:]
    labelled = context_tokens(clip, prompt, len(ids), "joy_image")
    assert [p for p, _, _ in labelled] == list(range(len(ids)))
    assert [t for _, t, w in labelled[:2]] == ["user", ""] and {w for _, _, w in labelled[:2]} == {0}
    hf = clip.tokenizer.qwen3vl_8b.tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "cat", "sitting", "on", "grass"]
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text


def test_lens_text_mask_of_all_ones_is_the_models_own_and_a_padded_one_is_refused_by_name():
    """Lens's text encoder puts a text mask in every conditioning. All ones (one prompt) is what the model makes
    without one: regions sample the same with it or without it. A padded text keeps its mask, which regional
    prompting refuses by name."""
    reason = BY_NAME["lens"].missing_from_host()
    if reason:
        pytest.skip(reason)
    from ja_tiny import with_options

    tiny = build("lens")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, tiny.patcher, regions, 0.0, 0.0, 1.0, "all", "none", "restricted",
                     "background")[0]
    pos, neg = make_cond(tiny, seed=1, n_tokens=6), make_cond(tiny, seed=2, n_tokens=6)
    kw = dict(steps=2, cfg=2.5, width=96, height=64)
    ones = torch.ones(1, 6, dtype=torch.long)
    masked = [with_options(c, attention_mask=ones) for c in (pos, neg)]
    assert torch.equal(sample(model, *masked, **kw), sample(model, pos, neg, **kw))
    assert torch.equal(sample(tiny.patcher, *masked, **kw), sample(tiny.patcher, pos, neg, **kw))
    padded = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': .*text padding mask"):
        sample(model, with_options(pos, attention_mask=padded), neg, **kw)


def test_lens_maps_offer_no_words_and_say_why():
    """Lens's tokenizer ships inside its text-encoder checkpoint, not with ComfyUI: the maps node shows the base prompt
    as one map (and each region text), names positions by number, and a word asked for stops with that reason."""
    reason = BY_NAME["lens"].missing_from_host()
    if reason:
        pytest.skip(reason)
    from ja_tiny import tiny_clip
    from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps

    tiny = build("lens")
    clip = tiny_clip()
    kw = dict(steps=2, cfg=1.0, width=96, height=64)
    pos, neg = make_cond(tiny, seed=1, n_tokens=6), make_cond(tiny, seed=2, n_tokens=6)

    def captured():
        model, handle = run_node(JointAttentionCapture, tiny.patcher, "all", "none", 0.0, 1.0)
        return handle, sample(model, pos, neg, **kw)

    handle, latent = captured()
    with pytest.raises(ValueError, match=r"\[Attention Maps\] input 'words': 'cat': Lens's tokenizer ships inside its "
                                         r"text-encoder checkpoint.*Name text positions as #0 to #5"):
        run_node(JointAttentionMaps, handle, {"samples": latent}, "cat", "", clip=clip, prompt="a cat")
    handle, latent = captured()
    heat, _, info = run_node(JointAttentionMaps, handle, {"samples": latent}, "", "", clip=clip, prompt="a cat").args
    assert heat.shape[0] == 1 and "base prompt [0, 1, 2, 3, 4, 5]" in info
    handle, latent = captured()
    heat, _, info = run_node(JointAttentionMaps, handle, {"samples": latent}, "#2", "", clip=clip, prompt="a cat").args
    assert heat.shape[0] == 1 and "#2 [2]" in info
