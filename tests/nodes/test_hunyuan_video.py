"""HunyuanVideo 1.0 / 1.5: what its family module does beyond the shared family scenarios (ja_families runs those on
one frame): videos of several frames, MASK batches read as frames, 1.0's padded prompts, and the inputs refused by
name (1.5's vision tokens, reference latents, the I2V guiding frame with region texts where the host cannot keep it).
"""
import pytest
import torch

from ja_families import host_param
from ja_nodes import run_node
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, with_options
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

FRAMES = 3  # latent frames of the tests' videos (9 pixel frames for the causal VAE)
T2V = [host_param("hunyuan_video"), host_param("hunyuan_video15")]


def video_latent(tiny, frames=FRAMES, rows=8, cols=12):
    """An empty video latent [1, C, frames, H, W]: 1.0 (patch 2) and 1.5 (patch 1, drawn at half size) both give a
    4 x 6 token grid per frame."""
    cell = getattr(patcher(tiny).model, "ja_latent_px", 8)
    scale = cell // 8
    return torch.zeros(1, tiny.latent_channels, frames, rows // scale, cols // scale)


def regional(base, mask, cond, strength=1.0, base_ratio=0.0):
    regions = run_node(JointAttentionRegion, cond, mask, strength)[0]
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 1.0, "all", "all", "restricted",
                    "background")[0]


KW = dict(seed=0, steps=3, cfg=1.0)


@pytest.mark.parametrize("name", T2V)
def test_full_video_region_equals_prompting_with_its_text(name):
    """A region covering every frame at strength 1, base ratio 0, all blocks: the video of prompting with the
    region's text alone, over several frames. (A batch of equal masks is one mask to the Region node; per-frame
    batches: test_pixel_frame_masks_act_as_their_latent_frame_means.)"""
    tiny = build(name)
    base = patcher(tiny)
    base_cond, region_cond = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=5, n_tokens=5)
    model = regional(base, torch.ones(1, 8, 12), region_cond)
    neg = make_cond(tiny, seed=2)
    latent = video_latent(tiny)
    got = sample(model, base_cond, neg, latent=latent, **KW)
    want = sample(base, prompt_alone(region_cond, base_cond), neg, latent=latent, **KW)
    assert got.shape[2] == FRAMES
    assert (want - sample(base, base_cond, neg, latent=latent, **KW)).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", T2V)
def test_full_video_region_lora_equals_core_lora_over_several_frames(name):
    """A region LoRA on a region covering every frame: the video of core's LoRA loader with the region's text as the
    prompt (its token weights run frame by frame, as the regional plan's masks do)."""
    from ja_lora import core_lora, write_lora
    from joint_attention_pack.nodes.region_lora import JointAttentionRegionLoRA

    tiny = build(name)
    base = patcher(tiny)
    lora = write_lora(base, f"video_{name}.safetensors", "comfy", seed=3)
    base_cond, region_cond = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 8, 12), 1.0)[0]
    regions = run_node(JointAttentionRegionLoRA, regions, 1, lora, 0.8, 0.0, 1.0)[0]
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    neg = make_cond(tiny, seed=2)
    latent = video_latent(tiny)
    prompt = prompt_alone(region_cond, base_cond)
    got = sample(model, base_cond, neg, latent=latent, **KW)
    want = sample(core_lora(base, lora, 0.8), prompt, neg, latent=latent, **KW)
    assert (want - sample(base, prompt, neg, latent=latent, **KW)).abs().max() > 1e-3  # the LoRA acts
    assert float((got - want).norm() / want.norm()) <= 1e-4


@pytest.mark.parametrize("name", T2V)
def test_pixel_frame_masks_act_as_their_latent_frame_means(name):
    """9 pixel-frame masks give the video of the 3 latent-frame masks they compress to (frame 0 alone, then the mean
    of each group of 4), and masks that differ per frame give another video than one mask for every frame."""
    tiny = build(name)
    base = patcher(tiny)
    pos, neg, region_cond = make_cond(tiny, seed=1), make_cond(tiny, seed=2), make_cond(tiny, seed=5)
    pixel = torch.zeros(1 + 4 * (FRAMES - 1), 8, 12)
    pixel[0, :, :6] = 1.0  # frame 0: left half
    pixel[1:5, :, 6:] = 1.0  # frames 1-4: right half
    pixel[5:7, :, :] = 1.0  # frames 5-6 of 5-8: everywhere, half strength after the mean
    latent_masks = torch.zeros(FRAMES, 8, 12)
    latent_masks[0, :, :6], latent_masks[1, :, 6:], latent_masks[2] = 1.0, 1.0, 0.5
    latent = video_latent(tiny)
    by_pixel = sample(regional(base, pixel, region_cond, base_ratio=0.2), pos, neg, latent=latent, **KW)
    by_latent = sample(regional(base, latent_masks, region_cond, base_ratio=0.2), pos, neg, latent=latent, **KW)
    torch.testing.assert_close(by_pixel, by_latent, atol=1e-6, rtol=1e-6)
    every = sample(regional(base, latent_masks[:1], region_cond, base_ratio=0.2), pos, neg, latent=latent, **KW)
    assert (every - by_latent)[:, :, 1:].abs().max() > 1e-4


