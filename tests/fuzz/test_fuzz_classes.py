"""Fuzz suite, in-process: the classes of issue 28 generated, not listed.

- region texts longer and shorter than the prompt (as the model sees it), on every family: each keeps the positions
  it has as the prompt alone (the full-region identity; Z-Image, which places the image after the base text's padded
  length, against the independent reference);
- the pack's nodes stacked, every kind in every order: every node acts (removing it changes the latent, or its
  capture recorded), or the prompt stops with an error naming the node;
- every string input with separators only, surrogates and multi-megabyte values (ja_fuzz.any_text);
- every image input with 1, 3 and 4 channels (2: refused by name), up to 4096 x 4096, outputs within their bounds.
Each example ends in the documented behaviour or in an error naming the node and the input, never another exception.
"""
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ja_families import BY_NAME, names
from ja_fuzz import any_text, check_named, fuzz_settings
from ja_nodes import run_node, validate_node
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, tiny_clip
from joint_attention_pack.integration.conditioning import model_text
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
from joint_attention_pack.nodes.common import DISPLAY_NAMES
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import MAX_MAP_PIXELS, JointAttentionCapture, JointAttentionMaps
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

FAMILIES = names("fuzz_region_text_lengths")
APPLY = "Apply Regional Attention"
_TINY = {}


def _tiny(family):
    if family not in _TINY:
        _TINY[family] = build(family)
    return _TINY[family]


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


# -- region texts of any length ------------------------------------------------------------------------------------------
@fuzz_settings(14)
@given(family=st.sampled_from(FAMILIES), base_tokens=st.integers(1, 24), offset=st.integers(-40, 100),
       cfg=st.sampled_from([1.0, 2.0]), seed=st.integers(0, 50))
def test_region_texts_longer_and_shorter_than_the_prompt_keep_their_own_positions(family, base_tokens, offset, cfg, seed):
    tiny = _tiny(family)
    base = patcher(tiny)
    base_cond = make_cond(tiny, seed=seed, n_tokens=base_tokens)
    seen = model_text(base, base_cond[0][0][0], base_cond[0][1]).shape[0]  # FLUX.2 pads the prompt to 512
    region_tokens = max(1, seen + offset)
    region_cond = make_cond(tiny, seed=seed + 100, n_tokens=region_tokens)
    width = BY_NAME[family].width_without_image_pads(96, 64)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 64, width), 1.0)[0]
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", single, "restricted",
                     "background")[0]
    neg = make_cond(tiny, seed=seed + 200)
    kw = dict(seed=seed, steps=1, cfg=cfg, width=width, height=64)
    got = sample(model, base_cond, neg, **kw)
    # The full-region identity: the image of prompting with the region's text alone (on Z-Image too, where the
    # padded lengths differ: the region text ends where the prompt ends, right before the image).
    want = sample(base, prompt_alone(region_cond, base_cond), neg, **kw)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# -- stacked nodes ---------------------------------------------------------------------------------------------------------
KINDS = ["regions", "regions_other_settings", "taca", "text_scale", "capture", "concepts"]
_APPLY_SETTINGS = dict(start_percent=0.0, end_percent=1.0, double_blocks="all", single_blocks="all",
                       image_attention="restricted", global_prompt="background")


def _stack(flux, clip, kinds):
    """The model after the nodes `kinds` in order, and the capture handles made on the way."""
    model, handles = patcher(flux), []
    for i, kind in enumerate(kinds):
        if kind.startswith("regions"):
            mask = torch.zeros(1, 64, 64)
            mask[..., (i % 2) * 32:(i % 2) * 32 + 32] = 1.0
            regions = run_node(JointAttentionRegion, make_cond(flux, seed=30 + i, n_tokens=3 + i), mask, 1.0)[0]
            ratio = 0.5 if kind == "regions_other_settings" else 0.2
            model = run_node(JointAttentionRegionalApply, model, regions, ratio, **_APPLY_SETTINGS)[0]
        elif kind == "taca":
            model = run_node(JointAttentionTACA, model, 2.0, 0.0, "both", "all", "all")[0]
        elif kind == "text_scale":
            model = run_node(JointAttentionTextScale, model, str(i % 4), 3.0, "scale", 0.0, 1.0)[0]
        else:
            concepts = "cat, sky" if kind == "concepts" else ""
            model, handle = run_node(JointAttentionCapture, model, "all", "all", 0.0, 1.0, concepts, clip)
            handles.append((kind, handle))
    return model, handles


