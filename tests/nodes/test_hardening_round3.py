"""Issue 28 (hardening, round 3): each break of the review, in-process in the real host."""
import re

import pytest
import torch

from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

APPLY = dict(base_ratio=0.2, start_percent=0.0, end_percent=0.6, double_blocks="all", single_blocks="all",
             image_attention="restricted", global_prompt="background")


@pytest.fixture(scope="module")
def flux():
    return build("flux")


def _chain(tiny, pixels, seeds, regions=None):
    for i, seed in enumerate(seeds):
        regions = run_node(JointAttentionRegion, make_cond(tiny, seed=seed, n_tokens=5 + i), pixels[i:i + 1], 1.0 + i / 2,
                           regions)[0]
    return regions


# -- break 2: two Apply Regional Attention nodes in a row ---------------------------------------------------------------
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image"])
def test_two_apply_nodes_in_a_row_act_as_one_apply_with_both_chains(family):
    tiny = build(family)
    base = patcher(tiny)
    pixels, _ = cell_masks(False)
    settings = {**APPLY, "single_blocks": "all" if tiny.n_single else "none"}
    first, second = _chain(tiny, pixels[:1], [10]), _chain(tiny, pixels[1:], [11])
    both = _chain(tiny, pixels[1:], [11], regions=first)
    one = run_node(JointAttentionRegionalApply, base, both, **settings)[0]
    stacked = run_node(JointAttentionRegionalApply, run_node(JointAttentionRegionalApply, base, first, **settings)[0],
                       second, **settings)[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=128 if family == "z_image" else WIDTH, height=HEIGHT)
    want = sample(one, pos, neg, **kw)
    alone = sample(run_node(JointAttentionRegionalApply, base, second, **settings)[0], pos, neg, **kw)
    assert (want - alone).abs().max() > 1e-3  # the first chain matters, so dropping it would show
    assert torch.equal(sample(stacked, pos, neg, **kw), want)


@pytest.mark.parametrize("change", [dict(base_ratio=0.3), dict(end_percent=0.9), dict(double_blocks="0"),
                                    dict(image_attention="open"), dict(global_prompt="everywhere")])
def test_two_apply_nodes_with_different_settings_are_refused_naming_both(flux, change):
    pixels, _ = cell_masks(False)
    first = run_node(JointAttentionRegionalApply, patcher(flux), _chain(flux, pixels[:1], [10]), **APPLY)[0]
    with pytest.raises(ValueError, match=r"^\[Apply Regional Attention\] input 'model': .*earlier Apply Regional "
                                         r"Attention node.*Fix: "):
        run_node(JointAttentionRegionalApply, first, _chain(flux, pixels[1:], [11]), **{**APPLY, **change})


def test_two_apply_nodes_share_the_region_limit(flux):
    from joint_attention_pack.attention.regional import MAX_REGIONS

    mask = torch.ones(1, 8, 8)
    regions = ()
    for i in range(MAX_REGIONS):
        regions = run_node(JointAttentionRegion, make_cond(flux, seed=i, n_tokens=1), mask, 1.0, regions)[0]
    first = run_node(JointAttentionRegionalApply, patcher(flux), regions, **APPLY)[0]
    with pytest.raises(ValueError, match=r"^\[Apply Regional Attention\] input 'regions': .*at most 128"):
        run_node(JointAttentionRegionalApply, first, regions[:1], **APPLY)


def test_two_taca_nodes_in_a_row_multiply_their_gammas(flux):
    """Stacked TACA nodes both act (the first used to be replaced): gamma 1.2 then 1.5 equals one TACA of 1.8."""
    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    taca = dict(sigma_threshold=0.0, apply_to="both", double_blocks="all", single_blocks="all")
    stacked = run_node(JointAttentionTACA, run_node(JointAttentionTACA, patcher(flux), 1.2, **taca)[0], 1.5, **taca)[0]
    one = run_node(JointAttentionTACA, patcher(flux), 1.8, **taca)[0]
    second_alone = run_node(JointAttentionTACA, patcher(flux), 1.5, **taca)[0]
    pos, neg = make_cond(flux, seed=1), make_cond(flux, seed=2)
    want = sample(one, pos, neg, steps=2, cfg=2.0)
    assert (want - sample(second_alone, pos, neg, steps=2, cfg=2.0)).abs().max() > 1e-4  # 10x the tolerance
    torch.testing.assert_close(sample(stacked, pos, neg, steps=2, cfg=2.0), want, atol=1e-5, rtol=1e-5)


