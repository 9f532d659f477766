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


CONCEPTS = ["cat", "grass", "sky"]


def _concept_reference(tiny, clip, pos, neg, blocks, kw, zero_pooled_concepts=True):
    """ConceptAttention on HiDream by its definition, on the test's own hooks (torch forward hooks on the double
    blocks; HiDream has no block patches): each concept word encoded alone by HiDream's encoder is laid out as HiDream
    lays out a prompt of that word, cut to the word's first token in each part: [T5 ; Llama last layer] carried from
    block to block with the text-stream weights, and the block's own Llama layer beside it in each double block,
    projected afresh and dropped after it. Concept queries attend [image ; concepts] (image keys from the prompt's
    modulation; every text position is 0); the concept stream is modulated with the pooled term zeroed
    (t_embedder + p_embedder(0)), as ConceptAttention's released code does. Saliency: softmax over concepts of
    o_concept . o_image (attention outputs before the projection), o_concept from the concepts' T5 rows."""
    import comfy.patcher_extension

    base = patcher(tiny)
    dm = base.model.diffusion_model
    encoded = [clip.encode_from_tokens_scheduled(clip.tokenize(w))[0] for w in CONCEPTS]
    for w in CONCEPTS:  # T5 has no start token; Llama starts with <|begin_of_text|>: the word's first tokens
        tokens = clip.tokenizer.tokenize_with_weights(w, return_word_ids=True)
        assert tokens["t5xxl"][0][0][2] == 1 and tokens["llama"][0][0][2] == 0 and tokens["llama"][0][1][2] == 1
    t5 = torch.stack([c[0][0, 0] for c in encoded])
    llama = torch.stack([c[1]["conditioning_llama3"][0, :, 1] for c in encoded])  # [n, Llama layers, C]
    n = len(CONCEPTS)
    proj = dm.caption_projection

    def llama_part(i):  # the concepts' Llama layer of block i, projected
        return proj[i](llama[:, dm.llama_layers[i]])

    start = torch.cat([proj[-1](t5), llama_part(len(dm.llama_layers) - 1)])
    forward, acc = {}, {"sum": None, "n": 0}
    m = base.clone()

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        chunks = transformer_options.get("cond_or_uncond", [0])
        per = x.shape[0] // len(chunks)
        forward.clear()
        forward["cond"] = torch.tensor([i for i, c in enumerate(c for c in chunks for _ in range(per)) if c == 0])
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "ref", wrapper)
    hooks = [dm.t_embedder.register_forward_hook(lambda mod, args, out: forward.update(t=out)),
             # the forward's own pooled input (the reference's p_embedder(0) below must not replace it)
             dm.p_embedder.register_forward_hook(lambda mod, args, out: None if "y" in forward else
                                                forward.update(y=args[0]))]

    def override(func, *args, **kwargs):
        out = func(*args, **kwargs)
        forward["side_out" if forward.get("in_side") else "main_out"] = out
        return out

    m.model_options["transformer_options"]["optimized_attention_override"] = override

    def block_hook(index):
        def hook(module, args, kwargs, output):
            if forward.get("in_side") or 0 not in forward.get("chunks", [0]):
                return None
            cond = forward["cond"]
            if index == 0:
                forward["stream"] = start[None].repeat(len(cond), 1, 1)
            img = kwargs["image_tokens"].index_select(0, cond)
            n_img = img.shape[1]
            text = torch.cat([forward["stream"], llama_part(index)[None].expand(len(cond), -1, -1)], dim=1)
            rope = kwargs["rope"].index_select(0, cond)
            text_rope = dm.pe_embedder(torch.zeros(len(cond), text.shape[1], 3))  # every text position is 0
            adaln = kwargs["adaln_input"].index_select(0, cond)
            y = forward["y"].index_select(0, cond)
            assert y.abs().max() > 1  # the prompt has a strong pooled vector
            zero_pooled = forward["t"].index_select(0, cond) + dm.p_embedder(torch.zeros_like(y))
            modulation = module.block.adaLN_modulation
            own = type(modulation).forward
            width = 6 * img.shape[-1]  # 12 chunks: the image's 6, then the text's 6
            if not zero_pooled_concepts:  # the prompt's own vector on the concepts, for the test to tell apart
                zero_pooled = adaln
            modulation.forward = lambda vec: torch.cat([own(modulation, vec)[..., :width],
                                                        own(modulation, zero_pooled)[..., width:]], dim=-1)
            forward["in_side"] = True
            try:
                _, side_text = module(image_tokens=img, image_tokens_masks=None, text_tokens=text, adaln_input=adaln,
                                      rope=torch.cat([rope[:, :n_img], text_rope], dim=1),
                                      transformer_options=kwargs["transformer_options"])
            finally:
                forward["in_side"] = False
                modulation.__dict__.pop("forward", None)
            forward["stream"] = side_text[:, :start.shape[0]]
            if index in blocks:
                o_c = forward["side_out"][:, n_img:n_img + n].double()  # the concepts' T5 rows
                o_i = forward["main_out"].index_select(0, cond)[:, :n_img].double()
                s = torch.softmax(torch.einsum("bcd,bnd->bcn", o_c, o_i), dim=1).mean(0)
                acc["sum"] = s if acc["sum"] is None else acc["sum"] + s
                acc["n"] += 1
            return None
        return hook

    hooks += [block.register_forward_hook(block_hook(i), with_kwargs=True)
              for i, block in enumerate(torch.nn.ModuleList.__iter__(dm.double_stream_blocks))]
    try:
        latent = sample(m, pos, neg, **kw)
    finally:
        for h in hooks:
            h.remove()
    return (acc["sum"] / acc["n"]).float(), latent


