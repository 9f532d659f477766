"""Region LoRA: a LoRA on one region's tokens, in the one regional pass.

Identity (no reference): one region over the whole image at strength 1 with LoRA L at strength s (background, base_ratio
0, every block and step, cfg 1) samples the latent of core's LoRA loader with L at s and the region's text as the prompt.
Reference: two regions with two LoRAs against a dense per-token reference that adds each LoRA's merged weight
difference, token by token, with the region's weight on that token computed from the mask cell by cell.
"""
import pytest
import torch

from ja_families import family_params
from ja_lora import core_lora, write_lora
from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH, cell_masks, regions_for
from ja_tiny import make_cond, patcher, prompt_alone, sample
from joint_attention_pack.families import model_family
from joint_attention_pack.nodes.region_lora import JointAttentionRegionLoRA
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

# The trainer formats each family's LoRAs come in (ja_lora.FORMATS); FLUX.1 runs all three.
FORMATS = {"flux": ("diffusers", "kohya", "comfy"), "sd3": ("diffusers",), "sd35m": ("kohya",),
           "qwen_image": ("diffusers",), "chroma": ("kohya",), "z_image": ("comfy",)}


def _mapped(family):
    tiny = family.build()
    if not model_family(patcher(tiny)).adapter_roles:
        pytest.skip(f"{family.name}: region LoRAs are not mapped for this family yet (no adapter role table)")
    return tiny


def _rel(got, want) -> float:
    return float((got - want).norm() / want.norm())


def _apply(base, regions, tiny, base_ratio=0.0):
    single = "all" if tiny.n_single else "none"
    return run_node(JointAttentionRegionalApply, base, regions, base_ratio, 0.0, 1.0, "all", single, "restricted",
                    "background")[0]


@pytest.mark.parametrize("family", family_params("region_lora_identity"))
def test_full_region_lora_equals_core_lora_with_the_region_text_as_prompt(family):
    tiny = _mapped(family)
    base = patcher(tiny)
    for fmt in FORMATS.get(family.name, ("comfy",)):
        name = write_lora(base, f"identity_{family.name}_{fmt}.safetensors", fmt, seed=3)
        base_cond = make_cond(tiny, seed=1, n_tokens=7)
        region_cond = make_cond(tiny, seed=5, n_tokens=5)
        regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 3, 2), 1.0)[0]
        regions = run_node(JointAttentionRegionLoRA, regions, 1, name, 0.8, 0.0, 1.0)[0]
        model = _apply(base, regions, tiny)
        kw = dict(seed=0, steps=3, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
        neg = make_cond(tiny, seed=2)
        got = sample(model, base_cond, neg, **kw)
        want = sample(core_lora(base, name, 0.8), prompt_alone(region_cond, base_cond), neg, **kw)
        without = sample(base, prompt_alone(region_cond, base_cond), neg, **kw)
        assert _rel(without, want) > 1e-2, fmt  # the LoRA changes the image, so the identity can fail
        assert _rel(got, want) <= 1e-4, fmt


@pytest.mark.parametrize("family", family_params("region_lora_reference"))
def test_strength_zero_gives_the_plain_regional_image_bit_for_bit(family):
    tiny = _mapped(family)
    base = patcher(tiny)
    name = write_lora(base, f"zero_{family.name}.safetensors", FORMATS.get(family.name, ("comfy",))[0], seed=4)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
    plain = sample(_apply(base, regions, tiny, 0.2), pos, neg, **kw)
    zero = run_node(JointAttentionRegionLoRA, regions, 2, name, 0.0, 0.0, 1.0)[0]
    assert torch.equal(sample(_apply(base, zero, tiny, 0.2), pos, neg, **kw), plain)
    some = run_node(JointAttentionRegionLoRA, regions, 2, name, 1.0, 0.0, 1.0)[0]
    assert not torch.equal(sample(_apply(base, some, tiny, 0.2), pos, neg, **kw), plain)