@pytest.mark.parametrize("count", [2, 4])
def test_a_mask_batch_that_matches_no_frame_count_is_refused(count):
    tiny = build("hunyuan_video")
    base = patcher(tiny)
    masks = torch.rand(count, 8, 12, generator=torch.Generator().manual_seed(count))  # a mask per frame, all differ
    model = regional(base, masks, make_cond(tiny, seed=5))
    with pytest.raises(ValueError, match=rf"\[Region \(mask \+ prompt\)\] input 'mask': a batch of {count} masks does "
                                         r"not match the 3 latent frame\(s\) being sampled; a video region takes 1 or "
                                         r"3 or 9 mask\(s\)"):
        sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), latent=video_latent(tiny), **KW)


class VisionOutput:
    """What a CLIP vision encoder gives the conditioning (HunyuanVideo 1.5 image-to-video reads last_hidden_state)."""

    def __init__(self, seed=3):
        self.last_hidden_state = torch.randn(1, 4, 1152, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("feature", ["taca", "regions"])
@pytest.mark.parametrize("name", [host_param("hunyuan_video15"), host_param("hunyuan_video15_sr")])
def test_vision_tokens_are_refused_by_name_even_without_regions(name, feature):
    """1.5's vision tokens (clip_fea) join the text stream as prompt text: refused for every feature, TACA and text
    scale included (their text keys / text stream would take the vision tokens for text)."""
    tiny = build(name)
    base = patcher(tiny)
    model = (run_node(JointAttentionTACA, base, 1.2, 0.0, "both", "all", "all")[0] if feature == "taca"
             else regional(base, torch.ones(1, 8, 12), make_cond(tiny, seed=5)))
    pos = with_options(make_cond(tiny, seed=1), clip_vision_output=VisionOutput())
    with pytest.raises(ValueError, match=r"input 'model': the conditioning carries vision tokens \(clip_fea"):
        sample(model, pos, make_cond(tiny, seed=2), latent=video_latent(tiny), **KW)
    sample(base, pos, make_cond(tiny, seed=2), latent=video_latent(tiny), **KW)  # the model itself takes them


def test_a_reference_latent_is_refused_by_name():
    tiny = build("hunyuan_video")
    base = patcher(tiny)
    model = run_node(JointAttentionTACA, base, 1.2, 0.0, "both", "all", "all")[0]
    pos = with_options(make_cond(tiny, seed=1), ref_latent=torch.zeros(1, tiny.latent_channels, 1, 8, 12))
    with pytest.raises(ValueError, match=r"input 'model': the conditioning carries a reference latent \(ref_latent\)"):
        sample(model, pos, make_cond(tiny, seed=2), latent=video_latent(tiny), **KW)


def test_the_guiding_frame_with_regions_is_exact_or_refused():
    """The I2V "replace" guidance (guiding_frame_index): the host modulates the first frame's worth of tokens of the
    joint stream as the guiding frame. Where the single stream is [image ; text] (0.3.75) those are the first frame's
    image tokens whatever the text length, and the full-region identity holds; where it is [text ; image] (0.33) a
    region text would move them, and region texts are refused by name."""
    tiny = build("hunyuan_video_i2v")
    base = patcher(tiny)
    dm = base.model.diffusion_model
    base_cond, region_cond = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=5, n_tokens=5)
    base_cond = with_options(base_cond, guiding_frame_index=0)
    model = regional(base, torch.ones(1, 8, 12), region_cond)
    neg = with_options(make_cond(tiny, seed=2), guiding_frame_index=0)
    latent = video_latent(tiny)
    if not getattr(dm.double_blocks[0], "flipped_img_txt", False):
        with pytest.raises(ValueError, match=r"input 'regions': HunyuanVideo image-to-video with a guiding frame"):
            sample(model, base_cond, neg, latent=latent, **KW)
        return
    got = sample(model, base_cond, neg, latent=latent, **KW)
    want = sample(base, with_options(prompt_alone(region_cond, base_cond), guiding_frame_index=0), neg,
                  latent=latent, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def padded(cond, pads: int):
    """The conditioning as HunyuanVideo 1.0's text encoder gives a prompt with padding tokens: `pads` more tokens
    after the text and a padding mask (1 = token, 0 = padding)."""
    tokens, options = cond[0]
    pad = torch.randn(1, pads, tokens.shape[2], generator=torch.Generator().manual_seed(99))
    mask = torch.cat([torch.ones(1, tokens.shape[1], dtype=torch.long), torch.zeros(1, pads, dtype=torch.long)], 1)
    return [[torch.cat([tokens, pad], dim=1), {**options, "attention_mask": mask}]]


def test_a_padded_prompt_runs_as_the_host_runs_it():
    """1.0 with a padded prompt: the pack takes the padding mask out, refines the prompt from its padded tokens with
    the mask (as the host does) and drops the padding tokens; a capture (which changes nothing) then gives the video
    of the plain model with the padding."""
    tiny = build("hunyuan_video")
    base = patcher(tiny)
    pos, neg = padded(make_cond(tiny, seed=1, n_tokens=6), 4), make_cond(tiny, seed=2)
    latent = video_latent(tiny)
    model = run_node(JointAttentionCapture, base, "all", "all", 0.0, 1.0)[0]
    # cfg 1: the host's own forward cannot batch two padding masks (it builds a one-row block mask)
    got = sample(model, pos, neg, latent=latent, **KW)
    want = sample(base, pos, neg, latent=latent, **KW)
    assert (want - sample(base, [[pos[0][0][:, :6], make_cond(tiny, seed=1, n_tokens=6)[0][1]]], neg, latent=latent,
                          **KW)).abs().max() > 1e-4  # the padding changes the host's video: the pack must keep it
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_full_video_region_with_padded_texts_equals_its_padded_text_alone():
    """1.0, the prompt and the region text both padded: the full-region identity against the plain model prompted
    with the region's padded text and its mask."""
    tiny = build("hunyuan_video")
    base = patcher(tiny)
    base_cond = padded(make_cond(tiny, seed=1, n_tokens=7), 3)
    region_cond = padded(make_cond(tiny, seed=5, n_tokens=5), 4)
    model = regional(base, torch.ones(1, 8, 12), region_cond)
    neg = make_cond(tiny, seed=2)
    latent = video_latent(tiny)
    got = sample(model, base_cond, neg, latent=latent, **KW)
    alone = [[region_cond[0][0], {**base_cond[0][1], "attention_mask": region_cond[0][1]["attention_mask"]}]]
    want = sample(base, alone, neg, latent=latent, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_guiding_frame_with_a_padded_prompt_is_exact_or_refused_naming_the_node():
    """I2V "replace" guidance and a padded prompt: dropping the padding moves the guiding frame's tokens where the
    stream is [text ; image] (0.33): refused, naming the pack's node on the model. Where it is [image ; text] (0.3.75)
    the capture (which changes nothing) gives the plain model's video."""
    tiny = build("hunyuan_video_i2v")
    base = patcher(tiny)
    pos = with_options(padded(make_cond(tiny, seed=1, n_tokens=6), 4), guiding_frame_index=0)
    neg = with_options(make_cond(tiny, seed=2), guiding_frame_index=0)
    latent = video_latent(tiny)
    model = run_node(JointAttentionCapture, base, "all", "all", 0.0, 1.0)[0]
    if not getattr(base.model.diffusion_model.double_blocks[0], "flipped_img_txt", False):
        with pytest.raises(ValueError, match=r"^\[Attention Capture\] input 'model': HunyuanVideo image-to-video with a "
                                             r"guiding frame .* cannot take a prompt with padding tokens"):
            sample(model, pos, neg, latent=latent, **KW)
        return
    torch.testing.assert_close(sample(model, pos, neg, latent=latent, **KW), sample(base, pos, neg, latent=latent, **KW),
                               atol=1e-5, rtol=1e-5)


def test_prompts_batched_with_different_padding_are_refused_by_name():
    """The prompt and the negative prompt with the same padded length but different numbers of padding tokens run in
    one batch; dropping the padding would leave rows of different lengths: refused, with the fix."""
    tiny = build("hunyuan_video")
    base = patcher(tiny)
    pos, neg = padded(make_cond(tiny, seed=1, n_tokens=6), 4), padded(make_cond(tiny, seed=2, n_tokens=5), 5)
    model = run_node(JointAttentionTACA, base, 1.2, 0.0, "both", "all", "all")[0]
    with pytest.raises(ValueError, match=r"\[TACA \(text attention temperature\)\] input 'model': the prompts batched "
                                         r"in this forward have different numbers of padding tokens"):
        sample(model, pos, neg, latent=video_latent(tiny), seed=0, steps=2, cfg=2.0)


def test_maps_of_a_video_are_the_mean_over_its_frames(tmp_path, monkeypatch):
    """The capture records every frame's image tokens; the maps node shows the clip's map, each token cell averaged
    over the frames: the mean of the per-frame maps the capture holds."""
    import folder_paths
    from safetensors.torch import load_file

    from joint_attention_pack.nodes.maps import JointAttentionMaps

    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path))
    tiny = build("hunyuan_video")
    model, handle = run_node(JointAttentionCapture, patcher(tiny), "all", "all", 0.0, 1.0)
    latent = sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), latent=video_latent(tiny), **KW)
    result = handle.result
    assert result["frames"] == FRAMES and result["maps"].shape[0] == FRAMES * 4 * 6
    per_frame = result["maps"].reshape(FRAMES, 4 * 6, -1)
    assert (per_frame[0] - per_frame[-1]).abs().max() > 0  # frames differ; the map is their mean
    heat = run_node(JointAttentionMaps, handle, {"samples": latent}, "#0", "video/maps").args[0]
    assert heat.shape[0] == 1 and heat.shape[-1] == 3
    saved = [f for f in (tmp_path / "video").iterdir() if f.name.endswith("_maps.safetensors")]
    raw = load_file(str(saved[0]))["maps"]  # [words, rows, cols]
    torch.testing.assert_close(raw[0], per_frame.mean(dim=0)[:, 0].reshape(4, 6))
