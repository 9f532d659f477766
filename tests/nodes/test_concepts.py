"""Issue 6 (ConceptAttention): bit-identical sampling, saliency against a test-side reference."""
import comfy.patcher_extension
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_tiny import build, sample, tiny_clip
from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps

KW = dict(seed=0, steps=3, cfg=2.5, width=96, height=64)
CONCEPTS = ["cat", "grass", "sky"]
POOLED_SCALE = 50.0
ATOL = 2e-6  # the tiny models' maps are near 1/3 everywhere: the definitions differ by 1e-4 (FLUX) to 1e-3 (SD3)


def reference_saliency(tiny, clip, pos, neg, blocks, concept_vec="zero", batch=1):
    """The definition, written here on its own hooks: concept tokens (each word encoded alone, first real
    token, through the text input layer) are carried through the double blocks with the text-stream
    weights by running each block again with txt := concepts; concept queries see [concepts ; image];
    saliency = softmax over concepts of o_concept . o_image (attention outputs before the projection).

    Modulation (ConceptAttention's released code): the concept stream is modulated with the blocks' vector
    built with a zero pooled text vector (FLUX: time_in + guidance_in + vector_in(0); SD3: t_embedder +
    y_embedder(0)); the image half of the concept pass keeps the prompt's vector. Here that is done by
    pointing the block's text-stream modulation layer at the zero-pooled vector during the concept pass.
    concept_vec="prompt" leaves the prompt's vector everywhere (the pack's former definition)."""
    base = tiny.patcher
    dm = base.model.diffusion_model
    qwen = hasattr(dm, "transformer_blocks")  # Qwen-Image: no pooled vector
    # Lens: the same, with a norm per encoder layer, and its joint calls ordered [image ; text]
    lens = type(base.model).__name__ == "Lens"
    # JoyImage: no pooled vector either, text through its projection, joint calls [image ; references ; text], rope on
    # image tokens only
    joy = type(base.model).__name__ == "JoyImage"
    # AuraFlow: no pooled vector; its text stream is [8 register tokens ; text], and a concept pass's text is
    # [registers ; concepts], as the model lays out a prompt
    aura = type(base.model).__name__ == "AuraFlow"
    prefix = dm.register_tokens[0] if aura else None
    if lens:
        embed = _LensText(dm)
    elif joy:
        embed = dm.condition_embedder.text_embedder
    elif aura:
        embed = dm.cond_seq_linear
    else:
        embed = getattr(dm, "txt_in", None) or dm.context_embedder
        if getattr(dm, "txt_norm", None) is not None:  # the model's text stream starts as txt_in(txt_norm(features))
            embed = torch.nn.Sequential(dm.txt_norm, embed)
    qwen = qwen or joy or aura  # from here: the families without a pooled vector
    words = torch.stack([clip.encode_from_tokens_scheduled(clip.tokenize(w))[0][0][0, _first_word(clip, w)]
                         for w in CONCEPTS])
    m = base.clone()
    acc = {"sum": torch.zeros(len(CONCEPTS), 0, dtype=torch.float64), "n": 0}
    forward = {}
    # The vector's terms as this forward computed them: timestep (+ guidance) embedding, and the pooled layer.
    flux = hasattr(dm, "double_blocks")
    hooks = []
    if not qwen:
        pooled_layer = dm.vector_in if flux else dm.y_embedder
        terms = [dm.time_in, dm.guidance_in] if flux else [dm.t_embedder]
        hooks = [layer.register_forward_hook(lambda mod, args, out: forward["terms"].append(out)) for layer in terms]
        hooks.append(pooled_layer.register_forward_hook(lambda mod, args, out: None if "y" in forward else
                                                        forward.update(y=args[0])))

    def zero_pooled_vec():
        if "zero_vec" not in forward:  # once per forward (the pooled layer's hook keeps the forward's own input)
            vec = forward["terms"][0]
            for term in forward["terms"][1:]:
                vec = vec + term
            forward["zero_vec"] = vec + pooled_layer(torch.zeros_like(forward["y"]))
        return forward["zero_vec"]

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        chunks = transformer_options.get("cond_or_uncond", [0])
        per = x.shape[0] // len(chunks)
        forward.update(cond=[i for i, c in enumerate(c for c in chunks for _ in range(per)) if c == 0],
                       n_txt=c_crossattn.shape[1], residual=None, terms=[])
        forward.pop("y", None)
        forward.pop("zero_vec", None)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "ref", wrapper)

    def make_patch(index):
        def patch(args, extra):
            cond = torch.tensor(forward["cond"])
            inputs = {k: v for k, v in args.items() if k not in ("transformer_options", "txt")}
            for k in ("img", "vec"):  # copied now: the block may update img in place
                rows = cond
                if k == "vec" and args[k].shape[0] == 2 * args["img"].shape[0]:  # [every row ; at timestep 0]
                    rows = torch.cat([cond, cond + args["img"].shape[0]])
                inputs[k] = args[k].index_select(0, rows).clone()
            if args.get("pe") is not None:
                inputs["pe"] = args["pe"].index_select(0, cond) if args["pe"].shape[0] > 1 else args["pe"]
            seen = {}
            opts = dict(args["transformer_options"], ref_record=seen, ref_role="main")
            out = extra["original_block"]({**args, "transformer_options": opts})
            if index == 0:
                start = embed(words.to(next(embed.parameters()).dtype))
                if prefix is not None:
                    start = torch.cat([prefix, start])
                forward["residual"] = start[None].repeat(len(cond), 1, 1)
            n_c = len(CONCEPTS)
            side = dict(inputs, txt=forward["residual"])
            if side.get("pe") is not None and lens:  # the image's rows, then the concepts at the first text row
                pe = side["pe"]
                n_vis = pe.shape[2] - forward["n_txt"]
                side["pe"] = torch.cat([pe[:, :, :n_vis], pe[:, :, n_vis:n_vis + 1].expand(*pe.shape[:2], n_c,
                                                                                         *pe.shape[3:])], 2)
                side["attn_mask"] = None  # the concepts are not padded
            elif side.get("pe") is not None and not joy:
                pe = side["pe"]
                side["pe"] = torch.cat([pe[:, :, :1].expand(*pe.shape[:2], n_c, *pe.shape[3:]), pe[:, :, forward["n_txt"]:]], 2)
            side_seen = {}
            side["transformer_options"] = dict(args["transformer_options"], ref_record=side_seen, ref_role="side")
            if qwen:
                block = text_mod = None
            else:
                block = dm.double_blocks[index] if flux else dm.joint_blocks[index]
                text_mod = block.txt_mod if flux else block.context_block.adaLN_modulation
            if concept_vec == "zero" and not qwen:
                assert forward["y"].index_select(0, cond).abs().max() > 1  # the prompt has a strong pooled vector
                zero_vec = zero_pooled_vec().index_select(0, cond)
                own = type(text_mod).forward
                text_mod.forward = lambda vec: own(text_mod, zero_vec)  # the concept half only
            try:
                side_out = extra["original_block"](side)
            finally:
                if text_mod is not None:
                    text_mod.__dict__.pop("forward", None)
            forward["residual"] = side_out["txt"]
            if index in blocks:
                n_img = (KW["height"] // 16) * (KW["width"] // 16)  # image tokens only (Edit's reference tokens follow)
                if lens or joy:  # the image first (Lens: a token per latent cell, 1/8 of the image here)
                    n_img = (KW["height"] // 8) * (KW["width"] // 8) if lens else n_img
                    o_c = side_seen["out"][:, -n_c:].double()
                    o_i = seen["out"][cond, :n_img].double()
                else:
                    lead = 0 if prefix is None else prefix.shape[0]  # AuraFlow: the registers, then the concepts
                    o_c = side_seen["out"][:, lead:lead + n_c].double()
                    n_text = forward["n_txt"] + lead
                    o_i = seen["out"][cond, n_text:n_text + n_img].double()
                s = torch.softmax(torch.einsum("bcd,bnd->bcn", o_c, o_i), dim=1).mean(0)
                acc["sum"] = s if acc["n"] == 0 else acc["sum"] + s
                acc["n"] += 1
            return out
        return patch

    for i in range(tiny.n_double):
        m.set_model_patch_replace(make_patch(i), "dit", "double_block", i)

    def override(func, *args, **kwargs):
        out = func(*args, **kwargs)
        record = kwargs["transformer_options"].get("ref_record")
        if record is not None and "out" not in record:
            record["out"] = out
        return out

    m.model_options["transformer_options"]["optimized_attention_override"] = override
    try:
        latent = sample(m, pos, neg, batch=batch, **KW)
    finally:
        for hook in hooks:
            hook.remove()
    return (acc["sum"] / acc["n"]).float(), latent


@pytest.mark.parametrize("method,batch", [(None, 1), ("index_timestep_zero", 1), ("index_timestep_zero", 2)])
def test_concepts_on_qwen_image_edit_match_the_reference(method, batch):
    """Qwen-Image-Edit: the reference image's tokens follow the image in the concept pass too; with 0.29's
    `index_timestep_zero` the blocks' vector is doubled ([rows ; rows at timestep 0]) and the concept pass keeps
    both halves of its cond rows. (A host that does not know the method treats it as its offset method.)

    Every row of one forward has the same timestep in ComfyUI's samplers, so with one cond row the doubled
    vector's wrong rows equal the right ones and broadcast: only two cond rows (batch 2) tell them apart, where
    the whole doubled vector (4 rows per half) meets a concept stream of 2 rows."""
    tiny = build("qwen_image")
    clip = tiny_clip()
    ref = torch.randn(1, tiny.latent_channels, 1, 4, 6, generator=torch.Generator().manual_seed(5))
    extra = {"reference_latents": [ref]}
    if method:
        extra["reference_latents_method"] = method
    pos = [[t, {**o, **extra}] for t, o in prompt(clip, "a cat on the grass under the sky")]
    neg = [[t, {**o, **extra}] for t, o in prompt(clip, "")]
    plain = sample(tiny.patcher, pos, neg, batch=batch, **KW)
    model, handle = run_node(JointAttentionCapture, tiny.patcher, "all", "none", 0.0, 1.0, ", ".join(CONCEPTS), clip)
    assert torch.equal(sample(model, pos, neg, batch=batch, **KW), plain)
    last4 = set(range(max(0, tiny.n_double - 4), tiny.n_double))
    want, ref_latent = reference_saliency(tiny, clip, pos, neg, last4, batch=batch)
    assert torch.equal(ref_latent, plain)
    torch.testing.assert_close(handle.result["concept_maps"], want, atol=ATOL, rtol=0)


def _first_word(clip, word):
    """The position of the word's first real token in its encoding (CLIP: after the start token; T5: 0)."""
    (chunk,) = clip.tokenizer.tokenize_with_weights(word, return_word_ids=True).values()
    return next(i for i, token in enumerate(chunk[0]) if token[2] > 0)


class _LensText(torch.nn.Module):
    """Lens's text input: each encoder layer's features through its own norm, then txt_in."""

    def __init__(self, dm):
        super().__init__()
        self.norms, self.txt_in = dm.txt_norm, dm.txt_in

    def forward(self, x):
        parts = x.chunk(len(self.norms), dim=-1)
        return self.txt_in(torch.cat([norm(part) for norm, part in zip(self.norms, parts)], dim=-1))


def prompt(clip, text, pooled_scale=1.0):
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    # AuraFlow's encoder gives no pooled vector (None)
    return [[tokens, {**extra, "pooled_output": None if extra["pooled_output"] is None else
                      extra["pooled_output"] * pooled_scale}] for tokens, extra in cond]


@pytest.mark.parametrize("family,batch", family_params("concepts_reference", {"batch1": 1, "batch2": 2}))
def test_concepts_leave_the_image_bit_identical_and_match_the_reference(family, batch):
    tiny = family.build()
    clip = family.encoder()
    # A strong pooled vector, so that modulating the concepts with it or without it tells apart clearly.
    pos = prompt(clip, "a cat on the grass under the sky", pooled_scale=POOLED_SCALE)
    neg = prompt(clip, "")
    assert not family.pooled_text or pos[0][1]["pooled_output"].abs().max() > 1
    plain = sample(tiny.patcher, pos, neg, batch=batch, **KW)
    single = "all" if tiny.n_single else "none"
    model, handle = run_node(JointAttentionCapture, tiny.patcher, "all", single, 0.0, 1.0, ", ".join(CONCEPTS), clip)
    got = sample(model, pos, neg, batch=batch, **KW)
    assert torch.equal(got, plain)
    result = handle.result
    last4 = set(range(max(0, tiny.n_double - 4), tiny.n_double))
    want, ref_latent = reference_saliency(tiny, clip, pos, neg, last4, batch=batch)
    assert torch.equal(ref_latent, plain)
    assert result["concept_blocks"] == sorted(last4)
    torch.testing.assert_close(result["concept_maps"], want, atol=ATOL, rtol=0)
    if family.pooled_text:  # Qwen-Image has no pooled text vector: its blocks' vector is the timestep's alone
        # The definition is pinned: the prompt's own vector on the concepts (the former definition) is far off.
        with_prompt_vec, _ = reference_saliency(tiny, clip, pos, neg, last4, concept_vec="prompt", batch=batch)
        assert (with_prompt_vec - want).abs().max() > 20 * ATOL
    assert torch.allclose(result["concept_maps"].sum(0), torch.ones(result["concept_maps"].shape[1]), atol=1e-5)
    heat, masks, info = run_node(JointAttentionMaps, handle, {"samples": got}, "", "").args
    assert heat.shape[0] == 3 and "concepts: ['cat', 'grass', 'sky']" in info


def test_concepts_need_the_text_encoder():
    tiny = build("flux")
    with pytest.raises(ValueError, match=r"\[Attention Capture\] input 'clip'"):
        run_node(JointAttentionCapture, tiny.patcher, "all", "all", 0.0, 1.0, "cat, dog")
