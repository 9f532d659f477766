"""The test harness itself: tiny real ComfyUI models, KSampler-style sampling, the in-process test nodes."""
import importlib.util
import sys

import pytest
import torch

import ja_families
import ja_tiny
from ja_tiny import build, make_cond, sample

FAMILIES = [pytest.param(entry, id=entry.name, marks=[pytest.mark.skip(reason=entry.missing_from_host())]
                         if entry.missing_from_host() else []) for entry in ja_families.FAMILIES]
TEST_NODES = ja_tiny.__file__.rsplit("/", 1)[0] + "/comfy_nodes/ja_test_nodes/__init__.py"
# 40x24 px -> a 5x3 latent: odd in both directions, so the models pad to their patch size.
ODD = dict(width=40, height=24)
# HunyuanVideo's forward does not pad latents to its patch (HunyuanImage 2.1 files have patch 1; the tiny model's patch
# 2, which gives the tests' latents the other families' token grid, needs even latents): 48x32 px -> a 6x4 latent.
SIZES = {name: dict(width=48, height=32) for name in ("hunyuan_image", "hunyuan_video", "hunyuan_video_i2v",
                                                     "hunyuan_video_skyreels", "hunyuan_video15", "hunyuan_video15_sr")}


@pytest.mark.parametrize("entry", FAMILIES)
def test_builders_wrap_real_comfy_classes_and_report_their_sizes(entry):
    """Each builder makes the host's own model class (the one its test entry names), which the pack's family reads
    with the block counts and text width the builder reports."""
    import comfy.model_base
    import comfy.model_patcher

    from joint_attention_pack.families import named

    tiny = entry.build()
    assert isinstance(tiny.patcher, comfy.model_patcher.ModelPatcher)
    model = tiny.patcher.model
    assert type(model) is getattr(comfy.model_base, entry.host_class)
    assert tiny.latent_channels == model.latent_format.latent_channels
    family = named(entry.family)
    net = family.diffusion_model(tiny.patcher)
    assert family.block_counts(net) == (tiny.n_double, tiny.n_single)
    assert family.text_features(net) == tiny.context_dim
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(torch.isfinite(b).all() for b in net.buffers() if b.is_floating_point())


def test_sd35m_has_image_only_attention_in_some_blocks():
    blocks = build("sd35m").patcher.model.diffusion_model.joint_blocks
    with_attn2 = [i for i, b in enumerate(blocks) if b.x_block.x_block_self_attn]
    assert 0 < len(with_attn2) < len(blocks)


def test_builders_are_deterministic_per_seed():
    a, b, c = (build("flux", seed=s).patcher.model.diffusion_model for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("entry", FAMILIES)
def test_sampling_is_finite_deterministic_and_follows_the_prompt(entry):
    import comfy.sample

    tiny = entry.build()
    cell = ja_tiny.latent_cell(tiny)
    pos, other, neg = (make_cond(tiny, seed=s) for s in (1, 3, 2))
    size = SIZES.get(entry.name, ODD)

    out = sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=3.0, batch=2, **size)
    # The latent comes back in the shape the host's own latent format gives the empty latent the sampler starts from
    # (Qwen-Image's Wan 2.1 format carries a time axis of 1; the HunyuanImage 2.1 refiner's format packs frame pairs
    # into 64 channels going in and unpacks them coming out).
    latent_hw = (size["height"] // cell, size["width"] // cell)
    start = comfy.sample.fix_empty_latent_channels(tiny.patcher, torch.zeros((2, tiny.latent_channels) + latent_hw))
    assert out.shape == tiny.patcher.model.process_latent_out(start).shape and out.shape[-2:] == latent_hw
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert not torch.equal(out[0], out[1])  # each image of the batch gets its own noise
    assert torch.equal(out, sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=3.0, batch=2, **size))
    assert not torch.allclose(out, sample(tiny.patcher, other, neg, seed=0, steps=2, cfg=3.0, batch=2, **size))

    plain = sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=1.0, **size)
    assert torch.isfinite(plain).all()
    assert not torch.allclose(plain, sample(tiny.patcher, other, neg, seed=0, steps=2, cfg=1.0, **size))


@pytest.mark.parametrize("family", ["flux", "flux2"])
def test_reference_latent_is_used(family):
    tiny = build(family)
    ref = torch.randn(1, tiny.latent_channels, 3, 3, generator=torch.Generator().manual_seed(5))
    neg = make_cond(tiny, seed=2)
    plain = sample(tiny.patcher, make_cond(tiny, seed=1), neg, steps=2, **ODD)
    with_ref = sample(tiny.patcher, make_cond(tiny, seed=1, ref_latents=[ref]), neg, steps=2, **ODD)
    assert torch.isfinite(with_ref).all()
    assert not torch.allclose(plain, with_ref)


def test_given_latent_and_partial_denoise():
    tiny = build("sd3")
    latent = torch.randn(1, 16, 5, 7, generator=torch.Generator().manual_seed(0))
    out = sample(tiny.patcher, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=4, denoise=0.5, latent=latent)
    assert out.shape == latent.shape and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def test_nodes():
    name = "ja_test_nodes_in_process"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TEST_NODES)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_test_nodes_in_process(test_nodes):
    import comfy.model_patcher

    nodes = test_nodes.NODE_CLASS_MAPPINGS
    assert all(name.startswith("JATest") for name in nodes)
    (model,) = nodes["JATestTinyModel"]().load("chroma", 0)
    assert isinstance(model, comfy.model_patcher.ModelPatcher)

    encode = nodes["JATestEncode"]().encode
    (a,), (a2,), (b,) = encode("flux", "a red house", 5), encode("flux", "a red house", 5), encode("flux", "a lake", 5)
    assert a[0][0].shape == (1, 5, ja_tiny.CONTEXT_DIM) and a[0][1]["pooled_output"].shape == (1, ja_tiny.POOLED_DIM)
    assert torch.equal(a[0][0], a2[0][0]) and not torch.equal(a[0][0], b[0][0])

    latent = torch.randn(2, 16, 3, 5)
    (image,) = nodes["JATestLatentToImage"]().convert({"samples": latent})
    assert image.shape == (2, 24, 40, 3) and 0 <= image.min() and image.max() <= 1
