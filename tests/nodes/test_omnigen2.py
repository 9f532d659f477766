"""Issue 30: OmniGen2, on the tiny model built through the host's own detection (`model_config_from_unet_config`).

The family scenarios (regions in every mode, TACA, text scale, maps, the identities, runs the pack leaves alone) run
OmniGen2 as an entry of the test family list (ja_families), against the test-only reference forward
(ja_reference_omnigen2), which refines each text alone. Here: what only OmniGen2 has.
- The reference forward is the host's forward when there are no regions (so it checks the pack, not itself).
- Each region text is refined by the context refiner alone with the rope rows it has as the prompt alone; the prompt
  and the image keep their rows and layer inputs bit for bit.
- The layer lists are wrapped through object patches on the pack's clone only.
- Grouped-query attention (fewer key / value heads than query heads), as OmniGen2 has.
- ConceptAttention, reference latents and a padded prompt with regions: refused by name.
"""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import build, make_cond, patcher, sample, with_options
from joint_attention_pack.families.omnigen2 import OmniGen2Layers
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
LISTS = ("context_refiner", "noise_refiner", "ref_image_refiner", "layers")


def _regional(base, regions, image_attention="restricted", base_ratio=0.0):
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 1.0, "all", "none", image_attention,
                    "background")[0]


def _layer_inputs(model, dm, pos, neg, **kw):
    """What the first context-refiner layer and the first joint layer got (hidden states, rope table), per forward,
    and what the context refiner gave."""
    seen = {"caption": [], "joint": [], "refined": []}

    def keep(name):
        def hook(module, args, kwargs):
            seen[name].append((args[0].detach().clone(), args[2].detach().clone()))
        return hook

    def refined(module, args, kwargs, output):
        seen["refined"].append(output.detach().clone())

    handles = [dm.context_refiner[0].register_forward_pre_hook(keep("caption"), with_kwargs=True),
               dm.context_refiner[-1].register_forward_hook(refined, with_kwargs=True),
               dm.layers[0].register_forward_pre_hook(keep("joint"), with_kwargs=True)]
    try:
        sample(model, pos, neg, **kw)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_the_tiny_model_is_detected_as_omnigen2_with_grouped_query_attention():
    tiny = build("omnigen2")
    base = patcher(tiny)
    assert type(base.model).__name__ == "Omnigen2"
    attn = base.model.diffusion_model.layers[0].attn
    assert attn.kv_heads < attn.heads  # the pack's attention must take fewer key / value heads (OmniGen2: 21 / 7)


