"""Issue 6 (ConceptAttention): bit-identical sampling, saliency against a test-side reference."""
import comfy.patcher_extension
import pytest
import torch

from ja_tiny import build, sample, tiny_clip
from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps

KW = dict(seed=0, steps=3, cfg=2.5, width=96, height=64)
CONCEPTS = ["cat", "grass", "sky"]


def reference_saliency(tiny, clip, pos, neg, blocks):
    """The definition, written here on its own hooks: concept tokens (each word encoded alone, first real
    token, through the text input layer) are carried through the double blocks with the text-stream
    weights by running each block again with txt := concepts; concept queries see [concepts ; image];
    saliency = softmax over concepts of o_concept . o_image (attention outputs before the projection)."""
    base = tiny.patcher
    dm = base.model.diffusion_model
    embed = getattr(dm, "txt_in", None) or dm.context_embedder
    words = torch.stack([clip.encode_from_tokens_scheduled(clip.tokenize(w))[0][0][0, 1] for w in CONCEPTS])
    m = base.clone()
    acc = {"sum": torch.zeros(len(CONCEPTS), 0, dtype=torch.float64), "n": 0}
    forward = {}

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        chunks = transformer_options.get("cond_or_uncond", [0])
        per = x.shape[0] // len(chunks)
        forward.update(cond=[i for i, c in enumerate(c for c in chunks for _ in range(per)) if c == 0],
                       n_txt=c_crossattn.shape[1], residual=None)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "ref", wrapper)

    def make_patch(index):
        def patch(args, extra):
            cond = torch.tensor(forward["cond"])
            inputs = {k: v for k, v in args.items() if k not in ("transformer_options", "txt")}
            for k in ("img", "vec"):  # copied now: the block may update img in place
                inputs[k] = args[k].index_select(0, cond).clone()
            if args.get("pe") is not None:
                inputs["pe"] = args["pe"].index_select(0, cond) if args["pe"].shape[0] > 1 else args["pe"]
            seen = {}
            opts = dict(args["transformer_options"], ref_record=seen, ref_role="main")
            out = extra["original_block"]({**args, "transformer_options": opts})
            if index == 0:
                forward["residual"] = embed(words.to(next(embed.parameters()).dtype))[None].expand(len(cond), -1, -1)
            n_c = len(CONCEPTS)
            side = dict(inputs, txt=forward["residual"])
            if side.get("pe") is not None:
                pe = side["pe"]
                side["pe"] = torch.cat([pe[:, :, :1].expand(*pe.shape[:2], n_c, *pe.shape[3:]), pe[:, :, forward["n_txt"]:]], 2)
            side_seen = {}
            side["transformer_options"] = dict(args["transformer_options"], ref_record=side_seen, ref_role="side")
            side_out = extra["original_block"](side)
            forward["residual"] = side_out["txt"]
            if index in blocks:
                n_img = side_seen["out"].shape[1] - n_c
                o_c = side_seen["out"][:, :n_c].double()
                o_i = seen["out"][cond, forward["n_txt"]:forward["n_txt"] + n_img].double()
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
    latent = sample(m, pos, neg, **KW)
    return (acc["sum"] / acc["n"]).float(), latent


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_concepts_leave_the_image_bit_identical_and_match_the_reference(family):
    tiny = build(family)
    clip = tiny_clip()
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a cat on the grass under the sky"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    plain = sample(tiny.patcher, pos, neg, **KW)
    single = "all" if tiny.n_single else "none"
    model, handle = JointAttentionCapture().apply(tiny.patcher, "all", single, 0.0, 1.0, ", ".join(CONCEPTS), clip)
    got = sample(model, pos, neg, **KW)
    assert torch.equal(got, plain)
    result = handle.result
    last4 = set(range(max(0, tiny.n_double - 4), tiny.n_double))
    want, ref_latent = reference_saliency(tiny, clip, pos, neg, last4)
    assert torch.equal(ref_latent, plain)
    assert result["concept_blocks"] == sorted(last4)
    torch.testing.assert_close(result["concept_maps"], want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(result["concept_maps"].sum(0), torch.ones(result["concept_maps"].shape[1]), atol=1e-5)
    heat, masks, info = JointAttentionMaps().render(handle, {"samples": got}, "", "")["result"]
    assert heat.shape[0] == 3 and "concepts: ['cat', 'grass', 'sky']" in info


def test_concepts_need_the_text_encoder():
    tiny = build("flux")
    with pytest.raises(ValueError, match=r"\[JointAttentionCapture\] input 'clip'"):
        JointAttentionCapture().apply(tiny.patcher, "all", "all", 0.0, 1.0, "cat, dog")
