"""Issue 30: Krea 2 (`Krea2`, 0.33 on), on the tiny model the host's own detection builds.

The family scenarios (regions in every mode, TACA, text scale, maps, the identities, reference images with the
index_timestep_zero method, runs the pack leaves alone) run Krea 2 as an entry of the test family list (ja_families),
against the test-only reference forward (ja_reference_krea2), which fuses each text alone. Here: what only Krea 2 has.
- The reference forward is the host's forward when there are no regions (so it checks the pack, not itself).
- Each region text goes through the model's text adapter (`txtfusion`, whose refiner attends across the text) alone:
  the stream's text rows are those each text has as the prompt (up to the text MLP's float rounding over more rows);
  the prompt's rows are those it has without regions, the image's bit for bit.
- The block list and the text adapter are wrapped through object patches on the pack's clone only: the plain model
  is untouched, before and after, and the weights keep their names.
- Word labels follow the context the host's Krea 2 encoder makes (its template cut, Qwen-Image's rule).
Hosts without the model skip every test here ("this host has no Krea2").
"""
from types import SimpleNamespace

import pytest
import torch

from ja_families import BY_NAME
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample, with_options
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

ENTRY = BY_NAME["krea2"]
pytestmark = pytest.mark.skipif(not ENTRY.on_this_host(), reason="this host has no Krea2")

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
WRAPPED = ("blocks", "txtfusion")


def _regional(base, regions, image_attention="restricted", base_ratio=0.0):
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 1.0, "all", "none", image_attention,
                    "background")[0]


@pytest.mark.parametrize("method", [None, "index_timestep_zero"])
def test_the_reference_forward_is_the_hosts_forward_without_regions(method):
    """The test-only reference forward calls the model's modules in the host's order: without regions it samples
    what the host samples (up to its float64 attention), reference latents included."""
    tiny = build("krea2")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    if method:
        options = {"reference_latents": [ENTRY.reference_latent(tiny, 4, 6)], "reference_latents_method": method}
        pos, neg = with_options(pos, **options), with_options(neg, **options)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    got, want = sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    if method:
        assert (want - sample(base, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **KW)).abs().max() > 1e-3


def _stream_into_block0(model, dm, pos, neg, **kw):
    """The stream the first block got, per forward."""
    seen = []

    def hook(module, args, kwargs):
        seen.append(args[0].detach().clone())

    handle = dm.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sample(model, pos, neg, **kw)
    finally:
        handle.remove()
    return seen


