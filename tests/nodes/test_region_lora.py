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
        kw = dict(seed=0, steps=2, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
        neg = make_cond(tiny, seed=2)
        got = sample(model, base_cond, neg, **kw)
        want = sample(core_lora(base, name, 0.8), prompt_alone(region_cond, base_cond), neg, **kw)
        without = sample(base, prompt_alone(region_cond, base_cond), neg, **kw)
        assert _rel(without, want) > 1e-3, fmt  # the LoRA changes the image (by far more than the tolerance)
        assert _rel(got, want) <= 1e-4, fmt


@pytest.mark.parametrize("family", family_params("region_lora_reference"))
def test_strength_zero_gives_the_plain_regional_image_bit_for_bit(family):
    tiny = _mapped(family)
    base = patcher(tiny)
    name = write_lora(base, f"zero_{family.name}.safetensors", FORMATS.get(family.name, ("comfy",))[0], seed=4)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    plain = sample(_apply(base, regions, tiny, 0.2), pos, neg, **kw)
    zero = run_node(JointAttentionRegionLoRA, regions, 2, name, 0.0, 0.0, 1.0)[0]
    assert torch.equal(sample(_apply(base, zero, tiny, 0.2), pos, neg, **kw), plain)
    some = run_node(JointAttentionRegionLoRA, regions, 2, name, 1.0, 0.0, 1.0)[0]
    assert not torch.equal(sample(_apply(base, some, tiny, 0.2), pos, neg, **kw), plain)


def _dense_deltas(tiny, seed):
    """{layer: merged weight difference up @ down * alpha / rank} of the "comfy"-format LoRA written with `seed`."""
    from ja_lora import lora_tensors

    sd = lora_tensors(patcher(tiny), "comfy", seed=seed)
    out = {}
    for key, up in sd.items():
        if key.endswith(".lora_up.weight"):
            prefix = key[: -len(".lora_up.weight")]
            down, alpha = sd[f"{prefix}.lora_down.weight"], float(sd[f"{prefix}.alpha"])
            out[prefix[len("diffusion_model."):]] = (up.double() @ down.double()) * (alpha / down.shape[0])
    return out


def _cell_average(pixels, grid):
    """Each token's share of the mask, the mask's pixels averaged over the token's cell (cells of whole pixels)."""
    rows, cols = grid
    height, width = pixels.shape
    assert height % rows == 0 and width % cols == 0, (pixels.shape, grid)
    ch, cw = height // rows, width // cols
    return [float(pixels[i * ch:(i + 1) * ch, j * cw:(j + 1) * cw].double().mean())
            for i in range(rows) for j in range(cols)]


def _naive_weights(state, role, length, region, pixels, strength):
    """[rows, length] weights of `region`, position by position, in the order a layer of `role` sees the tokens."""
    n_txt, lens, n_img = state.n_txt, list(state.region_lens), state.n_img
    token_mask = _cell_average(pixels, state.grid)
    text = [0.0] * n_txt
    for k, n in enumerate(lens):
        text += [1.0 if k == region else 0.0] * n
    if role == "text":
        seq = text
    else:
        n_visual = length - (len(text) if role.startswith("joint") else 0)
        image = [float(token_mask[i]) * strength for i in range(n_img)] + [0.0] * (n_visual - n_img)
        seq = {"image": image, "joint": text + image, "joint_image_first": image + text}[role]
    assert len(seq) == length
    rows = [seq if kind == 0 else [0.0] * length for kind in state.row_kinds]
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("family", family_params("region_lora_reference"))
def test_two_regions_with_their_loras_match_a_dense_per_token_reference(family):
    from joint_attention_pack.integration import region_lora

    tiny = _mapped(family)
    base = patcher(tiny)
    a = write_lora(base, f"ref_a_{family.name}.safetensors", "comfy", seed=11)
    b = write_lora(base, f"ref_b_{family.name}.safetensors", "comfy", seed=12)
    pixels, _ = cell_masks(True)
    strengths = [1.0, 1.5]
    regions, _ = regions_for(tiny, pixels, strengths)
    # Region 1 carries A; region 2 carries B and A again (one region, several LoRAs; one LoRA, several regions).
    loras = [(0, a, 0.7, 11), (1, b, 1.3, 12), (1, a, 0.5, 11)]
    with_loras = regions
    for region, name, strength, _ in loras:
        with_loras = run_node(JointAttentionRegionLoRA, with_loras, region + 1, name, strength, 0.0, 1.0)[0]
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    got = sample(_apply(base, with_loras, tiny, 0.2), pos, neg, **kw)

    fam = model_family(base)
    dm = base.model.diffusion_model
    deltas = {seed: _dense_deltas(tiny, seed) for seed in {s for *_, s in loras}}

    def hook(path, role):
        def add_terms(module, args, out):
            state = region_lora._FORWARD.get()
            x = args[0].double()
            extra = torch.zeros(out.shape, dtype=torch.float64)
            for region, _, strength, seed in loras:
                w = _naive_weights(state, role, x.shape[1], region, pixels[region], strengths[region])
                extra += strength * w[..., None] * (x @ deltas[seed][path].t())
            return out + extra.to(out.dtype)
        return add_terms

    handles = [dm.get_submodule(path).register_forward_hook(hook(path, fam.adapter_role(path, dm)))
               for path in deltas[11]]
    try:
        want = sample(_apply(base, regions, tiny, 0.2), pos, neg, **kw)
    finally:
        for h in handles:
            h.remove()
    plain = sample(_apply(base, regions, tiny, 0.2), pos, neg, **kw)
    assert _rel(plain, want) > 1e-2  # the LoRAs change the image
    assert _rel(got, want) <= 1e-4


# -- block and step selection ----------------------------------------------------------------------------------------
def _blocks_by_module(fam, dm) -> dict:
    """{layer path: ("double" | "single", index)} for every layer inside the model's numbered block lists, found by
    walking the lists' modules (not by reading paths, as the pack does)."""
    out = {}
    for kind, attr in (("double", fam.double_blocks), ("single", fam.single_blocks)):
        for i, block in enumerate(getattr(dm, attr, None) or () if attr else ()):
            for sub, _ in block.named_modules():
                if sub:
                    out[f"{attr}.{i}.{sub}"] = (kind, i)
    return out


def _full_region_with(tiny, name, strength, **selection):
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 3, 2), 1.0)[0]
    args = {"start_percent": 0.0, "end_percent": 1.0, "double_blocks": "all", "single_blocks": "all", **selection}
    return run_node(JointAttentionRegionLoRA, regions, 1, name, strength, **args)[0], region_cond