def _conflicting(kinds) -> bool:
    regional = [k for k in kinds if k.startswith("regions")]
    return len(set(regional)) > 1


@fuzz_settings(30)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=3))
def test_stacked_nodes_of_every_kind_in_every_order_all_act(clip, kinds):
    flux = _tiny("flux")
    pos, neg = make_cond(flux, seed=1), make_cond(flux, seed=2)
    kw = dict(seed=0, steps=1, cfg=2.0)
    try:
        model, handles = _stack(flux, clip, kinds)
    except Exception as exc:  # noqa: BLE001 - the check is on what was raised
        assert _conflicting(kinds), f"{type(exc).__name__}: {exc}"
        check_named(exc, APPLY, ["model"])
        assert "earlier Apply Regional Attention node" in str(exc)
        return
    assert not _conflicting(kinds)
    latent = sample(model, pos, neg, **kw)
    assert bool(torch.isfinite(latent).all())
    for kind, handle in handles:  # every capture recorded, whatever else is on the model
        result = handle.take()
        assert result is not None and result["recorded"], kind
        if kind == "concepts":  # ConceptAttention records concept maps (and no word maps)
            assert result["concept_maps"] is not None and result["concept_maps"].shape[0] == 2
        else:
            assert result["maps"].shape[1] > 0
    for i, kind in enumerate(kinds):  # every other node changes the image: removing it shows
        if kind in ("capture", "concepts"):
            continue
        without, _ = _stack(flux, clip, kinds[:i] + kinds[i + 1:])
        assert not torch.equal(sample(without, pos, neg, **kw), latent), (kinds, i)


# -- every string input ----------------------------------------------------------------------------------------------------
STRING_INPUTS = [
    ("Apply Regional Attention", "double_blocks"), ("Apply Regional Attention", "single_blocks"),
    ("JointAttentionTACA", "double_blocks"), ("JointAttentionTACA", "single_blocks"),
    ("JointAttentionTextScale", "blocks"), ("JointAttentionTextScale", "token_range"),
    ("JointAttentionCapture", "double_blocks"), ("JointAttentionCapture", "single_blocks"),
    ("JointAttentionCapture", "concepts"),
    ("JointAttentionMaps", "words"), ("JointAttentionMaps", "filename_prefix"), ("JointAttentionMaps", "prompt"),
    ("Region Canvas", "regions"),
]
_NODE_CLASSES = {"Apply Regional Attention": JointAttentionRegionalApply, "JointAttentionTACA": JointAttentionTACA,
                 "JointAttentionTextScale": JointAttentionTextScale, "JointAttentionCapture": JointAttentionCapture,
                 "JointAttentionMaps": JointAttentionMaps, "Region Canvas": JointAttentionRegionCanvas}


def _canvas_value(prompt: str) -> str:
    return json.dumps({"version": 1, "width": 64, "height": 48, "regions": [
        {"id": "r1", "prompt": prompt, "strength": 1.0, "color": "#ff0000", "hidden": False,
         "mask": canvas_state.encode_rle([1] * 24 + [0] * 24)}]})


def _queued(node, name, value):
    """The node's queue-time check for this input, when it has one: True or the message."""
    cls = _NODE_CLASSES[node]
    check = getattr(cls, "validate_inputs", None)
    if check is None:
        return True
    import inspect

    if name not in inspect.signature(check).parameters:
        return True
    return validate_node(cls, **{name: value})