def test_region_texts_are_fused_alone_and_prompt_and_image_keep_their_rows():
    tiny = build("krea2")
    base = patcher(tiny)
    dm = base.model.diffusion_model
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])
    n_txt = 7
    pos, neg = make_cond(tiny, seed=1, n_tokens=n_txt), make_cond(tiny, seed=2, n_tokens=n_txt)
    kw = dict(KW, steps=1, cfg=1.0)
    (x,), (x0,) = _stream_into_block0(_regional(base, regions), dm, pos, neg, **kw), \
        _stream_into_block0(base, dm, pos, neg, **kw)
    lens = [c.shape[0] for c in conds]
    n_img = (HEIGHT // 16) * (WIDTH // 16)
    assert x.shape[1] == n_txt + sum(lens) + n_img and x0.shape[1] == n_txt + n_img
    # The text adapter runs on each text alone; the text MLP after it runs over all rows at once, which may round
    # the last bit differently (~1e-7 here).
    torch.testing.assert_close(x[:, :n_txt], x0[:, :n_txt], atol=1e-6, rtol=1e-6)  # the prompt, fused alone
    assert torch.equal(x[:, n_txt + sum(lens):], x0[:, n_txt:])  # the image
    start = n_txt
    for cond, length in zip(conds, lens):
        (alone,) = _stream_into_block0(base, dm, [[cond[None], dict(pos[0][1])]], neg, **kw)
        torch.testing.assert_close(x[:, start:start + length], alone[:, :length], atol=1e-6, rtol=1e-6)
        start += length


def test_the_plain_model_is_untouched_by_the_wrapped_blocks_and_text_adapter():
    """Runs the pack leaves alone (gamma 1, text scale 1, a window no step falls in): test_identities."""
    from joint_attention_pack.families.krea2 import FusedAlone, HookedBlocks

    tiny = build("krea2")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    regions, _ = regions_for(tiny, cell_masks(True)[0], [1.0, 1.5])
    regional = _regional(base, regions, base_ratio=0.2)
    assert isinstance(regional.object_patches["diffusion_model.blocks"], HookedBlocks)
    assert isinstance(regional.object_patches["diffusion_model.txtfusion"], FusedAlone)
    assert not base.object_patches
    assert (sample(regional, pos, neg, **KW) - plain).abs().max() > 1e-3
    assert torch.equal(sample(base, pos, neg, **KW), plain)
    dm = base.model.diffusion_model  # loading the plain model took the pack's clone off it, object patches too
    assert type(dm.blocks) is torch.nn.ModuleList and not isinstance(dm.txtfusion, FusedAlone)
    captured, handle = run_node(JointAttentionCapture, base, "all", "none", 0.0, 1.0)
    torch.testing.assert_close(sample(captured, pos, neg, **KW), plain, atol=1e-5, rtol=1e-5)
    assert handle.take() is not None
    # The weights keep their names under the wrapped modules (LoRA keys, offloading), while patched too.
    names = set(dict(base.model.named_parameters()))
    assert set(dict(regional.model.named_parameters())) == names
    fused = FusedAlone(dm.txtfusion, None)
    assert dict(fused.named_parameters()) == dict(dm.txtfusion.named_parameters())


def test_concept_attention_is_refused_by_name():
    tiny = build("krea2")
    with pytest.raises(ValueError, match=r"\[Attention Capture\] input 'concepts': ConceptAttention is not "
                                         r"available for krea2 models \(Krea 2\): .*one single joint stream"):
        run_node(JointAttentionCapture, patcher(tiny), "all", "none", 0.0, 1.0, "cat, dog")


def _krea2_clip():
    import comfy.text_encoders.krea2

    return SimpleNamespace(tokenizer=comfy.text_encoders.krea2.Krea2Tokenizer())


def _encoder_context_start(tokens):
    """Where ComfyUI's Krea 2 encoder starts the context (Krea2TEModel.encode_token_weights), by running its own
    method on the token list with a stand-in for the base class's encoder output ([B, layers, tokens, features])."""
    import comfy.sd1_clip
    import comfy.text_encoders.krea2

    n = len(tokens["qwen3vl_4b"][0])
    model = comfy.text_encoders.krea2.Krea2TEModel.__new__(comfy.text_encoders.krea2.Krea2TEModel)
    original = comfy.sd1_clip.SD1ClipModel.encode_token_weights
    try:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = lambda self, pairs: (
            torch.arange(n, dtype=torch.float32).view(1, 1, n, 1), None, {})
        out, _, _ = model.encode_token_weights(tokens)
    finally:
        comfy.sd1_clip.SD1ClipModel.encode_token_weights = original
    return int(out[0, 0, 0]), n


@pytest.mark.parametrize("prompt,words", [
    ("a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
    ("Neon sign reading OPEN\nover a door", ["Neon", "sign", "reading", "OPEN", "over", "a", "door"]),
])
def test_labels_follow_the_encoders_context_and_offer_no_template_tokens(prompt, words):
    """The host's Krea 2 tokenizer (Qwen3-VL files shipped with the host) and its encoder's cut: the context starts
    at the user's text and ends with the closing template, which is never a word."""
    from joint_attention_pack.integration.labels import context_tokens, words_of

    clip = _krea2_clip()
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    start, n = _encoder_context_start(tokens)
    n_txt = n - start
    labelled = context_tokens(clip, prompt, n_txt, "krea2")
    assert [p for p, _, _ in labelled] == list(range(n_txt))
    ids = [t[0] for t in tokens["qwen3vl_4b"][0]][start:]
    hf = clip.tokenizer.qwen3vl_4b.tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text
    template = {hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant")}
    assert all(word == 0 for position, _, word in labelled if ids[position] in template)
    assert labelled[-1][2] == 0 and "<|im_end|>" in [t for _, t, _ in labelled[-6:]]


def test_a_krea2_variant_with_another_diffusion_model_is_refused_by_name():
    tiny = build("krea2")
    dm = patcher(tiny).model.diffusion_model
    dm.__class__ = type("SingleStreamDiTVariant", (type(dm),), {})
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': expected a SingleStreamDiT "
                                         r"diffusion model .*got 'SingleStreamDiTVariant'.*Krea 2"):
        _regional(patcher(tiny), regions)