@pytest.mark.parametrize("family", family_params("region_lora_selection"))
def test_block_selection_equals_core_lora_holding_only_the_chosen_blocks_keys(family):
    """A full-region LoRA L on double block 0 and the last single block samples the latent of core's loader with a
    file holding only L's keys of those blocks. Also: every layer a LoRA may target is in the block the pack says."""
    from ja_lora import lora_tensors

    tiny = _mapped(family)
    base = patcher(tiny)
    fam, dm = model_family(base), base.model.diffusion_model
    n_double, n_single = fam.block_counts(dm)
    by_module = _blocks_by_module(fam, dm)
    sd = lora_tensors(base, "comfy", seed=3)

    def layer(key):  # diffusion_model.<layer>.lora_up.weight / .lora_down.weight / .alpha
        return key[len("diffusion_model."):].removesuffix(".weight").rsplit(".", 1)[0]

    layers = {layer(k) for k in sd}
    assert layers and {path: fam.adapter_block(path) for path in layers} == {path: by_module[path] for path in layers}
    chosen = {("double", 0)} | ({("single", n_single - 1)} if n_single else set())
    subset = {k: v for k, v in sd.items() if by_module[layer(k)] in chosen}
    assert 0 < len(subset) < len(sd)
    full = write_lora(base, f"blocks_all_{family.name}.safetensors", "comfy", seed=3)
    only = _write(tiny, f"blocks_only_{family.name}.safetensors", subset)

    regions, region_cond = _full_region_with(tiny, full, 0.8, double_blocks="0",
                                             single_blocks=str(n_single - 1) if n_single else "none")
    base_cond, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
    prompt = prompt_alone(region_cond, base_cond)
    got = sample(_apply(base, regions, tiny), base_cond, neg, **kw)
    want = sample(core_lora(base, only, 0.8), prompt, neg, **kw)
    assert _rel(sample(base, prompt, neg, **kw), want) > 1e-3  # the chosen blocks' keys change the image
    assert _rel(sample(core_lora(base, full, 0.8), prompt, neg, **kw), want) > 1e-3  # and the others would too
    assert _rel(got, want) <= 1e-4