def _run_string_input(flux, clip, node, name, value):
    """Run the node with `value` in input `name` (others at their defaults); sample what the node made."""
    pos, neg = make_cond(flux, seed=1), make_cond(flux, seed=2)
    model = patcher(flux)
    if node == "Region Canvas":
        regions, masks, preview, *_ = run_node(JointAttentionRegionCanvas, clip, 64, 48, value).args
        assert masks.shape[1:] == (48, 64) and preview.shape[-1] == 3
        return
    if node == "JointAttentionMaps":
        captured, handle = run_node(JointAttentionCapture, model, "all", "all", 0.0, 1.0)
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("a sunny meadow"))
        latent = sample(captured, cond, cond, steps=1, cfg=1.0, width=32, height=32)
        kwargs = dict(words="", filename_prefix="", clip=clip, prompt="a sunny meadow")
        kwargs[name] = value
        if name == "filename_prefix":
            kwargs["filename_prefix"] = ""  # saving is checked apart (test_fuzz_inputs): here only that it is refused
        heat, masks, _ = run_node(JointAttentionMaps, handle, {"samples": latent}, **kwargs).args
        assert heat.shape[0] == masks.shape[0] >= 1 and bool(torch.isfinite(masks).all())
        return
    if node == APPLY:
        regions = run_node(JointAttentionRegion, make_cond(flux, seed=3), torch.ones(1, 8, 8), 1.0)[0]
        kwargs = {**_APPLY_SETTINGS, name: value}
        out = run_node(JointAttentionRegionalApply, model, regions, 0.2, **kwargs)[0]
    elif node == "JointAttentionTACA":
        kwargs = {"double_blocks": "all", "single_blocks": "all", name: value}
        out = run_node(JointAttentionTACA, model, 1.5, 0.0, "both", **kwargs)[0]
    elif node == "JointAttentionTextScale":
        kwargs = {"blocks": "0", "token_range": "", name: value}
        out = run_node(JointAttentionTextScale, model, scale=3.0, mode="scale", start_percent=0.0, end_percent=1.0,
                       **kwargs)[0]
    else:
        kwargs = {"double_blocks": "all", "single_blocks": "all", "concepts": "", "clip": clip, name: value}
        out, _ = run_node(JointAttentionCapture, model, start_percent=0.0, end_percent=1.0, **kwargs)
    assert bool(torch.isfinite(sample(out, pos, neg, steps=1, cfg=2.0)).all())


@fuzz_settings(80)
@given(which=st.sampled_from(STRING_INPUTS), value=any_text)
def test_every_string_input(clip, which, value):
    flux = _tiny("flux")
    node, name = which
    if node == "Region Canvas":
        value = _canvas_value(value)
    verdict = _queued(node, name, value)
    if verdict is not True:
        assert isinstance(verdict, str) and len(verdict) < 1200, verdict
        shown_input = "regions" if node == "Region Canvas" else name
        assert verdict.startswith(f"[{DISPLAY_NAMES.get(node, node)}] input '{shown_input}': "), verdict[:300]
        return
    try:
        _run_string_input(flux, clip, node, name, value)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the check is on what was raised
        check_named(exc, node, ["regions" if node == "Region Canvas" else name])


# -- every image input -------------------------------------------------------------------------------------------------------
SIZES = [(1, 1), (3, 5), (40, 56), (4096, 4096), (4096, 96)]


@fuzz_settings(16)
@given(target=st.sampled_from(["maps image", "canvas background"]), channels=st.sampled_from([1, 2, 3, 4]),
       size=st.sampled_from(SIZES), n_words=st.integers(1, 8))
def test_every_image_input(clip, target, channels, size, n_words):
    flux = _tiny("flux")
    image = torch.rand(1, *size, channels)
    node, name = ("JointAttentionMaps", "image") if target == "maps image" else ("Region Canvas", "background")
    try:
        if target == "maps image":
            captured, handle = run_node(JointAttentionCapture, patcher(flux), "all", "all", 0.0, 1.0)
            cond = clip.encode_from_tokens_scheduled(clip.tokenize("a sunny meadow"))
            latent = sample(captured, cond, cond, steps=1, cfg=1.0, width=32, height=32)
            words = ",".join(f"#{i}" for i in range(n_words))
            heat, masks, _ = run_node(JointAttentionMaps, handle, {"samples": latent}, words, "", clip, "a sunny meadow",
                                      image).args
            assert heat.shape[0] == n_words and heat.shape[-1] == 3 and masks.shape == heat.shape[:3]
            assert n_words * heat.shape[1] * heat.shape[2] <= MAX_MAP_PIXELS  # bounded whatever the image
            assert bool(torch.isfinite(heat).all())
        else:
            _, masks, preview, *_ = run_node(JointAttentionRegionCanvas, clip, 64, 48, _canvas_value("a red house"),
                                         image).args
            assert preview.shape[-1] == 3 and max(preview.shape[1:3]) <= 1024
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001
        assert channels == 2, f"{type(exc).__name__}: {exc}"
        check_named(exc, node, [name])
        return
    assert channels != 2, "an image of 2 channels was accepted"
