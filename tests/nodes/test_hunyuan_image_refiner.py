"""HunyuanImage 2.1 refiner (ComfyUI 0.33): what only the refiner has beyond the shared family scenarios (ja_families
runs those on it): the image to refine beside the noise as channels, the paired-frame latent (one frame pair for an
image; more are refused by name), and the 3-D patch it is checked on."""
import pytest
import torch

from ja_families import BY_NAME
from ja_nodes import run_node
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, with_options
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

_missing = BY_NAME["hunyuan_image_refiner"].missing_from_host()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

KW = dict(seed=0, steps=3, cfg=1.0, width=96, height=64)


def _regional(base, region_cond):
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 8, 8), 1.0)[0]
    return run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                    "background")[0]


def test_full_image_region_with_an_image_to_refine_equals_its_text_alone():
    """As HunyuanRefinerLatent sets it up: the image to refine (`concat_latent_image`) on both prompts, joined to the
    noise as channels by the host; a full-image region at strength 1 gives the image of its text alone."""
    tiny = build("hunyuan_image_refiner")
    base = patcher(tiny)
    image = torch.randn(1, 32, 1, 4, 6, generator=torch.Generator().manual_seed(4))  # the refiner VAE's latent
    base_cond = with_options(make_cond(tiny, seed=1, n_tokens=7), concat_latent_image=image, noise_augmentation=0.1)
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    neg = with_options(make_cond(tiny, seed=2), concat_latent_image=image, noise_augmentation=0.1)
    got = sample(_regional(base, region_cond), base_cond, neg, **KW)
    want = sample(base, prompt_alone(region_cond, base_cond), neg, **KW)
    assert (want - sample(base, base_cond, neg, **KW)).abs().max() > 1e-3  # the two prompts differ
    without_image = sample(base, prompt_alone(region_cond, make_cond(tiny, seed=1, n_tokens=7)), neg, **KW)
    assert (want - without_image).abs().max() > 1e-3  # the image to refine reaches the model
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_latent_of_more_frame_pairs_is_refused_by_name():
    tiny = build("hunyuan_image_refiner")
    model = _regional(patcher(tiny), make_cond(tiny, seed=5))
    latent = torch.zeros(1, 64, 2, 4, 6)  # two frame pairs: a video latent
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': the HunyuanImage 2.1 refiner "
                                         r"got a latent of 2 frame pairs"):
        sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), latent=latent, **KW)


def test_a_hunyuan_image_model_seen_as_the_refiner_is_refused_as_a_variant():
    """The refiner is checked on its 3-D patch [1, 1, 1]: a HunyuanImage 2.1 model (2-D patches) under the refiner's
    class is refused by name, never run with the refiner's layout."""
    import comfy.model_base

    model = patcher(build("hunyuan_image")).clone()
    original = model.model.__class__
    model.model.__class__ = comfy.model_base.HunyuanImage21Refiner
    try:
        with pytest.raises(ValueError, match=r"expected a HunyuanImage 2.1 refiner with patch size \[1, 1, 1\], "
                                             r"got \[2, 2\]"):
            run_node(JointAttentionTACA, model, 2.0, 0.0, "both", "all", "all")
    finally:
        model.model.__class__ = original
