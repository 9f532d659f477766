"""Issue 17: Z-Image / Lumina-2 (NextDiT), on the tiny model built from the host's own classes.

The family scenarios (regions in every mode, TACA, text scale, maps, the identities, runs the pack leaves alone) run
Z-Image as an entry of the test family list (ja_families), against the test-only reference forward
(ja_reference_nextdit), which refines each caption alone. Here: what only NextDiT has.
- The reference forward is the host's forward when there are no regions (so it checks the pack, not itself).
- Each region text is padded with the model's learned pad token and refined by the caption refiner alone, and
  its rope rows are those it gets as the prompt alone; base text and image keep their rows bit for bit.
- The layer lists are wrapped through object patches on the pack's clone only: the plain model is untouched,
  before and after, and a capture without features samples it up to float rounding.
- Lumina-2 (no pad tokens), ConceptAttention and omni reference images: supported, refused by name, refused by name.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample, tiny_z_image, with_options
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.families.z_image import HookedLayers
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
LISTS = ("context_refiner", "noise_refiner", "layers")


def _regional(base, regions, image_attention="restricted", start=0.0, end=1.0, base_ratio=0.0):
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, start, end, "all", "none", image_attention,
                    "background")[0]


def _layer_inputs(model, dm, pos, neg, **kw):
    """What the first caption-refiner layer and the first joint layer got (hidden states, rope table), per forward."""
    seen = {"caption": [], "joint": []}

    def keep(name):
        def hook(module, args, kwargs):
            seen[name].append((args[0].detach().clone(), args[2].detach().clone()))
        return hook

    handles = [dm.context_refiner[0].register_forward_pre_hook(keep("caption"), with_kwargs=True),
               dm.layers[0].register_forward_pre_hook(keep("joint"), with_kwargs=True)]
    try:
        sample(model, pos, neg, **kw)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_the_reference_forward_is_the_hosts_forward_without_regions():
    """The test-only reference forward calls the model's modules in the host's order: without regions it samples
    what the host samples, on each host (up to its float64 attention)."""
    tiny = build("z_image")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    got, want = sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_region_texts_are_refined_alone_and_end_where_the_prompt_ends():
    tiny = build("z_image")
    base = patcher(tiny)
    dm = base.model.diffusion_model
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])  # region texts of 5 and 6 tokens: 27 and 26 pads
    pos, neg = make_cond(tiny, seed=1, n_tokens=40), make_cond(tiny, seed=2, n_tokens=40)  # 40 tokens: 24 pads
    kw = dict(KW, steps=1, cfg=1.0)
    patched = _layer_inputs(_regional(base, regions), dm, pos, neg, **kw)
    plain = _layer_inputs(base, dm, pos, neg, **kw)
    n_txt, n_img = 64, (HEIGHT // 16) * (WIDTH // 16)  # 24 image tokens + 8 pads
    (x, rope), (x0, rope0) = patched["joint"][0], plain["joint"][0]
    assert x.shape[1] == n_txt + 2 * 32 + n_img + 8 and x0.shape[1] == n_txt + n_img + 8
    # Base text and image: the rope rows and the layer input they have without regions.
    assert torch.equal(rope[:, :n_txt], rope0[:, :n_txt])
    assert torch.equal(rope[:, n_txt + 64:], rope0[:, n_txt:])
    torch.testing.assert_close(x[:, :n_txt], x0[:, :n_txt], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(x[:, n_txt + 64:], x0[:, n_txt:], atol=1e-6, rtol=1e-6)
    # Each region text: its pads, its refinement and its rope rows as the prompt alone.
    for r, cond in enumerate(conds):
        alone = _layer_inputs(base, dm, [[cond[None], dict(pos[0][1])]], neg, **kw)
        (xa, ropea), (ca, _) = alone["joint"][0], alone["caption"][0]
        part = slice(n_txt + 32 * r, n_txt + 32 * (r + 1))
        assert xa.shape[1] == 32 + n_img + 8
        torch.testing.assert_close(patched["caption"][0][0][:, part], ca, atol=1e-6, rtol=1e-6)  # learned pad rows
        assert torch.equal(patched["caption"][0][0][:, part][:, cond.shape[0]:], ca[:, cond.shape[0]:])
        assert torch.equal(patched["caption"][0][1][:, part], ropea[:, :32])
        torch.testing.assert_close(x[:, part], xa[:, :32], atol=1e-6, rtol=1e-6)
        # In the joint layers it ends where the prompt ends, right before the image, as it does alone (at 1..32,
        # the image at 33): the host's own rows of the prompt's last 32 positions (33..64, the image at 65).
        assert not torch.equal(rope[:, part], ropea[:, :32])
        assert torch.equal(rope[:, part], rope0[:, n_txt - 32:n_txt])


def test_the_plain_model_is_untouched_by_the_wrapped_layer_lists():
    """Runs the pack leaves alone (gamma 1, text scale 1, a window no step falls in): test_identities."""
    tiny = build("z_image")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    regional = _regional(base, regions, base_ratio=0.2)
    assert all(isinstance(regional.object_patches[f"diffusion_model.{n}"], HookedLayers) for n in LISTS)
    assert not base.object_patches
    assert (sample(regional, pos, neg, **KW) - plain).abs().max() > 1e-3
    assert torch.equal(sample(base, pos, neg, **KW), plain)
    dm = base.model.diffusion_model  # loading the plain model took the pack's clone off it, object patches too
    assert all(type(getattr(dm, n)) is torch.nn.ModuleList for n in LISTS)
    captured, handle = run_node(JointAttentionCapture, base, "all", "none", 0.0, 1.0)
    # Capture computes the attention it reads with the pack's kernel: equal up to float rounding.
    torch.testing.assert_close(sample(captured, pos, neg, **KW), plain, atol=1e-5, rtol=1e-5)
    assert handle.take() is not None
    # The weights keep their names under the wrapped lists (LoRA keys, offloading).
    assert set(dict(regional.model.named_parameters())) == set(dict(base.model.named_parameters()))


def test_lumina2_without_pad_tokens_matches_the_reference():
    tiny = tiny_z_image(variant="lumina2")
    base = patcher(tiny)
    assert base.model.diffusion_model.pad_tokens_multiple is None
    pixels, token_masks = cell_masks(True)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    model = run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 0.6, "odd", "none", "open", "everywhere")[0]
    model = run_node(JointAttentionTACA, model, 1.6, 0.5, "both", "all", "none")[0]
    sampling = base.get_model_object("model_sampling")
    config = ReferenceConfig(
        regions=conds, masks=token_masks, strengths=strengths, base_ratio=0.2,
        sigma_start=float(sampling.percent_to_sigma(0.0)), sigma_end=float(sampling.percent_to_sigma(0.6)),
        double=parse_blocks("odd", tiny.n_double), image_attention="open", global_prompt="everywhere",
        gamma=1.6, gamma_threshold=0.5, gamma_double=range(tiny.n_double))
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    got, want, plain = (sample(m, pos, neg, **KW) for m in (model, reference, base))
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_concept_attention_is_refused_by_name():
    tiny = build("z_image")
    with pytest.raises(ValueError, match=r"\[Attention Capture\] input 'concepts': ConceptAttention is not "
                                         r"available for z_image"):
        run_node(JointAttentionCapture, patcher(tiny), "all", "none", 0.0, 1.0, "cat, dog")
    assert run_node(JointAttentionCapture, patcher(tiny), "all", "none", 0.0, 1.0, "")[0] is not None


def test_omni_reference_images_are_refused_by_name_where_the_host_has_them():
    tiny = build("z_image")
    base = patcher(tiny)
    ref = torch.randn(1, tiny.latent_channels, 8, 12)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    model = _regional(base, regions)
    pos = with_options(make_cond(tiny, seed=1), reference_latents=[ref])
    if "ref_latents" not in base.model.extra_conds(cross_attn=pos[0][0], reference_latents=[ref]):
        pytest.skip("this host's Z-Image takes no reference images (ComfyUI 0.3.75)")
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': .*reference images for Z-Image"):
        sample(model, pos, make_cond(tiny, seed=2), **dict(KW, steps=1))


def test_a_full_image_region_at_a_size_with_image_pads_shows_what_the_pads_see():
    """Image pad tokens belong to no region: they see the base prompt and the image, as reference tokens do, so a
    full-image region differs from prompting with its text only through them (the identity in test_identities holds
    at sizes without pads). Here the base prompt must matter at a size with pads, and not at one without."""
    tiny = build("z_image")
    base = patcher(tiny)
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 64, 96), 1.0)[0]
    model = _regional(base, regions)
    neg = make_cond(tiny, seed=2)
    results = {}
    for width in (96, 128):  # 24 tokens + 8 pads; 32 tokens
        kw = dict(seed=0, steps=2, cfg=1.0, width=width, height=64)
        a = sample(model, make_cond(tiny, seed=1, n_tokens=7), neg, **kw)
        b = sample(model, make_cond(tiny, seed=3, n_tokens=7), neg, **kw)
        results[width] = (a - b).abs().max()
    assert results[96] > 1e-4
    assert results[128] < 1e-6


def test_a_nextdit_variant_with_a_forward_of_its_own_is_refused_by_name():
    """The hooks are written for NextDiT's own forward; a subclass (0.29's pixel-space NextDiT) runs another one."""
    tiny = tiny_z_image()
    dm = patcher(tiny).model.diffusion_model
    dm.__class__ = type("NextDiTVariant", (type(dm),), {})
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': expected a NextDiT diffusion "
                                         r"model .*got 'NextDiTVariant'"):
        _regional(patcher(tiny), regions)