def test_two_text_scale_nodes_in_a_row_both_edit_the_text(flux):
    """Scale 2 then scale 3 on the same blocks equals one scale of 6; on other blocks both act."""
    from joint_attention_pack.nodes.guidance import JointAttentionTextScale

    def scaled(model, blocks, factor):
        return run_node(JointAttentionTextScale, model, blocks, factor, "scale", 0.0, 1.0)[0]

    pos, neg = make_cond(flux, seed=1), make_cond(flux, seed=2)
    stacked = scaled(scaled(patcher(flux), "0,2", 2.0), "0,2", 3.0)
    want = sample(scaled(patcher(flux), "0,2", 6.0), pos, neg, steps=2)
    assert (want - sample(scaled(patcher(flux), "0,2", 3.0), pos, neg, steps=2)).abs().max() > 1e-3
    torch.testing.assert_close(sample(stacked, pos, neg, steps=2), want, atol=1e-5, rtol=1e-5)
    apart = scaled(scaled(patcher(flux), "0", 2.0), "2", 3.0)
    assert (sample(apart, pos, neg, steps=2) - sample(scaled(patcher(flux), "2", 3.0), pos, neg, steps=2)).abs().max() > 1e-3


# -- break 3: raw errors -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip():
    from ja_tiny import tiny_clip

    return tiny_clip()


def _captured(model, text_encoder, prompt="a sunny meadow", **capture):
    from joint_attention_pack.nodes.maps import JointAttentionCapture

    cond = text_encoder.encode_from_tokens_scheduled(text_encoder.tokenize(prompt))
    kwargs = dict(double_blocks="all", single_blocks="all", start_percent=0.0, end_percent=1.0, **capture)
    captured, handle = run_node(JointAttentionCapture, model, **kwargs)
    return captured, handle, cond


@pytest.mark.parametrize("concepts", [",", " , ,, "])
def test_concepts_of_separators_only_get_a_named_error(flux, clip, concepts):
    from ja_nodes import validate_node
    from joint_attention_pack.nodes.maps import JointAttentionCapture

    pattern = r"^\[Attention Capture\] input 'concepts': .*names no concept"
    with pytest.raises(ValueError, match=pattern):
        _captured(patcher(flux), clip, concepts=concepts, clip=clip)
    verdict = validate_node(JointAttentionCapture, concepts=concepts)
    assert isinstance(verdict, str) and verdict.startswith("[Attention Capture] input 'concepts': "), verdict


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_maps_overlay_takes_grey_rgb_and_rgba_images(flux, clip, channels):
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    image = torch.rand(1, 40, 56, channels)
    heat, masks, _ = run_node(JointAttentionMaps, handle, {"samples": latent}, "sunny", "", clip, "a sunny meadow",
                              image).args
    assert heat.shape == (1, 40, 56, 3) and masks.shape == (1, 40, 56)
    assert bool(torch.isfinite(heat).all())


def test_maps_overlay_of_other_channel_counts_is_refused_by_name(flux, clip):
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    with pytest.raises(ValueError, match=r"^\[Attention Maps\] input 'image': has 2 channels"):
        run_node(JointAttentionMaps, handle, {"samples": latent}, "sunny", "", clip, "a sunny meadow",
                 torch.rand(1, 8, 8, 2))


