"""Fuzz suite, in-process: generated values for every user-controlled node input.

Each example ends in the documented behaviour or in an error that names the node and the input,
never in another exception type, and a latent sampled from accepted settings is always finite.
"""
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ja_fuzz import any_float, any_text, check_named, fuzz_settings
from ja_nodes import run_node, validate_node
from ja_tiny import build, make_cond, patcher, sample, tiny_clip
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

APPLY = "Apply Regional Attention"


@pytest.fixture(scope="module")
def flux():
    return build("flux")


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def _regions(tiny):
    return run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.ones(1, 8, 8), 1.0)[0]


def _finite_sample(model, tiny, batch=1):
    out = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=2, cfg=2.0, batch=batch)
    assert bool(torch.isfinite(out).all())
    return out


FLOAT_INPUTS = ["base_ratio", "start_percent", "end_percent", "gamma", "sigma_threshold", "scale", "strength"]


@fuzz_settings(60)
@given(name=st.sampled_from(FLOAT_INPUTS), value=any_float)
def test_float_inputs(flux, name, value):
    model = patcher(flux)
    try:
        if name in ("base_ratio", "start_percent", "end_percent"):
            node = APPLY
            kwargs = dict(base_ratio=0.2, start_percent=0.0, end_percent=1.0)
            kwargs[name] = value
            out = run_node(JointAttentionRegionalApply, model, _regions(flux), double_blocks="all", single_blocks="all",
                                                      image_attention="restricted", global_prompt="background", **kwargs)
        elif name in ("gamma", "sigma_threshold"):
            node = "JointAttentionTACA"
            kwargs = dict(gamma=1.2, sigma_threshold=0.5)
            kwargs[name] = value
            out = run_node(JointAttentionTACA, model, apply_to="both", double_blocks="all", single_blocks="all", **kwargs)
        elif name == "scale":
            node = "JointAttentionTextScale"
            out = run_node(JointAttentionTextScale, model, "0,2", value, "scale", 0.0, 1.0)
        else:
            node = "Region (mask + prompt)"
            regions = run_node(JointAttentionRegion, make_cond(flux, seed=3), torch.ones(1, 8, 8), value)[0]
            out = run_node(JointAttentionRegionalApply, model, regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                                                      "background")
    except Exception as exc:  # noqa: BLE001 - the check is on what was raised
        check_named(exc, node, [name])
        return
    _finite_sample(out[0], flux)


@fuzz_settings(60)
@given(field=st.sampled_from(["double_blocks", "single_blocks"]), text=any_text)
def test_block_strings(flux, field, text):
    kwargs = dict(double_blocks="all", single_blocks="all")
    kwargs[field] = text
    try:
        run_node(JointAttentionRegionalApply, patcher(flux), _regions(flux), 0.2, 0.0, 1.0, image_attention="restricted",
                                            global_prompt="background", **kwargs)
    except Exception as exc:  # noqa: BLE001
        check_named(exc, APPLY, [field])


@fuzz_settings(40)
@given(blocks=any_text, token_range=any_text)
def test_text_scale_strings(flux, blocks, token_range):
    try:
        out = run_node(JointAttentionTextScale, patcher(flux), blocks, 1.5, "scale", 0.0, 1.0, token_range)
    except Exception as exc:  # noqa: BLE001
        check_named(exc, "JointAttentionTextScale", ["blocks", "token_range"])
        return
    _finite_sample(out[0], flux)


mask_shapes = st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=4)
mask_fills = st.sampled_from(["rand", "ones", "zeros", "nan", "inf", "neg", "big", "half"])