def _two_stages(first, second, split, positive, negative, **kw):
    """KSamplerAdvanced twice: steps [0, split) on `first` (leftover noise kept), then [split, steps) on `second`
    with no new noise."""
    from ja_tiny import noise_for

    noise = noise_for(first, **kw)
    middle = sample(first, positive, negative, noise=noise, start_step=0, last_step=split, force_full_denoise=False,
                    **kw)
    return sample(second, positive, negative, latent=middle, noise=torch.zeros_like(noise), start_step=split,
                  last_step=kw["steps"], force_full_denoise=True, **kw)


@pytest.mark.parametrize("family", family_params("region_lora_steps"))
def test_step_window_equals_core_lora_on_those_steps_only(family):
    """Of 4 steps, a full-region LoRA ending at 60% acts on steps 0-2 and one starting at 30% on steps 2-3: the
    latents of sampling those steps with core's loader and the others without it (KSamplerAdvanced in two parts)."""
    import comfy.samplers

    tiny = _mapped(family)
    base = patcher(tiny)
    sampling = base.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)
    # The windows' edges fall between steps (a step acts while its sigma is inside the window).
    assert sigmas[2] > sampling.percent_to_sigma(0.6) > sigmas[3]
    assert sigmas[1] > sampling.percent_to_sigma(0.3) > sigmas[2]
    name = write_lora(base, f"steps_{family.name}.safetensors", "comfy", seed=6)
    base_cond, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=4, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
    with_lora = core_lora(base, name, 0.8)
    for window, first, second, split in (((0.0, 0.6), with_lora, base, 3), ((0.3, 1.0), base, with_lora, 2)):
        regions, region_cond = _full_region_with(tiny, name, 0.8, start_percent=window[0], end_percent=window[1])
        prompt = prompt_alone(region_cond, base_cond)
        got = sample(_apply(base, regions, tiny), base_cond, neg, **kw)
        want = _two_stages(first, second, split, prompt, neg, **kw)
        assert _rel(sample(with_lora, prompt, neg, **kw), want) > 1e-3, window  # the window matters
        assert _rel(got, want) <= 1e-4, window


# -- core's HOOKS on a region ---------------------------------------------------------------------------------------
def _hooked(cond, hooks):
    """`cond` with `hooks` on it, as core's Cond Set Props puts them there."""
    import comfy_extras.nodes_hooks as hooks_nodes

    return hooks_nodes.ConditioningSetProperties().set_properties(cond, 1.0, "default", None, hooks)[0]


def _hook_lora(name, strength, prev=None):
    import comfy_extras.nodes_hooks as hooks_nodes

    return hooks_nodes.CreateHookLoraModelOnly().create_hook_model_only(name, strength, prev)[0]


@pytest.mark.works_with("core hook LoRAs (Create Hook LoRA (MO) + Cond Set Props) on a region's prompt",
                         "Region + Apply Regional Attention", "exact: the hooks' LoRAs act on the region only")