def test_two_captures_in_a_row_both_record_and_maps_read_either(flux, clip):
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    first, h1, cond = _captured(patcher(flux), clip)
    both, h2, _ = _captured(first, clip)
    latent = sample(both, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    one = run_node(JointAttentionMaps, h1, {"samples": latent}, "", "", clip, "a sunny meadow").args
    two = run_node(JointAttentionMaps, h2, {"samples": latent}, "", "", clip, "a sunny meadow").args
    assert one[1].shape[0] >= 1 and torch.equal(one[1], two[1]) and torch.equal(one[0], two[0])


def test_canvas_and_maps_prompts_with_a_lone_surrogate_work(flux, clip):
    import json

    from ja_nodes import validate_node
    from joint_attention_pack.nodes import canvas_state
    from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    drawing = {"version": 1, "width": 64, "height": 48, "regions": [
        {"id": "r1", "prompt": "a red \ud800 house", "strength": 1.0, "color": "#ff0000", "hidden": False,
         "mask": canvas_state.encode_rle([1] * 24 + [0] * 24)}]}
    text = json.dumps(drawing)  # "\ud800" as JSON writes it, as an API client would send it
    assert validate_node(JointAttentionRegionCanvas, regions=text) is True
    regions, masks, *_ = run_node(JointAttentionRegionCanvas, clip, 64, 48, text).args
    assert len(regions) == 1 and masks.shape == (1, 48, 64)
    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    heat = run_node(JointAttentionMaps, handle, {"samples": latent}, "", "", clip, "a sunny \udc00 meadow")[0]
    assert heat.shape[0] >= 1


@pytest.mark.parametrize("node_cls,name,kwargs", [
    ("JointAttentionRegionalApply", "image_attention", {}), ("JointAttentionRegionalApply", "global_prompt", {}),
    ("JointAttentionTACA", "apply_to", {}), ("JointAttentionTextScale", "mode", {})])
def test_invalid_choices_name_the_node_and_the_input(flux, node_cls, name, kwargs):
    from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale

    model = patcher(flux)
    calls = {
        "JointAttentionRegionalApply": ("Apply Regional Attention", lambda **kw: run_node(
            JointAttentionRegionalApply, model, _chain(flux, torch.ones(1, 8, 8), [3]), **{**APPLY, **kw})),
        "JointAttentionTACA": ("TACA (text attention temperature)", lambda **kw: run_node(
            JointAttentionTACA, model, **{**dict(gamma=1.2, sigma_threshold=0.97, apply_to="both", double_blocks="all",
                                                 single_blocks="all"), **kw})),
        "JointAttentionTextScale": ("Text Scale per Block", lambda **kw: run_node(
            JointAttentionTextScale, model, **{**dict(blocks="0", scale=1.5, mode="scale", start_percent=0.0,
                                                      end_percent=1.0), **kw})),
    }
    label, call = calls[node_cls]
    with pytest.raises(ValueError, match=rf"^\[{re.escape(label)}\] input '{name}': 'bogus' is not one of "):
        call(**{name: "bogus"})


# -- break 4: two Attention Maps nodes on one capture ---------------------------------------------------------------------
def test_a_second_maps_node_on_one_capture_says_the_maps_were_read(flux, clip):
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    run_node(JointAttentionMaps, handle, {"samples": latent}, "sunny", "", clip, "a sunny meadow")
    with pytest.raises(ValueError) as err:
        run_node(JointAttentionMaps, handle, {"samples": latent}, "meadow", "", clip, "a sunny meadow")
    message = str(err.value)
    assert message.startswith("[Attention Maps] input 'capture': the sampler ran, but its maps were already read")
    assert "did not run" not in message


# -- break 5: the size of `concepts` ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [4097, 1 << 20, 10 << 20])
def test_concepts_length_is_limited_when_queued(size):
    from ja_nodes import validate_node
    from joint_attention_pack.nodes.maps import MAX_CONCEPTS_CHARS, JointAttentionCapture

    assert size > MAX_CONCEPTS_CHARS
    verdict = validate_node(JointAttentionCapture, concepts="c" * size)
    assert isinstance(verdict, str) and verdict.startswith("[Attention Capture] input 'concepts': is "), verdict
    assert len(verdict) < 400
    assert validate_node(JointAttentionCapture, concepts="cat, sky, " + "g" * 4000) is True


def test_concepts_length_is_limited_when_run(flux, clip):
    with pytest.raises(ValueError, match=r"^\[Attention Capture\] input 'concepts': is 1048576 characters long"):
        _captured(patcher(flux), clip, concepts="c" * (1 << 20), clip=clip)


# -- break 6: maps memory bounded by the overlay image ---------------------------------------------------------------------
@pytest.mark.parametrize("n_words", [1, 8])
def test_maps_over_a_huge_image_are_bounded_before_allocating(flux, clip, n_words):
    from joint_attention_pack.nodes.maps import MAX_MAP_PIXELS, JointAttentionMaps

    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    image = torch.rand(1, 4096, 2048, 4)  # 4 channels, the long side 4096
    words = ",".join(f"#{i}" for i in range(n_words))
    heat, masks, _ = run_node(JointAttentionMaps, handle, {"samples": latent}, words, "", clip, "a sunny meadow",
                              image).args
    assert heat.shape[0] == masks.shape[0] == n_words
    assert n_words * heat.shape[1] * heat.shape[2] <= MAX_MAP_PIXELS
    assert abs(heat.shape[1] / heat.shape[2] - 2.0) < 0.01  # aspect kept
    if n_words * 4096 * 2048 <= MAX_MAP_PIXELS:
        assert heat.shape[1:3] == (4096, 2048)  # scaled only when the maps would not fit


# -- break 7: a token range that selects no token --------------------------------------------------------------------------
@pytest.mark.parametrize("token_range", ["999999-999999", "8-20"])
def test_text_scale_range_past_the_text_is_an_error_naming_the_node(flux, token_range):
    from joint_attention_pack.nodes.guidance import JointAttentionTextScale

    model = run_node(JointAttentionTextScale, patcher(flux), "0", 10.0, "scale", 0.0, 1.0, token_range)[0]
    with pytest.raises(ValueError, match=r"^\[Text Scale per Block\] input 'token_range': .* selects no token: "
                                         r"the text in this block has 8 tokens"):
        sample(model, make_cond(flux, seed=1, n_tokens=8), make_cond(flux, seed=2, n_tokens=8), steps=1, cfg=1.0)
    inside = run_node(JointAttentionTextScale, patcher(flux), "0", 10.0, "scale", 0.0, 1.0, "5-20")[0]
    plain = sample(patcher(flux), make_cond(flux, seed=1, n_tokens=8), make_cond(flux, seed=2, n_tokens=8), steps=1)
    scaled = sample(inside, make_cond(flux, seed=1, n_tokens=8), make_cond(flux, seed=2, n_tokens=8), steps=1)
    assert (scaled - plain).abs().max() > 1e-3  # a range reaching into the text acts on its tokens


# -- found by the generated classes (tests/fuzz/test_fuzz_classes.py) -------------------------------------------------------
@pytest.mark.parametrize("prompt", [":", " , ,, "])
def test_maps_prompt_without_words_gets_a_named_error(flux, clip, prompt):
    from joint_attention_pack.nodes.maps import JointAttentionMaps

    model, handle, cond = _captured(patcher(flux), clip)
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=32, height=32)
    with pytest.raises(ValueError, match=r"^\[Attention Maps\] input 'prompt': .* has no word to label"):
        run_node(JointAttentionMaps, handle, {"samples": latent}, "", "", clip, prompt)