def _mask(shape, fill, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g)
    if m.numel():
        flat = m.view(-1)
        if fill == "ones":
            m.fill_(1.0)
        elif fill == "zeros":
            m.zero_()
        elif fill == "nan":
            flat[seed % flat.numel()] = float("nan")
        elif fill == "inf":
            flat[seed % flat.numel()] = float("inf")
        elif fill == "neg":
            m.sub_(0.5).mul_(4)
        elif fill == "big":
            m.mul_(1e30)
        elif fill == "half":
            m[..., : max(1, shape[-1] // 2)] = 1.0
    return m


@fuzz_settings(60)
@given(shape=mask_shapes, fill=mask_fills, seed=st.integers(0, 1000), batch=st.integers(1, 3))
def test_masks_of_odd_shapes_and_batches(flux, shape, fill, seed, batch):
    mask = _mask(shape, fill, seed)
    try:
        regions = run_node(JointAttentionRegion, make_cond(flux, seed=3), mask, 1.0)[0]
    except Exception as exc:  # noqa: BLE001
        check_named(exc, "Region (mask + prompt)", ["mask"])
        return
    model = run_node(JointAttentionRegionalApply, patcher(flux), regions, 0.2, 0.0, 1.0, "all", "all", "restricted",
                                                "background")[0]
    try:
        _finite_sample(model, flux, batch=batch)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - a mask batch that does not match the sampled batch
        check_named(exc, "Region (mask + prompt)", ["mask"])


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), any_float, st.integers(-(10 ** 20), 10 ** 20), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12)

_VALID = {"version": 1, "width": 64, "height": 48,
          "regions": [{"id": "r1", "prompt": "a red house", "strength": 1.0, "color": "#ff0000", "hidden": False,
                       "mask": canvas_state.encode_rle([1] * 24 + [0] * 24)}]}
_KEYS = ["version", "width", "height", "regions", "prompt", "strength", "color", "hidden", "mask", "id"]


@fuzz_settings(80)
@given(key=st.sampled_from(_KEYS), value=json_values, raw=st.one_of(st.none(), st.text(max_size=60)))
def test_canvas_values(clip, key, value, raw):
    drawing = json.loads(json.dumps(_VALID))
    if key in drawing:
        drawing[key] = value
    else:
        drawing["regions"][0][key] = value
    text = raw if raw is not None else json.dumps(drawing)
    verdict = validate_node(JointAttentionRegionCanvas, regions=text)
    if verdict is not True:
        assert isinstance(verdict, str) and verdict.startswith("[Region Canvas] input 'regions': "), verdict
        return
    regions, masks, preview, *_ = run_node(JointAttentionRegionCanvas, clip, 64, 48, text).args
    assert masks.shape[1:] == (48, 64) and preview.shape[-1] == 3 and bool(torch.isfinite(preview).all())


@fuzz_settings(40)
@given(words=st.one_of(any_text, st.lists(st.sampled_from(["sunny", "meadow", "#1", "#0", "#999", "a"]),
                                          max_size=3000).map(",".join)))
def test_maps_words(flux, clip, words):
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a sunny meadow"))
    model, handle = run_node(JointAttentionCapture, patcher(flux), "all", "all", 0.0, 1.0)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    try:
        heat, masks, info = run_node(JointAttentionMaps, handle, {"samples": latent}, words, "", clip,
                                                        "a sunny meadow").args
    except Exception as exc:  # noqa: BLE001
        check_named(exc, "JointAttentionMaps", ["words"])
        return
    assert heat.shape[0] == masks.shape[0] >= 1 and bool(torch.isfinite(masks).all())


@fuzz_settings(60)
@given(prefix=st.one_of(any_text, st.from_regex(r"([a-z.]{0,70}/){0,12}[a-z]{0,70}", fullmatch=True)))
def test_maps_filename_prefix(prefix):
    verdict = validate_node(JointAttentionMaps, filename_prefix=prefix, words="")
    if verdict is not True:
        assert verdict.startswith("[Attention Maps] input 'filename_prefix': "), verdict
        assert len(verdict) < 1200
    else:
        assert ".." not in prefix.split("/") and not prefix.strip().startswith("/")
