"""Issue 6 (maps part): exact text-to-image maps in the real host, labels, leakage, files."""
import json
import os

import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import build, make_cond, patcher, sample, tiny_clip
from joint_attention_pack.integration.runtime import MEMORY
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.maps import JointAttentionCapture, JointAttentionMaps, region_leakage, safe_prefix
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def capture(model, double="all", single="all", start=0.0, end=1.0):
    return run_node(JointAttentionCapture, model, double, single, start, end)


@pytest.mark.parametrize("family", family_params("maps_reference"))
@pytest.mark.parametrize("features", ["plain", "regions", "regions+taca"])
def test_maps_equal_full_softmax_reference(family, features):
    tiny = family.build()
    base = patcher(tiny)
    single = "all" if tiny.n_single else "none"
    sampling = base.get_model_object("model_sampling")
    model, config = base, ReferenceConfig()
    if features != "plain":
        pixels, token_masks = cell_masks(True)
        regions, conds = regions_for(tiny, pixels, [1.0, 2.0])
        model = run_node(JointAttentionRegionalApply, model, regions, 0.3, 0.0, 0.6, "0", "odd" if tiny.n_single else "none",
                                                    "restricted", "background")[0]
        config = regional_config(base, tiny, conds, token_masks, [1.0, 2.0], 0.3, 0.0, 0.6, "0", "odd")
    if features == "regions+taca":
        model = run_node(JointAttentionTACA, model, 1.4, 0.5, "both", "all", single)[0]
        config.gamma, config.gamma_threshold = 1.4, 0.5
        config.gamma_double, config.gamma_single = set(range(tiny.n_double)), set(range(tiny.n_single))
    model, handle = capture(model, "all", single, 0.0, 0.7)
    config.capture_double, config.capture_single = set(range(tiny.n_double)), set(range(tiny.n_single))
    config.capture_start = float(sampling.percent_to_sigma(0.0))
    config.capture_end = float(sampling.percent_to_sigma(0.7))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    latent = family.cell_latent(tiny, WIDTH, HEIGHT)  # Lens: a latent of 16 px cells, so the token masks fit
    got_latent = sample(model, pos, neg, latent=latent, **KW)
    want_latent = sample(reference, pos, neg, latent=latent, **KW)
    torch.testing.assert_close(got_latent, want_latent, atol=1e-4, rtol=1e-4)
    result = handle.take()
    assert result is not None and handle.take() is None  # read once, then released
    torch.testing.assert_close(result["maps"], config.captured_maps(), atol=1e-5, rtol=1e-5)
    assert result["steps"] >= 1 and result["blocks"] == list(range(tiny.n_double + tiny.n_single))
    assert MEMORY.registry.count("run") == 0