def test_maps_prompt_length_is_limited_when_queued():
    from ja_nodes import validate_node
    from joint_attention_pack.nodes.maps import MAX_PROMPT_CHARS, JointAttentionMaps

    verdict = validate_node(JointAttentionMaps, filename_prefix="", words="", prompt="a " * MAX_PROMPT_CHARS)
    assert isinstance(verdict, str) and verdict.startswith("[Attention Maps] input 'prompt': is "), verdict


@pytest.mark.parametrize("channels", [1, 4])
def test_canvas_background_takes_grey_and_rgba_images(clip, channels):
    import json

    from joint_attention_pack.nodes import canvas_state
    from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas

    text = json.dumps({"version": 1, "width": 64, "height": 48, "regions": [
        {"id": "r1", "prompt": "a red house", "strength": 1.0, "color": "#ff0000", "hidden": False,
         "mask": canvas_state.encode_rle([1] * 24 + [0] * 24)}]})
    out = run_node(JointAttentionRegionCanvas, clip, 64, 48, text, torch.rand(1, 30, 40, channels))
    assert out[2].shape == (1, 48, 64, 3) and out.ui["ja_background"]
    with pytest.raises(ValueError, match=r"^\[Region Canvas\] input 'background': has 2 channels"):
        run_node(JointAttentionRegionCanvas, clip, 64, 48, text, torch.rand(1, 30, 40, 2))
