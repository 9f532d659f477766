"""Issue 15: each reproduction of the adversarial review, in-process in the real host."""
import json
from functools import partial

import pytest
import torch

from ja_nodes import run_node, validate_node
from ja_tiny import build, make_cond, patcher, sample, tiny_clip
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import MAX_MAPS, JointAttentionCapture, JointAttentionMaps
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

BAD = [float("nan"), float("inf"), -float("inf")]


@pytest.fixture(scope="module")
def flux():
    return build("flux")


def _regions(tiny):
    return run_node(JointAttentionRegion, make_cond(tiny, seed=3), torch.ones(1, 8, 8), 1.0)[0]


def _float_calls(tiny):
    """(node label, input, call(value)) for every float input of every node."""
    model = patcher(tiny)
    regions = _regions(tiny)
    apply = dict(model=model, regions=regions, base_ratio=0.2, start_percent=0.0, end_percent=1.0, double_blocks="all",
                 single_blocks="all", image_attention="restricted", global_prompt="background")
    taca = dict(model=model, gamma=1.2, sigma_threshold=0.97, apply_to="both", double_blocks="all", single_blocks="all")
    scale = dict(model=model, blocks="0", scale=1.5, mode="scale", start_percent=0.0, end_percent=1.0)
    capture = dict(model=model, double_blocks="all", single_blocks="all", start_percent=0.0, end_percent=1.0)
    region = dict(conditioning=make_cond(tiny, seed=3), mask=torch.ones(1, 8, 8), strength=1.0)
    calls = []
    for label, fn, kwargs, names in (
        ("Region (mask + prompt)", partial(run_node, JointAttentionRegion), region, ["strength"]),
        ("Apply Regional Attention", partial(run_node, JointAttentionRegionalApply), apply, ["base_ratio", "start_percent", "end_percent"]),
        ("TACA (text attention temperature)", partial(run_node, JointAttentionTACA), taca, ["gamma", "sigma_threshold"]),
        ("Text Scale per Block", partial(run_node, JointAttentionTextScale), scale, ["scale", "start_percent", "end_percent"]),
        ("Attention Capture", partial(run_node, JointAttentionCapture), capture, ["start_percent", "end_percent"]),
    ):
        for name in names:
            calls.append((label, name, lambda v, fn=fn, kwargs=kwargs, name=name: fn(**{**kwargs, name: v})))
    return calls


@pytest.mark.parametrize("value", BAD, ids=["nan", "inf", "-inf"])
def test_every_float_input_refuses_non_finite_values_by_name(flux, value):
    calls = _float_calls(flux)
    assert len(calls) == 11
    for label, name, call in calls:
        with pytest.raises(ValueError) as err:
            call(value)
        assert f"[{label}] input '{name}'" in str(err.value), str(err.value)