@pytest.mark.parametrize("family", family_params("region_lora_selection"))
def test_lora_hooks_on_a_region_prompt_equal_core_hooks_on_the_prompt(family):
    """A region prompt carrying core's LoRA hooks (Create Hook LoRA (MO) -> Cond Set Props -> Region), one region over
    the whole image: the latent of core sampling that hooked prompt as the prompt. Two hooks on one group: both act."""
    from ja_compose import core_nodes

    core_nodes()  # the host's nodes.py, which comfy_extras' hook nodes import
    tiny = _mapped(family)
    base = patcher(tiny)
    fmt = FORMATS.get(family.name, ("comfy",))[0]
    a = write_lora(base, f"hook_a_{family.name}.safetensors", fmt, seed=7)
    b = write_lora(base, f"hook_b_{family.name}.safetensors", fmt, seed=8)
    hooks = _hook_lora(b, -0.5, _hook_lora(a, 0.9))
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, _hooked(region_cond, hooks), torch.ones(1, 3, 2), 1.0)[0]
    assert [lora.strength for lora in regions[0].adapters] == [0.9, -0.5]
    base_cond, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=1.0, width=family.width_without_image_pads(96, 64), height=64)
    got = sample(_apply(base, regions, tiny), base_cond, neg, **kw)
    prompt = prompt_alone(region_cond, base_cond)
    want = sample(base, _hooked(prompt, hooks), neg, **kw)
    assert _rel(sample(base, prompt, neg, **kw), want) > 1e-3  # core's hooks change the image
    assert _rel(got, want) <= 1e-4


def test_hooks_a_region_cannot_follow_are_refused_by_name():
    import comfy.hooks

    tiny = _flux()
    name = write_lora(patcher(tiny), "hook_refused.safetensors", "comfy", seed=1)
    cond = make_cond(tiny, seed=5)

    def region(hooks):
        return run_node(JointAttentionRegion, _hooked(cond, hooks), torch.ones(1, 8, 8), 1.0)

    keyframed = _hook_lora(name, 1.0)
    keyframes = comfy.hooks.HookKeyframeGroup()
    keyframes.add(comfy.hooks.HookKeyframe(strength=0.5, start_percent=0.3))
    keyframed.set_keyframes_on_hooks(keyframes)
    with pytest.raises(ValueError, match=r"\[Region \(mask \+ prompt\)\] input 'conditioning': carries hook 1 "
                       r"\(WeightHook\) with 1 scheduled keyframe\(s\).*start_percent / end_percent"):
        region(keyframed)
    whole = comfy.hooks.create_hook_model_as_lora({"diffusion_model.img_in.weight": torch.zeros(1)}, None, 1.0, 0.0)
    with pytest.raises(ValueError, match="with whole model weights \\(Create Hook Model as LoRA\\)"):
        region(whole)
    other = comfy.hooks.HookGroup()
    other.add(comfy.hooks.TransformerOptionsHook())
    with pytest.raises(ValueError, match="hook 1 \\(TransformerOptionsHook\\), which is not a LoRA hook"):
        region(other)
    assert region(_hook_lora(name, 0.0))[0][0].adapters == ()  # strength 0: no LoRA


def _flux():
    from ja_families import BY_NAME

    return BY_NAME["flux"].build()


def _lora_regions(tiny, name, strength=1.0, index=1):
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=5), torch.ones(1, 8, 8), 1.0)[0]
    return run_node(JointAttentionRegionLoRA, regions, index, name, strength, 0.0, 1.0)[0]


@pytest.mark.parametrize("extra, words", [
    (("double_blocks.0.img_mod.lin",), ["modulation layers", "double_blocks.0.img_mod.lin"]),
    (("single_blocks.1.modulation.lin",), ["modulation layers", "single_blocks.1.modulation.lin"]),
    (("img_in", "final_layer.linear"), ["no per-token role", "final_layer.linear, img_in"]),
])
def test_layers_shared_by_every_token_are_refused_by_name(extra, words):
    tiny = _flux()
    name = write_lora(patcher(tiny), f"refused_{extra[0]}.safetensors", "comfy", extra=extra)
    with pytest.raises(ValueError) as info:
        _apply(patcher(tiny), _lora_regions(tiny, name), tiny)
    message = str(info.value)
    assert message.startswith("[Apply Regional Attention] input 'regions': LoRA") and name in message
    for word in words:
        assert word in message


