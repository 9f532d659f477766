"""Issue 17: Qwen-Image and Qwen-Image-Edit, on the tiny model built from the host's own classes.

The family scenarios (regions in every mode, TACA, text scale, maps, ConceptAttention, the identities, Qwen-Image-
Edit's reference tokens with regions and TACA) run Qwen-Image as an entry of the test family list (ja_families).
Here: what only Qwen-Image has.
- Text rope positions: the host numbers text tokens from `txt_start` along the whole context, so appended region
  texts would read as a continuation of the base prompt. Each region text's rope rows must equal the rows the same
  text gets as the prompt alone; base text and image rows stay the host's own (bit for bit).
- Block numbers beyond the model, and the text padding mask newer hosts pass, are refused by name.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample, with_options
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def _rope_tables(model, pos, neg, **kw):
    """The rope table every double block 0 got, per forward."""
    seen = []
    m = model.clone()
    inner = m.model_options["transformer_options"].get("patches_replace", {}).get("dit", {}).get(("double_block", 0))

    def spy(args, extra):
        out = inner(args, {**extra, "original_block": lambda a: (seen.append(a["pe"].clone()), extra["original_block"](a))[1]}) \
            if inner is not None else (seen.append(args["pe"].clone()), extra["original_block"](args))[1]
        return out

    m.set_model_patch_replace(spy, "dit", "double_block", 0)
    sample(m, pos, neg, **kw)
    return seen


def test_region_texts_get_the_rope_rows_of_the_prompt_alone():
    tiny = build("qwen_image")
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])  # region texts of 5 and 6 tokens
    pos, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2, n_tokens=7)
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "none", "restricted",
                     "background")[0]
    kw = dict(KW, steps=1, cfg=1.0)
    patched = _rope_tables(model, pos, neg, **kw)[0]
    plain = _rope_tables(base, pos, neg, **kw)[0]
    n_txt, n_img = 7, (HEIGHT // 16) * (WIDTH // 16)
    lens = [c.shape[0] for c in conds]
    assert patched.shape[2] == n_txt + sum(lens) + n_img
    assert torch.equal(patched[:, :, :n_txt], plain[:, :, :n_txt])  # base text as without regions
    assert torch.equal(patched[:, :, n_txt + sum(lens):], plain[:, :, n_txt:])  # image as without regions
    start = n_txt
    for r, length in enumerate(lens):
        alone = _rope_tables(base, [[conds[r][None], dict(pos[0][1])]], neg, **kw)[0]
        assert torch.equal(patched[:, :, start:start + length], alone[:, :, :length])
        start += length


def test_block_numbers_beyond_the_model_are_named():
    tiny = build("qwen_image")
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    with pytest.raises(ValueError, match=r"input 'double_blocks'.*valid numbers are 0-1"):
        run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.2, 0.0, 0.4, "0-59", "none", "restricted",
                 "background")


def test_a_text_padding_mask_is_refused_with_a_message_where_the_host_passes_it():
    """Newer hosts pass Qwen-Image a text padding mask (`attention_mask`) when the prompt has padded tokens; region
    texts appended after the text would break the model's own mask, so regional prompting refuses such runs by name.
    Hosts that do not pass it (0.3.75) sample as usual."""
    tiny = build("qwen_image")
    base = patcher(tiny)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", "none", "restricted",
                     "background")[0]
    mask = torch.tensor([[1] * 6 + [0] * 2])
    pos = with_options(make_cond(tiny, seed=1, n_tokens=8), attention_mask=mask)
    neg = make_cond(tiny, seed=2, n_tokens=8)
    passed = "attention_mask" in base.model.extra_conds(cross_attn=pos[0][0], attention_mask=mask)
    kw = dict(KW, steps=1)
    if passed:
        with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model'.*padding mask"):
            sample(model, pos, neg, **kw)
    else:
        assert torch.isfinite(sample(model, pos, neg, **kw)).all()