def test_non_finite_masks_and_conditioning_are_refused(flux):
    mask = torch.ones(1, 8, 8)
    mask[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[Region \(mask \+ prompt\)\] input 'mask'.*NaN"):
        run_node(JointAttentionRegion, make_cond(flux, seed=3), mask, 1.0)
    cond = make_cond(flux, seed=3)
    cond[0][0][0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"\[Region \(mask \+ prompt\)\] input 'conditioning'.*infinite"):
        run_node(JointAttentionRegion, cond, torch.ones(1, 8, 8), 1.0)
    with pytest.raises(ValueError, match=r"input 'mask'.*empty"):
        run_node(JointAttentionRegion, make_cond(flux, seed=3), torch.ones(1, 0, 8), 1.0)


HUGE = "9" * 5000


@pytest.mark.parametrize("field,value", [
    ("double_blocks", HUGE), ("double_blocks", f"0-{HUGE}"), ("single_blocks", "1," * 3000),
    ("double_blocks", "#" * 2000)])
def test_block_strings_with_huge_numbers_get_named_errors(flux, field, value):
    kwargs = dict(double_blocks="all", single_blocks="all")
    kwargs[field] = value
    with pytest.raises(ValueError) as err:
        run_node(JointAttentionRegionalApply, patcher(flux), _regions(flux), 0.2, 0.0, 1.0, image_attention="restricted",
                                            global_prompt="background", **kwargs)
    message = str(err.value)
    assert message.startswith(f"[Apply Regional Attention] input '{field}'") and len(message) < 400


@pytest.mark.parametrize("text", [HUGE, f"0-{HUGE}", "x" * 5000])
def test_text_scale_strings_with_huge_numbers_get_named_errors(flux, text):
    for field in ("blocks", "token_range"):
        kwargs = dict(blocks="0", token_range="")
        kwargs[field] = text
        with pytest.raises(ValueError) as err:
            run_node(JointAttentionTextScale, patcher(flux), scale=1.5, mode="scale", start_percent=0.0, end_percent=1.0,
                                            **kwargs)
        assert str(err.value).startswith(f"[Text Scale per Block] input '{field}'") and len(str(err.value)) < 400


def _canvas_value(**over):
    value = {"version": 1, "width": 64, "height": 64,
             "regions": [{"prompt": "a", "strength": 1.0, "mask": canvas_state.encode_rle([1] * 64)}]}
    value.update(over)
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("value", [
    "[" * 100_000 + "]" * 100_000,
    '{"version": 1, "width": ' + HUGE + ', "height": 64, "regions": []}',
    _canvas_value(regions=[{"prompt": "a", "mask": "1" * 5000}]),
    _canvas_value(regions=[{"prompt": "a", "mask": "z" * 9}]),
    _canvas_value(width=True),
    _canvas_value(regions=[{"prompt": "a", "strength": float("nan"), "mask": canvas_state.encode_rle([1] * 64)}]),
    _canvas_value(note="\U0001F600" * 1_100_000),  # 1.1 M characters, 4.4 MB of UTF-8: over the 4 MiB limit
], ids=["deep", "huge-width", "long-run", "run-digits", "bool-width", "nan-strength", "emoji-bytes"])
def test_malformed_canvas_values_get_the_canvas_error(value):
    message = validate_node(JointAttentionRegionCanvas, regions=value)
    assert isinstance(message, str) and message.startswith("[Region Canvas] input 'regions':"), message
    assert len(message) < 400
    with pytest.raises(ValueError, match=r"^\[Region Canvas\] input 'regions'"):
        run_node(JointAttentionRegionCanvas, None, 64, 64, value)


def test_canvas_regions_carry_small_masks_and_full_size_masks_output():
    clip = tiny_clip()
    mask = torch.zeros(8, 16)
    mask[:, :8] = 1
    value = canvas_state.encode_value(128, 64, [{"prompt": "a red house", "mask": mask}])
    out = run_node(JointAttentionRegionCanvas, clip, 128, 64, value).args
    regions, masks, image, width, height = out
    assert (width, height) == (128, 64)
    assert regions[0].mask.shape == (1, 8, 16)  # the drawing's 1/8 resolution
    assert masks.shape == (1, 64, 128) and torch.equal(masks[0, :, :64], torch.ones(64, 64))
    assert torch.equal(masks[0, :, 64:], torch.zeros(64, 64))
    assert image.shape == (1, 64, 128, 3)
    big = run_node(JointAttentionRegionCanvas, clip, 4096, 2048, canvas_state.encode_value(4096, 2048, [])).args
    assert big[2].shape == (1, 512, 1024, 3)  # the preview is at most 1024 px on its long side


def _captured(flux, clip, end=1.0, start=0.0, prompt="a sunny meadow"):
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    model, handle = run_node(JointAttentionCapture, patcher(flux), "all", "all", start, end)
    latent = sample(model, cond, cond, steps=2, cfg=1.0, width=64, height=64)
    return handle, {"samples": latent}


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


@pytest.mark.parametrize("words,match", [
    ("#99999", r"past the captured text"), ("#" + "9" * 30, r"not a position"), ("#x", r"not a position"),
    ("sunny," * 10_000, r"characters long"), ("nosuchword", r"not among the prompt's words")])
def test_maps_words_get_named_errors(flux, clip, words, match):
    handle, samples = _captured(flux, clip)
    with pytest.raises(ValueError, match=r"^\[Attention Maps\] input 'words': .*" + match):
        run_node(JointAttentionMaps, handle, samples, words, "", clip, "a sunny meadow")


def test_duplicate_words_make_one_map_and_the_map_count_is_limited(flux, clip):
    handle, samples = _captured(flux, clip)
    out = run_node(JointAttentionMaps, handle, samples, ",".join(["sunny", "Sunny", "#2", "#2"] * 500), "", clip,
                                      "a sunny meadow").args
    assert out[1].shape[0] == 2
    handle, samples = _captured(flux, clip)
    many = ",".join(f"#{i}" for i in range(MAX_MAPS + 1))
    with pytest.raises(ValueError, match=rf"input 'words'.*at most {MAX_MAPS}"):
        run_node(JointAttentionMaps, handle, samples, many, "", clip, "a sunny meadow")


@pytest.mark.parametrize("prefix", ["x" * 300, "d/" * 2000 + "x", "a//b", "../x", "/abs"])
def test_filename_prefix_is_checked_when_queued(prefix):
    message = validate_node(JointAttentionMaps, filename_prefix=prefix, words="")
    assert isinstance(message, str) and message.startswith("[Attention Maps] input 'filename_prefix'"), message
    assert len(message) < 400
    assert validate_node(JointAttentionMaps, filename_prefix="attention/run", words="a, #3") is True


def test_a_run_that_recorded_nothing_says_so(flux, clip):
    handle, samples = _captured(flux, clip, start=0.999, end=1.0)  # no step falls in the window
    with pytest.raises(ValueError, match=r"input 'capture': the sampler ran but recorded nothing"):
        run_node(JointAttentionMaps, handle, samples, "", "", clip, "a sunny meadow")
    skip = run_node(JointAttentionTextScale, patcher(flux), "all", 1.0, "skip", 0.0, 1.0)[0]
    model, handle = run_node(JointAttentionCapture, skip, "all", "all", 0.0, 1.0)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a sunny meadow"))
    latent = sample(model, cond, cond, steps=1, cfg=1.0, width=64, height=64)
    with pytest.raises(ValueError, match=r"recorded nothing"):
        run_node(JointAttentionMaps, handle, {"samples": latent}, "", "", clip, "a sunny meadow")
    # Read again without sampling again (a second Maps node, or ComfyUI's cache): says the maps were read.
    with pytest.raises(ValueError, match=r"the sampler ran, but its maps were already read"):
        run_node(JointAttentionMaps, handle, {"samples": latent}, "", "", clip, "a sunny meadow")
    # A capture whose sampler never ran (ComfyUI took the result from its cache) keeps its own message.
    _, never = run_node(JointAttentionCapture, skip, "all", "all", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"ComfyUI reused its cached result"):
        run_node(JointAttentionMaps, never, {"samples": latent}, "", "", clip, "a sunny meadow")


def test_non_finite_settings_never_reach_a_latent(flux):
    """What used to give an all-NaN latent (base_ratio NaN) is refused; the finite neighbour samples finite."""
    model = run_node(JointAttentionRegionalApply, patcher(flux), _regions(flux), 0.999, 0.0, 1.0, "all", "all",
                                                "restricted", "background")[0]
    out = sample(model, make_cond(flux, seed=1), make_cond(flux, seed=2), steps=2, cfg=2.0)
    assert bool(torch.isfinite(out).all())


def test_object_count_runs_off_the_event_loop_and_concurrent_requests_share_one_walk(monkeypatch):
    import asyncio
    import threading

    from joint_attention_pack.integration import runtime

    walks = []
    gate = threading.Event()
    real_get_objects = runtime.gc.get_objects

    def slow_objects():
        walks.append(threading.current_thread())
        gate.wait(5)
        return real_get_objects()

    monkeypatch.setattr(runtime.gc, "get_objects", slow_objects)

    async def scenario():
        loop_thread = threading.current_thread()
        first = asyncio.ensure_future(runtime.report_off_loop(True))
        await asyncio.sleep(0.05)
        ticks = 0
        while not walks:
            await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(runtime.report_off_loop(True)) for _ in range(3)]
        for _ in range(5):  # the loop keeps serving while the walk runs
            await asyncio.sleep(0)
            ticks += 1
        gate.set()
        reports = await asyncio.gather(first, *waiting)
        return loop_thread, ticks, reports

    loop_thread, ticks, reports = asyncio.run(scenario())
    assert ticks == 5 and walks and all(t is not loop_thread for t in walks)
    assert len(walks) <= 2  # the three that waited share the walk that started after they asked
    assert all(r["process_tensors"] > 0 for r in reports)
