"""HiDream I1: what only HiDream has (per-block Llama states, [image ; text] attention, wrapped block lists)."""
import pytest
import torch

from ja_nodes import run_node
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, tiny_hidream_clip
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

KW = dict(seed=0, steps=2, cfg=1.0, width=96, height=64)


def _encode(clip, text):
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))  # what CLIPTextEncode outputs


def test_the_tiny_encoder_gives_t5_tokens_and_llama_states_of_every_layer():
    cond = _encode(tiny_hidream_clip(), "a red fox")
    tokens, options = cond[0]
    assert tokens.shape == (1, 128, 64)
    llama = options["conditioning_llama3"]
    assert llama.shape[:2] == (1, 3) and llama.shape[-1] == 64


def test_full_region_identity_with_the_real_encoder():
    tiny = build("hidream")
    clip = tiny_hidream_clip()
    base, region, neg = (_encode(clip, t) for t in ("a quiet harbour at dawn", "a red fox", ""))
    regions = run_node(JointAttentionRegion, region, torch.ones(1, 8, 8), 1.0)[0]
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    got = sample(model, base, neg, **KW)
    want = sample(patcher(tiny), prompt_alone(region, base), neg, **KW)
    assert (want - sample(patcher(tiny), base, neg, **KW)).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_reference_forward_is_the_host_forward_without_regions():
    """ja_reference_hidream lays out every text itself; without regions it must be the host's own forward."""
    from ja_reference_model import ReferenceConfig, install_reference

    tiny = build("hidream")
    base = patcher(tiny)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(KW, cfg=2.5)
    torch.testing.assert_close(sample(reference, pos, neg, **kw), sample(base, pos, neg, **kw), atol=1e-5, rtol=1e-5)


def test_a_region_without_llama_states_is_refused_by_name():
    tiny = build("hidream")
    cond = make_cond(tiny, seed=5)
    bare = [[cond[0][0], {k: v for k, v in cond[0][1].items() if k != "conditioning_llama3"}]]
    regions = run_node(JointAttentionRegion, bare, torch.ones(1, 8, 8), 1.0)[0]
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'regions': region 1's prompt has no "
                                         r"Llama states .*HiDream's text encoder"):
        run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                 "background")


def test_an_edit_image_is_refused_by_name():
    """HiDream E1's edit image (image_cond) sits beside the image inside every token row: refused with the reason."""
    from ja_tiny import with_options
    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    tiny = build("hidream")
    model = run_node(JointAttentionTACA, patcher(tiny), 1.5, 0.0, "both", "all", "all")[0]
    edit = torch.zeros(1, 16, 8, 12)
    pos = with_options(make_cond(tiny, seed=1), concat_latent_image=edit)
    with pytest.raises(ValueError, match=r"input 'model': the conditioning carries an edit image for HiDream "
                                         r"\(image_cond"):
        sample(model, pos, make_cond(tiny, seed=2), **KW)


def test_the_wrapped_block_lists_hold_the_model_blocks_and_numbers():
    """The clone's object patches wrap the very block modules; the singles are numbered after the doubles."""
    from joint_attention_pack.families.hidream import HookedBlocks
    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    tiny = build("hidream")
    model = run_node(JointAttentionTACA, patcher(tiny), 1.5, 0.0, "both", "all", "all")[0]
    dm = tiny.patcher.model.diffusion_model
    for name, offset in (("double_stream_blocks", 0), ("single_stream_blocks", tiny.n_double)):
        wrapped = model.object_patches[f"diffusion_model.{name}"]
        assert isinstance(wrapped, HookedBlocks) and wrapped.offset == offset
        assert all(a is b for a, b in zip(torch.nn.ModuleList.__iter__(wrapped), getattr(dm, name), strict=True))
        assert [h.ref.number for h in wrapped] == [offset + i for i in range(len(wrapped))]


def test_hidream_o1_is_refused_by_name_with_the_reason():
    """HiDream-O1 (0.33): its text prefix attends outside the attention override; every node stops with why."""
    import comfy.model_base

    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    o1 = getattr(comfy.model_base, "HiDreamO1", None)
    if o1 is None:
        pytest.skip("this host has no HiDreamO1")
    model = patcher(build("hidream")).clone()
    original = model.model.__class__
    model.model.__class__ = o1  # a tiny model seen as HiDream-O1: the refusal goes by class name
    try:
        with pytest.raises(ValueError, match=r"\[TACA \(text attention temperature\)\] input 'model': 'HiDreamO1' "
                                             r"\(HiDream-O1-Image\) is not supported by this pack: its prompt is the "
                                             r"causal prefix .*outside ComfyUI's attention override"):
            run_node(JointAttentionTACA, model, 1.2, 0.97, "both", "all", "none")
    finally:
        model.model.__class__ = original


def test_word_labels_come_from_the_hosts_t5_tokenizer_and_name_the_t5_part():
    """Labels name the T5 positions (the context's first 128 rows, from the host's T5 tokenizer); the Llama
    positions after them in the text stream carry no word."""
    from joint_attention_pack.integration.labels import context_tokens, words_of

    clip = tiny_hidream_clip()
    prompt = "a red fox sitting on snow"
    cond = _encode(clip, prompt)
    n_t5, n_llama = cond[0][0].shape[1], cond[0][1]["conditioning_llama3"].shape[2]
    labelled = context_tokens(clip, prompt, n_t5 + 2 * n_llama, "hidream")
    assert [p for p, _, _ in labelled] == list(range(n_t5))
    offered = words_of(labelled)
    assert [w for w, _ in offered] == ["a", "red", "fox", "sitting", "on", "snow"]
    ids = [t[0] for t in clip.tokenizer.tokenize_with_weights(prompt)["t5xxl"][0]]
    hf = clip.tokenizer.t5xxl.tokenizer
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text