def _write(tiny, name, sd):
    import safetensors.torch

    from ja_lora import loras_folder

    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(loras_folder() / name))
    return name


def _loha(tiny, seed=0):
    """A LoHa (LyCORIS hada_* keys) on FLUX's image qkv layers."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(tiny.n_double):
        layer = patcher(tiny).model.diffusion_model.get_submodule(f"double_blocks.{i}.img_attn.qkv")
        prefix = f"lora_unet_double_blocks_{i}_img_attn_qkv"
        for part in ("1", "2"):
            sd[f"{prefix}.hada_w{part}_a"] = torch.randn(layer.out_features, 2, generator=gen) * 0.5
            sd[f"{prefix}.hada_w{part}_b"] = torch.randn(2, layer.in_features, generator=gen) * 0.5
        sd[f"{prefix}.alpha"] = torch.tensor(2.0)
    return sd


def test_loha_follows_the_host():
    """0.29+: the host's own LoHa term (full region == core's loader); 0.3.75: refused by name."""
    from joint_attention_pack.integration.region_lora import host_has_bypass

    tiny = _flux()
    base = patcher(tiny)
    name = _write(tiny, "loha.safetensors", _loha(tiny))
    regions = _lora_regions(tiny, name, 0.9)
    if not host_has_bypass():
        with pytest.raises(ValueError, match="LoHaAdapter; this ComfyUI has no bypass adapters"):
            _apply(base, regions, tiny)
        return
    base_cond, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    region_cond = [[regions[0].tokens[None], {}]]
    kw = dict(seed=0, steps=2, cfg=1.0, width=64, height=64)
    got = sample(_apply(base, regions, tiny), base_cond, neg, **kw)
    want = sample(core_lora(base, name, 0.9), prompt_alone(region_cond, base_cond), neg, **kw)
    assert _rel(sample(base, prompt_alone(region_cond, base_cond), neg, **kw), want) > 1e-2
    assert _rel(got, want) <= 1e-4


def test_dora_is_refused_by_name():
    from ja_lora import lora_tensors

    tiny = _flux()
    sd = lora_tensors(patcher(tiny), "comfy", seed=1)
    sd["diffusion_model.double_blocks.0.img_attn.qkv.dora_scale"] = torch.ones(
        patcher(tiny).model.diffusion_model.double_blocks[0].img_attn.qkv.out_features, 1)
    name = _write(tiny, "dora.safetensors", sd)
    with pytest.raises(ValueError, match=r"double_blocks\.0\.img_attn\.qkv \(DoRA rescales the merged weight"):
        _apply(patcher(tiny), _lora_regions(tiny, name), tiny)


def test_bad_inputs_name_the_node_and_the_fix():
    tiny = _flux()
    name = write_lora(patcher(tiny), "inputs.safetensors", "comfy")
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=5), torch.ones(1, 8, 8), 1.0)[0]
    with pytest.raises(ValueError, match=r"\[Region LoRA\] input 'index': is 2 but the regions hold 1"):
        run_node(JointAttentionRegionLoRA, regions, 2, name, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"\[Region LoRA\] input 'lora_name': 'missing.safetensors' is not in"):
        run_node(JointAttentionRegionLoRA, regions, 1, "missing.safetensors", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"\[Region LoRA\] input 'end_percent': must not be below"):
        run_node(JointAttentionRegionLoRA, regions, 1, name, 1.0, 0.6, 0.5)
    with pytest.raises(ValueError, match=r"\[Region LoRA\] input 'strength'"):
        run_node(JointAttentionRegionLoRA, regions, 1, name, float("nan"), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"\[Region LoRA\] input 'single_blocks': single_blocks: cannot read 'x'"):
        run_node(JointAttentionRegionLoRA, regions, 1, name, 1.0, 0.0, 1.0, "all", "0-2,x")
    # Block numbers are checked against the model where there is one: at Apply, naming the LoRA and where to fix it.
    far = run_node(JointAttentionRegionLoRA, regions, 1, name, 1.0, 0.0, 1.0, "1-99", "all")[0]
    with pytest.raises(ValueError, match=rf"\[Apply Regional Attention\] input 'regions': LoRA '{name}' \(region 1\): "
                       rf"double_blocks: '1-99' is outside this model's blocks; valid numbers are 0-{tiny.n_double - 1}; "
                       "fix it on its Region LoRA node"):
        _apply(patcher(tiny), far, tiny)


def test_single_blocks_on_a_model_without_them_are_refused_by_name():
    from ja_families import BY_NAME

    tiny = BY_NAME["sd3"].build()
    name = write_lora(patcher(tiny), "no_singles.safetensors", "comfy")
    regions = run_node(JointAttentionRegion, make_cond(tiny, seed=5), torch.ones(1, 8, 8), 1.0)[0]
    regions = run_node(JointAttentionRegionLoRA, regions, 1, name, 1.0, 0.0, 1.0, "all", "3")[0]
    with pytest.raises(ValueError, match="has single_blocks '3', but this model has no single blocks; set it to all "
                       "or none on its Region LoRA node"):
        _apply(patcher(tiny), regions, tiny)


def test_what_a_region_lora_holds_is_counted_and_goes_with_the_model():
    import gc

    from joint_attention_pack.integration.runtime import MEMORY

    tiny = _flux()
    name = write_lora(patcher(tiny), "memory.safetensors", "comfy", seed=9)

    def held():
        return sum(n for owner, _, _, n in MEMORY.registry.live() if owner == "region_lora:weights")

    before = held()
    model = _apply(patcher(tiny), _lora_regions(tiny, name), tiny)
    sample(model, make_cond(tiny, seed=1), make_cond(tiny, seed=2), steps=1)
    layers = model.get_injections("joint_attention_region_lora")
    assert layers and held() - before > 0
    del model, layers
    gc.collect()
    assert held() == before


# -- works with (docs/works-with.md) -------------------------------------------------------------------------------
works_with = pytest.mark.works_with


def _full_region(tiny, name, strength=0.8):
    region_cond = make_cond(tiny, seed=5, n_tokens=5)
    regions = run_node(JointAttentionRegion, region_cond, torch.ones(1, 3, 2), 1.0)[0]
    return run_node(JointAttentionRegionLoRA, regions, 1, name, strength, 0.0, 1.0)[0], region_cond


@works_with("core LoRA loading (`LoraLoaderModelOnly`) beside a region LoRA", "Region LoRA + Apply Regional Attention",
            "exact")
def test_global_lora_and_region_lora():
    """A global LoRA G (core's loader) and a full-region LoRA R: the latent of core's loader with G and R and the region
    text as the prompt."""
    from ja_compose import core_nodes

    tiny = _flux()
    base = patcher(tiny)
    g = write_lora(base, "works_global.safetensors", "kohya", seed=21)
    r = write_lora(base, "works_region.safetensors", "diffusers", seed=22)
    regions, region_cond = _full_region(tiny, r)
    with_g = run_node(core_nodes().LoraLoaderModelOnly, base, g, 0.6)[0]
    base_cond, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=1.0, width=96, height=64)
    got = sample(_apply(with_g, regions, tiny), base_cond, neg, **kw)
    want = sample(core_lora(with_g, r, 0.8), prompt_alone(region_cond, base_cond), neg, **kw)
    assert _rel(sample(with_g, prompt_alone(region_cond, base_cond), neg, **kw), want) > 1e-3
    assert _rel(got, want) <= 1e-4


@works_with("TACA", "Region LoRA + Apply Regional Attention + TACA", "exact")
def test_taca_with_region_lora():
    """TACA after a full-region LoRA: the latent of TACA on core's LoRA model with the region text as the prompt."""
    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    tiny = _flux()
    base = patcher(tiny)
    r = write_lora(base, "works_taca.safetensors", "comfy", seed=23)
    regions, region_cond = _full_region(tiny, r)
    base_cond, neg = make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=1.0, width=96, height=64)

    def taca(model):
        return run_node(JointAttentionTACA, model, 3.0, 0.0, "both", "all", "all")[0]

    got = sample(taca(_apply(base, regions, tiny)), base_cond, neg, **kw)
    want = sample(taca(core_lora(base, r, 0.8)), prompt_alone(region_cond, base_cond), neg, **kw)
    # TACA moves this tiny model's image little (a few text tokens): the identity is held 20x tighter than that move.
    assert _rel(sample(core_lora(base, r, 0.8), prompt_alone(region_cond, base_cond), neg, **kw), want) > 2e-4
    assert _rel(got, want) <= 1e-5


