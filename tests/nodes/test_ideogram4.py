"""Issue 30: Ideogram 4 (`Ideogram4`, 0.33 on), on the tiny model the host's own detection picks (sizes shrunk after).

The family scenarios (regions in every mode, TACA, text scale, maps, the identities, runs the pack leaves alone) run
Ideogram 4 as an entry of the test family list (ja_families), against the test-only reference forward
(ja_reference_ideogram4), which numbers each text from 0 as the model numbers a prompt alone. Here: what only
Ideogram 4 has.
- The reference forward is the host's forward when there are no regions (so it checks the pack, not itself).
- Text positions count along the whole context on all three rope axes: each region text gets the rope rows of
  positions 0..T_r-1; the prompt and the image keep the host's rows, bit for bit.
- The layer list is wrapped through an object patch on the pack's clone only: the plain model is untouched.
- Word labels follow the host's Ideogram 4 tokenizer, whose encoder keeps the whole user turn.
Hosts without the model skip every test here ("this host has no Ideogram4").
"""
import pytest
import torch

from ja_families import BY_NAME
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

ENTRY = BY_NAME["ideogram4"]
pytestmark = pytest.mark.skipif(not ENTRY.on_this_host(), reason="this host has no Ideogram4")

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def _regional(base, regions, base_ratio=0.0):
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 1.0, "all", "none", "restricted",
                    "background")[0]


def test_the_reference_forward_is_the_hosts_forward_without_regions():
    tiny = build("ideogram4")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    torch.testing.assert_close(sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW), atol=1e-5, rtol=1e-5)


def _layer0_inputs(model, dm, pos, neg, **kw):
    seen = []

    def hook(module, args, kwargs):
        seen.append((args[0].detach().clone(), args[2].detach().clone()))

    handle = dm.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sample(model, pos, neg, **kw)
    finally:
        handle.remove()
    return seen


def test_region_texts_get_the_rope_rows_of_the_prompt_alone():
    tiny = build("ideogram4")
    base = patcher(tiny)
    dm = base.model.diffusion_model
    regions, conds = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])  # 5 and 6 tokens
    n_txt = 4  # shorter than both region texts: their rows are read from the host's table, never from the copy
    pos, neg = make_cond(tiny, seed=1, n_tokens=n_txt), make_cond(tiny, seed=2, n_tokens=n_txt)
    kw = dict(KW, steps=1, cfg=1.0)
    ((x, rope),), ((x0, rope0),) = _layer0_inputs(_regional(base, regions), dm, pos, neg, **kw), \
        _layer0_inputs(base, dm, pos, neg, **kw)
    lens = [c.shape[0] for c in conds]
    n_ctx = n_txt + sum(lens)
    assert torch.equal(rope[:, :n_txt], rope0[:, :n_txt]) and torch.equal(rope[:, n_ctx:], rope0[:, n_txt:])
    assert torch.equal(x[:, :n_txt], x0[:, :n_txt]) and torch.equal(x[:, n_ctx:], x0[:, n_txt:])
    start = n_txt
    for cond, length in zip(conds, lens):
        ((xa, ropea),) = _layer0_inputs(base, dm, [[cond[None], dict(pos[0][1])]], neg, **kw)
        assert torch.equal(rope[:, start:start + length], ropea[:, :length])
        torch.testing.assert_close(x[:, start:start + length], xa[:, :length], atol=1e-6, rtol=1e-6)
        start += length


def test_the_plain_model_is_untouched_by_the_wrapped_layers():
    from joint_attention_pack.families.ideogram4 import HookedLayers

    tiny = build("ideogram4")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    regions, _ = regions_for(tiny, cell_masks(True)[0], [1.0, 1.5])
    regional = _regional(base, regions, base_ratio=0.2)
    assert isinstance(regional.object_patches["diffusion_model.layers"], HookedLayers)
    assert not base.object_patches
    assert (sample(regional, pos, neg, **KW) - plain).abs().max() > 1e-4
    assert torch.equal(sample(base, pos, neg, **KW), plain)
    assert type(base.model.diffusion_model.layers) is torch.nn.ModuleList
    assert set(dict(regional.model.named_parameters())) == set(dict(base.model.named_parameters()))


def test_concept_attention_is_refused_by_name():
    tiny = build("ideogram4")
    with pytest.raises(ValueError, match=r"\[Attention Capture\] input 'concepts': ConceptAttention is not "
                                         r"available for ideogram4 models.*\(Ideogram 4\)"):
        run_node(JointAttentionCapture, patcher(tiny), "all", "none", 0.0, 1.0, "cat, dog")


@pytest.mark.parametrize("prompt,words", [
    ("a red cat, sitting on grass", ["a", "red", "cat", "sitting", "on", "grass"]),
    ("Neon sign reading OPEN\nover a door", ["Neon", "sign", "reading", "OPEN", "over", "a", "door"]),
])
def test_labels_name_the_whole_user_turn_the_encoder_keeps(prompt, words):
    """ComfyUI's Ideogram 4 encoder keeps every token of `<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>
    assistant\\n`: labels line up with all of them and offer only the prompt's words."""
    from types import SimpleNamespace

    import comfy.text_encoders.ideogram4

    from joint_attention_pack.integration.labels import context_tokens, words_of

    clip = SimpleNamespace(tokenizer=comfy.text_encoders.ideogram4.Ideogram4Tokenizer())
    tokens = clip.tokenizer.tokenize_with_weights(prompt, return_word_ids=True)
    ids = [t[0] for t in tokens["qwen3vl_8b"][0]]
    labelled = context_tokens(clip, prompt, len(ids), "ideogram4")
    assert [p for p, _, _ in labelled] == list(range(len(ids)))
    hf = clip.tokenizer.qwen3vl_8b.tokenizer
    offered = words_of(labelled)
    assert [w for w, _ in offered] == words
    for text, positions in offered:
        assert hf.decode([ids[p] for p in positions]).strip() == text
    template = {hf.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant")}
    assert all(word == 0 for position, _, word in labelled if ids[position] in template)