def test_the_reference_forward_is_the_hosts_forward_without_regions():
    tiny = build("omnigen2")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    got, want = sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_region_texts_are_refined_alone_with_the_rope_rows_of_the_prompt_alone():
    tiny = build("omnigen2")
    base = patcher(tiny)
    dm = base.model.diffusion_model
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])
    n_txt = 9
    pos, neg = make_cond(tiny, seed=1, n_tokens=n_txt), make_cond(tiny, seed=2, n_tokens=n_txt)
    kw = dict(KW, steps=1, cfg=1.0)
    patched = _layer_inputs(_regional(base, regions), dm, pos, neg, **kw)
    plain = _layer_inputs(base, dm, pos, neg, **kw)
    n_regions = sum(c.shape[0] for c in conds)
    (x, rope), (x0, rope0) = patched["joint"][0], plain["joint"][0]
    assert x.shape[1] == x0.shape[1] + n_regions and rope.shape[1] == x.shape[1]
    # Prompt and image: the rope rows and the layer input they have without regions.
    assert torch.equal(rope[:, :n_txt], rope0[:, :n_txt])
    assert torch.equal(rope[:, n_txt + n_regions:], rope0[:, n_txt:])
    assert torch.equal(patched["caption"][0][1][:, :n_txt], plain["caption"][0][1][:, :n_txt])
    torch.testing.assert_close(x[:, :n_txt], x0[:, :n_txt], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(x[:, n_txt + n_regions:], x0[:, n_txt:], atol=1e-6, rtol=1e-6)
    # Each region text: refined alone, with the context refiner's rope rows of the prompt alone.
    start = n_txt
    for cond in conds:
        length = cond.shape[0]
        alone = _layer_inputs(base, dm, [[cond[None], {**pos[0][1], "attention_mask": torch.ones(1, length, dtype=torch.long)}]], neg,
                              **kw)
        part = slice(start, start + length)
        assert torch.equal(patched["caption"][0][1][:, part], alone["caption"][0][1])
        torch.testing.assert_close(patched["refined"][0][:, part], alone["refined"][0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(x[:, part], alone["joint"][0][0][:, :length], atol=1e-6, rtol=1e-6)
        start += length


def test_the_plain_model_is_untouched_by_the_wrapped_layer_lists():
    tiny = build("omnigen2")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(base, pos, neg, **KW)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    regional = _regional(base, regions, base_ratio=0.2)
    assert all(isinstance(regional.object_patches[f"diffusion_model.{n}"], OmniGen2Layers) for n in LISTS)
    assert not base.object_patches
    assert (sample(regional, pos, neg, **KW) - plain).abs().max() > 1e-3
    assert torch.equal(sample(base, pos, neg, **KW), plain)
    dm = base.model.diffusion_model
    assert all(type(getattr(dm, n)) is torch.nn.ModuleList for n in LISTS)
    assert set(dict(regional.model.named_parameters())) == set(dict(base.model.named_parameters()))


def test_concept_attention_is_refused_by_name():
    tiny = build("omnigen2")
    with pytest.raises(ValueError, match=r"\[Attention Capture\] input 'concepts': ConceptAttention is not "
                                         r"available for omnigen2"):
        run_node(JointAttentionCapture, patcher(tiny), "all", "none", 0.0, 1.0, "cat, dog")


def test_reference_images_are_refused_by_name():
    tiny = build("omnigen2")
    base = patcher(tiny)
    ref = torch.randn(1, tiny.latent_channels, 8, 12)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    pos = with_options(make_cond(tiny, seed=1), reference_latents=[ref])
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': .*reference images for "
                                         r"OmniGen2"):
        sample(_regional(base, regions), pos, make_cond(tiny, seed=2), **dict(KW, steps=1))


def test_a_padded_prompt_with_regions_is_refused_by_name():
    """A text padding mask (a prompt batched with a longer one) reaches the model as `attention_mask`; region texts
    appended after it would break the model's mask."""
    tiny = build("omnigen2")
    base = patcher(tiny)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    mask = torch.ones(1, 8, dtype=torch.long)
    mask[:, 6:] = 0
    pos = with_options(make_cond(tiny, seed=1), attention_mask=mask)
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': the prompt's conditioning "
                                         r"carries a text padding mask"):
        sample(_regional(base, regions), pos, make_cond(tiny, seed=2), **dict(KW, steps=1))


# Boogu (ComfyUI 0.33): built on OmniGen2's classes in the host, named by a family of its own.

def _boogu():
    import comfy.model_base

    if not hasattr(comfy.model_base, "Boogu"):
        pytest.skip("this host has no Boogu")
    return build("boogu")


def test_boogu_is_its_own_family_never_omnigen2():
    import comfy.model_base

    from joint_attention_pack.families import model_family

    tiny = _boogu()
    assert issubclass(comfy.model_base.Boogu, comfy.model_base.Omnigen2)
    assert model_family(tiny.patcher).name == "boogu"
    assert model_family(build("omnigen2").patcher).name == "omnigen2"


def test_boogu_reference_forward_is_the_hosts_forward_without_regions():
    tiny = _boogu()
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    torch.testing.assert_close(sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW), atol=1e-5, rtol=1e-5)


def test_boogu_double_stream_layers_get_the_hosts_image_rope_rows():
    """The host slices the double-stream layers' image rope rows from the joint table past the whole text (region
    texts included), rows its table does not have: the hooks give them the rows they have without regions."""
    from joint_attention_pack.families.boogu import BooguLayers

    tiny = _boogu()
    base = patcher(tiny)
    dm = base.model.diffusion_model
    pixels, _ = cell_masks(False)
    regions, conds = regions_for(tiny, pixels, [1.0, 1.0])
    seen = {"patched": [], "plain": []}

    def run(model, key):
        def hook(module, args, kwargs):
            seen[key].append((args[2].detach().clone(), args[3].detach().clone()))
        handle = dm.double_stream_layers[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), **dict(KW, steps=1, cfg=1.0))
        finally:
            handle.remove()

    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    assert all(isinstance(model.object_patches[f"diffusion_model.{n}"], BooguLayers)
               for n in ("context_refiner", "noise_refiner", "double_stream_layers", "single_stream_layers"))
    run(model, "patched")
    run(base, "plain")
    (joint, image), (joint0, image0) = seen["patched"][0], seen["plain"][0]
    assert torch.equal(image, image0)
    assert joint.shape[1] == joint0.shape[1] + sum(c.shape[0] for c in conds)
    assert not base.object_patches


def test_boogu_reference_images_are_refused_by_name():
    tiny = _boogu()
    base = patcher(tiny)
    ref = torch.randn(1, tiny.latent_channels, 8, 12)
    regions, _ = regions_for(tiny, cell_masks(False)[0], [1.0])
    model = run_node(JointAttentionRegionalApply, base, regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    pos = with_options(make_cond(tiny, seed=1), reference_latents=[ref])
    with pytest.raises(ValueError, match=r"\[Apply Regional Attention\] input 'model': .*reference images for Boogu"):
        sample(model, pos, make_cond(tiny, seed=2), **dict(KW, steps=1))