@works_with("fp8 weights (`weight_dtype` fp8_e4m3fn)", "Region LoRA + Apply Regional Attention",
            "exact: the base weights' own forward, the LoRA term in the activation dtype")
def test_fp8_weights_with_region_loras():
    """Two regions with LoRAs on an fp8 model sample as on the fp32 model holding the same (fp8-rounded) weights."""
    from ja_families import BY_NAME

    fp8 = BY_NAME["flux"].build(weight_dtype=torch.float8_e4m3fn)
    rounded = BY_NAME["flux"].build()
    with torch.no_grad():
        for p8, p32 in zip(patcher(fp8).model.diffusion_model.parameters(),
                           patcher(rounded).model.diffusion_model.parameters()):
            p32.copy_(p8.float())
    assert torch.float8_e4m3fn in {p.dtype for p in patcher(fp8).model.diffusion_model.parameters()}
    a = write_lora(patcher(rounded), "works_fp8_a.safetensors", "comfy", seed=24)
    b = write_lora(patcher(rounded), "works_fp8_b.safetensors", "comfy", seed=25)
    pixels, _ = cell_masks(True)
    pos, neg = make_cond(fp8, seed=1), make_cond(fp8, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    out = []
    for tiny in (fp8, rounded):
        regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
        regions = run_node(JointAttentionRegionLoRA, regions, 1, a, 0.7, 0.0, 1.0)[0]
        regions = run_node(JointAttentionRegionLoRA, regions, 2, b, 1.2, 0.0, 1.0)[0]
        out.append(sample(_apply(patcher(tiny), regions, tiny, 0.2), pos, neg, **kw))
    plain_regions, _ = regions_for(rounded, pixels, [1.0, 1.5])
    assert _rel(sample(_apply(patcher(rounded), plain_regions, rounded, 0.2), pos, neg, **kw), out[1]) > 1e-3
    assert _rel(out[0], out[1]) <= 1e-4


@works_with("core `TorchCompileModel` (whole diffusion model compiled)", "Region LoRA + Apply Regional Attention",
            "exact (the wrapped layers run eagerly)")
def test_torch_compile_with_region_loras():
    from ja_compose import core_nodes  # noqa: F401 (boots the host's nodes the compile node imports)

    compile_node = pytest.importorskip("comfy_extras.nodes_torch_compile").TorchCompileModel
    tiny = _flux()
    base = patcher(tiny)
    a = write_lora(base, "works_compile.safetensors", "comfy", seed=26)
    pixels, _ = cell_masks(True)
    regions, _ = regions_for(tiny, pixels, [1.0, 1.5])
    regions = run_node(JointAttentionRegionLoRA, regions, 2, a, 1.0, 0.0, 1.0)[0]
    model = _apply(base, regions, tiny, 0.2)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    eager = sample(model, pos, neg, **kw)
    graphs = []

    def backend(graph_module, example_inputs, **_):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    try:
        got = sample(run_node(compile_node, model, backend)[0], pos, neg, **kw)
    finally:
        torch._dynamo.reset()
    assert graphs  # the model was compiled
    assert _rel(eager, sample(_apply(base, regions_for(tiny, pixels, [1.0, 1.5])[0], tiny, 0.2), pos, neg, **kw)) > 1e-3
    assert _rel(got, eager) <= 1e-6
