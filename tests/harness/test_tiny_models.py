"""The test harness itself: tiny real ComfyUI models, KSampler-style sampling, the in-process test nodes."""
import importlib.util
import sys

import pytest
import torch

import ja_tiny
from ja_tiny import build, make_cond, sample

FAMILIES = list(ja_tiny.BUILDERS)
TEST_NODES = ja_tiny.__file__.rsplit("/", 1)[0] + "/comfy_nodes/ja_test_nodes/__init__.py"
# 40x24 px -> a 5x3 latent: odd in both directions, so the models pad to their patch size.
ODD = dict(width=40, height=24)


def test_builders_wrap_real_comfy_classes_and_report_their_sizes():
    import comfy.model_base
    import comfy.model_patcher

    expected_base = {"flux": comfy.model_base.Flux, "flux2": comfy.model_base.Flux2, "chroma": comfy.model_base.Chroma,
                     "sd3": comfy.model_base.SD3, "sd35m": comfy.model_base.SD3,
                     "qwen_image": comfy.model_base.QwenImage, "z_image": comfy.model_base.Lumina2,
                     "chroma_radiance": comfy.model_base.ChromaRadiance, "aura_flow": comfy.model_base.AuraFlow,
                     "lens": getattr(comfy.model_base, "Lens", None),
                     "joy_image": getattr(comfy.model_base, "JoyImage", None)}
    for family in FAMILIES:
        if ja_tiny.host_lacks(family):
            continue
        tiny = build(family)
        assert isinstance(tiny.patcher, comfy.model_patcher.ModelPatcher)
        model = tiny.patcher.model
        assert type(model) is expected_base[family]
        assert tiny.latent_channels == model.latent_format.latent_channels
        net = model.diffusion_model
        if family in ("sd3", "sd35m"):
            assert (len(net.joint_blocks), tiny.n_single) == (tiny.n_double, 0)
            assert net.context_embedder.in_features == tiny.context_dim
        elif family == "qwen_image":
            assert (len(net.transformer_blocks), tiny.n_single) == (tiny.n_double, 0)
            assert net.txt_in.in_features == tiny.context_dim
        elif family == "z_image":
            assert (len(net.layers), tiny.n_single) == (tiny.n_double, 0)
            assert net.cap_embedder[1].in_features == tiny.context_dim and net.pad_tokens_multiple == 32
        elif family == "aura_flow":
            assert (len(net.double_layers), len(net.single_layers)) == (tiny.n_double, tiny.n_single)
            assert net.cond_seq_linear.in_features == tiny.context_dim and net.register_tokens.shape[1] == 8
        elif family == "joy_image":
            assert (len(net.double_blocks), tiny.n_single) == (tiny.n_double, 0)
            assert net.condition_embedder.text_embedder.linear_1.in_features == tiny.context_dim
        elif family == "lens":
            assert (len(net.transformer_blocks), tiny.n_single) == (tiny.n_double, 0)
            assert net.txt_in.in_features == tiny.context_dim
        else:
            assert (len(net.double_blocks), len(net.single_blocks)) == (tiny.n_double, tiny.n_single)
            assert net.txt_in.in_features == tiny.context_dim
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


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_finite_deterministic_and_follows_the_prompt(family):
    if ja_tiny.host_lacks(family):
        pytest.skip(ja_tiny.host_lacks(family))
    tiny = build(family)
    pos, other, neg = (make_cond(tiny, seed=s) for s in (1, 3, 2))

    out = sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=3.0, batch=2, **ODD)
    # Qwen-Image's latents (Wan 2.1 format) carry a time axis of 1.
    assert out.shape == (2, tiny.latent_channels) + ((1,) if out.ndim == 5 else ()) + (3, 5)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert not torch.equal(out[0], out[1])  # each image of the batch gets its own noise
    assert torch.equal(out, sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=3.0, batch=2, **ODD))
    assert not torch.allclose(out, sample(tiny.patcher, other, neg, seed=0, steps=2, cfg=3.0, batch=2, **ODD))

    plain = sample(tiny.patcher, pos, neg, seed=0, steps=2, cfg=1.0, **ODD)
    assert torch.isfinite(plain).all()
    assert not torch.allclose(plain, sample(tiny.patcher, other, neg, seed=0, steps=2, cfg=1.0, **ODD))


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