def test_concepts_leave_the_image_bit_identical_and_match_the_reference():
    """ConceptAttention on HiDream: the image is the host's bit for bit, the concept maps are the definition's
    (`_concept_reference`), and they differ from the maps of concepts modulated with the prompt's pooled vector."""
    from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps

    tiny = build("hidream")
    clip = tiny_hidream_clip()
    # HiDream's encoder without CLIP gives a zero pooled vector: a random one, so that zeroing it tells apart (the
    # pack adds p_embedder(0) - p_embedder(y) to the blocks' vector; at 50x, as the FLUX test, that sum's fp32
    # rounding alone moves the maps by 1e-4 on the tiny model's large pooled term).
    pooled = torch.randn(1, tiny.pooled_dim, generator=torch.Generator().manual_seed(3)) * 3
    pos = [[t, {**o, "pooled_output": pooled}] for t, o in _encode(clip, "a cat on the grass under the sky")]
    neg = _encode(clip, "")
    kw = dict(KW, steps=3, cfg=2.5)
    plain = sample(patcher(tiny), pos, neg, **kw)
    model, handle = run_node(JointAttentionCapture, patcher(tiny), "all", "all", 0.0, 1.0, ", ".join(CONCEPTS), clip)
    got = sample(model, pos, neg, **kw)
    assert torch.equal(got, plain)
    blocks = set(range(max(0, tiny.n_double - 4), tiny.n_double))
    want, ref_latent = _concept_reference(tiny, clip, pos, neg, blocks, kw)
    assert torch.equal(ref_latent, plain)
    assert handle.result["concept_blocks"] == sorted(blocks)
    torch.testing.assert_close(handle.result["concept_maps"], want, atol=2e-6, rtol=0)
    with_prompt_vec, _ = _concept_reference(tiny, clip, pos, neg, blocks, kw, zero_pooled_concepts=False)
    assert (with_prompt_vec - want).abs().max() > 40 * 2e-6
    heat, _, info = run_node(JointAttentionMaps, handle, {"samples": got}, "", "").args
    assert heat.shape[0] == 3 and "concepts: ['cat', 'grass', 'sky']" in info