def test_capture_without_regions_leaves_sampling_unchanged_and_maps_sum_to_text_mass():
    tiny = build("flux")
    base = patcher(tiny)
    model, handle = capture(base)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    torch.testing.assert_close(sample(model, pos, neg, **KW), sample(base, pos, neg, **KW), atol=1e-5, rtol=1e-5)
    maps = handle.take()["maps"]
    assert maps.shape == ((HEIGHT // 16) * (WIDTH // 16), 8)
    assert bool((maps >= 0).all()) and bool((maps.sum(1) <= 1 + 1e-5).all())


def test_region_leakage_is_zero_in_selected_blocks_and_positive_elsewhere():
    tiny = build("flux")
    base = patcher(tiny)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "0", "none", "restricted", "background")[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    selected, h1 = capture(model, "0", "none")
    sample(selected, pos, neg, **KW)
    leaks = region_leakage(h1.take())
    assert len(leaks) == 2 and max(leaks) == 0.0
    unselected, h2 = capture(model, "1", "all")  # regional masking is not applied in these blocks
    sample(unselected, pos, neg, **KW)
    assert min(region_leakage(h2.take())) > 0.0


def test_maps_node_labels_words_with_the_text_encoders_tokenizer_and_saves(tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path))
    tiny = build("flux")
    clip = tiny_clip()
    prompt = "a red house by the lake"
    pos = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0, 1.0])
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.2, 0.0, 1.0, "all", "all", "restricted", "background")[0]
    model, handle = capture(model)
    latent = sample(model, pos, neg, **KW)
    heat, masks, info = run_node(JointAttentionMaps, handle, {"samples": latent}, "red, house, region 2, #1",
                                                     "maps/run", clip=clip, prompt=prompt).args
    assert heat.shape == (4, HEIGHT, WIDTH, 3) and masks.shape == (4, HEIGHT, WIDTH)
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    assert "red [2]" in info and "house [3]" in info and "region 2 leakage" in info
    files = sorted(os.listdir(tmp_path / "maps"))
    assert len([f for f in files if f.endswith(".png")]) == 4
    maps_file = [f for f in files if f.endswith(".safetensors")][0]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "maps" / maps_file), "pt") as f:
        raw = f.get_tensor("maps")
        meta = f.metadata()
    assert raw.dtype == torch.float32 and raw.shape[1:] == (HEIGHT // 16, WIDTH // 16)
    tokens = json.loads(meta["tokens"])
    assert tokens[2] == "red" and tokens[3] == "house" and tokens[raw.shape[0] - 1].startswith("region 2")
    # Padding / start / end tokens are never offered as words.
    with pytest.raises(ValueError, match=r"input 'words'.*not among the prompt's words"):
        model2, handle2 = capture(patcher(tiny))
        sample(model2, pos, neg, **KW)
        run_node(JointAttentionMaps, handle2, {"samples": latent}, "<|endoftext|>", "", clip=clip, prompt=prompt)


@pytest.mark.parametrize("prefix", ["../escape", "/abs/path", "a/../../b", "bad\\name", "<script>"])
def test_traversal_and_odd_prefixes_are_refused(prefix):
    with pytest.raises(ValueError, match=r"\[Attention Maps\] input 'filename_prefix'"):
        safe_prefix(prefix)
    assert safe_prefix("attention/run 1") == "attention/run 1"


def test_reading_a_capture_twice_or_before_sampling_gives_a_clear_message():
    tiny = build("flux")
    model, handle = capture(patcher(tiny))
    with pytest.raises(ValueError, match=r"no attention was recorded.*cached"):
        run_node(JointAttentionMaps, handle, {"samples": torch.zeros(1, 16, 8, 12)}, "", "")


@pytest.mark.parametrize("family", ["flux", "z_image"])
def test_the_token_grid_is_the_captured_one_and_another_latent_is_refused(family):
    """The maps' grid is the one the capture recorded (FLUX patches 2x2 latent cells, Z-Image too; nothing is guessed
    from the latent): a latent of another size, though its cells could make as many tokens, is refused by name."""
    tiny = build(family)
    model, handle = capture(patcher(tiny))
    latent = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **KW)
    heat = run_node(JointAttentionMaps, handle, {"samples": latent}, "#0", "").args[0]
    assert heat.shape == (1, HEIGHT, WIDTH, 3)
    model, handle = capture(patcher(tiny))
    latent = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **KW)
    h, w = latent.shape[-2:]
    transposed = {"samples": latent.transpose(-1, -2).contiguous()}  # the same number of tokens, other grid
    assert (h, w) != (w, h)
    with pytest.raises(ValueError, match=rf"^\[Attention Maps\] input 'samples': the latent \({w}x{h}\) is not the "
                                         rf"one the capture recorded \({h}x{w}, "):
        run_node(JointAttentionMaps, handle, transposed, "#0", "")


def test_two_captures_on_one_model_never_mix():
    tiny = build("flux")
    first, h1 = capture(patcher(tiny), "0", "none")
    both, h2 = capture(first, "none", "0")
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    sample(both, pos, neg, **KW)
    r1, r2 = h1.take(), h2.take()
    assert r1["blocks"] == [0] and r2["blocks"] == [tiny.n_double]
    assert not torch.equal(r1["maps"], r2["maps"])
