"""Issue 22: the pack composed with what users combine it with, in the real host.

Each test applies the other node (or pack) the way users do, both to the pack's model and to the independent
reference model (tests/support/ja_reference_model.py), and checks the pack's effect is exact against that reference
("exact"), or, where exactness is not defined, that the pack's effect is present and nothing errors ("present").
The `works_with` marker names the combination for docs/works-with.md's "Works with" table: every run records each marked
test's outcome per host (tests/nodes/conftest.py), and `make tested-on` writes the table from those records.
"""
import importlib

import pytest
import torch

from ja_compose import core_nodes, foreign_block_patch, foreign_override, tiny_lora
from ja_families import host_param
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, on_token_grid, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.integration import reach
from joint_attention_pack.nodes.guidance import JointAttentionTACA
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
START, END = 0.0, 0.6
works_with = pytest.mark.works_with


def _core_node(module: str, name: str):
    """A core node class, or skip: the host has no such node."""
    try:
        return getattr(core_nodes() if module == "nodes" else importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.skip(f"this ComfyUI has no {name} ({module})")


class Regional:
    """Regions on a tiny model and the same regions in a reference config."""

    def __init__(self, tiny, double="all", single=None, soft=True):
        self.tiny = tiny
        self.single = single if single is not None else ("odd" if tiny.n_single else "none")
        self.double = double
        pixels, token_masks = cell_masks(soft)
        self.token_masks = on_token_grid(tiny, token_masks)  # Ideogram 4: 2 x 2 tokens per mask cell
        self.strengths = [1.0, 1.5]
        self.regions, self.conds = regions_for(tiny, pixels, self.strengths)

    def apply(self, model):
        return run_node(JointAttentionRegionalApply, model, self.regions, 0.2, START, END, self.double, self.single,
                        "restricted", "background")[0]

    def config(self, model, **extra):
        sampling = model.get_model_object("model_sampling")
        tiny = self.tiny
        return ReferenceConfig(
            regions=self.conds, masks=self.token_masks, strengths=self.strengths, base_ratio=0.2,
            sigma_start=float(sampling.percent_to_sigma(START)), sigma_end=float(sampling.percent_to_sigma(END)),
            double=parse_blocks(self.double, tiny.n_double),
            single=parse_blocks(self.single, tiny.n_single) if tiny.n_single else (), **extra)

    def reference(self, model, config=None):
        return install_reference(model, config or self.config(model), self.tiny.n_double, self.tiny.n_single)


def _pair(tiny):
    return make_cond(tiny, seed=1), make_cond(tiny, seed=2)


# -- core LoRA loading ---------------------------------------------------------------------------------------------
@works_with("core LoRA loading (`LoraLoaderModelOnly`, weight patches)", "Apply Regional Attention", "exact")
# Z-Image, Krea 2, Ideogram 4: LoRA keys under the wrapped layer lists (Krea 2: its blocks and its text adapter)
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image", host_param("krea2"), host_param("ideogram4")])
@pytest.mark.parametrize("order", ["lora_first", "regions_first"])
def test_lora_and_regions(family, order, tmp_path):
    import folder_paths

    lora_loader = _core_node("nodes", "LoraLoaderModelOnly")
    tiny = build(family)
    base = patcher(tiny)
    name = f"ja_lora_{tmp_path.name}.safetensors"  # unique: the host looks names up in every folder added so far
    tiny_lora(base, tmp_path / name)
    folder_paths.add_model_folder_path("loras", str(tmp_path))

    def lora(model):
        return run_node(lora_loader, model, name, 0.8)[0]

    regional = Regional(tiny)
    with_lora = lora(base)
    assert with_lora.patches, "the LoRA file matched no weight of the model"
    model = regional.apply(with_lora) if order == "lora_first" else lora(regional.apply(base))
    reference = regional.reference(with_lora)
    pos, neg = _pair(tiny)
    got, want = sample(model, pos, neg, **KW), sample(reference, pos, neg, **KW)
    plain_lora, plain = sample(with_lora, pos, neg, **KW), sample(base, pos, neg, **KW)
    assert (plain_lora - plain).abs().max() > 1e-3  # the LoRA changed the model
    assert (got - plain_lora).abs().max() > 1e-3  # the regions acted on the LoRA'd model
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# -- core TorchCompileModel ----------------------------------------------------------------------------------------
class CountingBackend:
    """A torch.compile backend that counts the graphs dynamo hands it (each compile or recompile) and runs them as
    traced: dynamo's graph breaks, guards and recompiles are those of any backend, without inductor's code generation."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs, **kwargs):
        self.graphs += 1
        return graph_module.forward


@works_with("core `TorchCompileModel` (whole diffusion model compiled)", "Apply Regional Attention + TACA",
            "exact, no recompile per step")
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image"])
def test_torch_compile_with_regions_and_taca(family):
    compile_node = _core_node("comfy_extras.nodes_torch_compile", "TorchCompileModel")
    tiny = build(family)
    base = patcher(tiny)
    regional = Regional(tiny, double="all", single="all" if tiny.n_single else "none")
    threshold = 0.8  # TACA on for the first steps only: each feature switches off once during the run
    single = "all" if tiny.n_single else "none"
    model = run_node(JointAttentionTACA, regional.apply(base), 1.5, threshold, "both", "all", single)[0]
    config = regional.config(base, gamma=1.5, gamma_threshold=threshold, gamma_double=range(tiny.n_double),
                             gamma_single=range(tiny.n_single))
    reference = regional.reference(base, config)
    backend = CountingBackend()
    torch._dynamo.reset()
    try:
        compiled = run_node(compile_node, model, backend)[0]  # the core node, with a counting backend
        forwards = []

        def per_forward(apply_model, args):
            before = backend.graphs
            out = apply_model(args["input"], args["timestep"], **args["c"])
            forwards.append((float(args["timestep"].max()), backend.graphs - before))
            return out

        compiled = compiled.clone()
        compiled.set_model_unet_function_wrapper(per_forward)
        pos, neg = _pair(tiny)
        kw = dict(KW, steps=6)
        got = sample(compiled, pos, neg, **kw)
    finally:
        torch._dynamo.reset()
    want = sample(reference, pos, neg, **kw)
    eager = sample(model, pos, neg, **kw)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got, eager, atol=1e-6, rtol=1e-6)
    # Compiles happen when what the model runs changes (first forward; region texts leave the context at the end of
    # their window), never again for a forward like one before it.
    seen = set()
    assert forwards and forwards[0][1] > 0
    for sigma, graphs in forwards:
        phase = (sigma >= config.sigma_end, sigma >= threshold)
        if phase in seen:
            assert graphs == 0, f"recompiled at sigma {sigma:.3f} ({graphs} graphs): {forwards}"
        seen.add(phase)
    assert len(seen) >= 2


# -- core NAG --------------------------------------------------------------------------------------------------------
@works_with("core `NAGuidance` (Normalized Attention Guidance)", "Apply Regional Attention", "exact")
@pytest.mark.parametrize("order", ["nag_first", "regions_first"])
def test_nag_with_regions(order):
    nag = _core_node("comfy_extras.nodes_nag", "NAGuidance")
    tiny = build("flux")
    base = patcher(tiny)
    regional = Regional(tiny)

    def with_nag(model):
        return run_node(nag, model, 4.0, 0.5, 2.5)[0]

    slices = []

    def spy(out, extra_options):  # after NAG: what it sliced by
        if extra_options.get("block_type") == "double":
            slices.append((float(extra_options["sigmas"].max()), tuple(extra_options["img_slice"]), out.shape[1]))
        return out

    model = regional.apply(with_nag(base)) if order == "nag_first" else with_nag(regional.apply(base))
    model = model.clone()
    model.set_model_attn1_output_patch(spy)
    reference = with_nag(regional.reference(base))
    pos, neg = _pair(tiny)
    got = sample(model, pos, neg, **KW)
    want = sample(reference, pos, neg, **KW)
    regions_only = sample(regional.apply(base), pos, neg, **KW)
    assert (got - regions_only).abs().max() > 1e-3  # NAG acted
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # NAG slices the image part by the text length: region texts lengthen it inside their window.
    n_txt = pos[0][0].shape[1]
    n_regions = sum(c.shape[0] for c in regional.conds)
    config = regional.config(base)
    for sigma, (lo, hi), length in slices:
        assert lo == n_txt + (n_regions if sigma >= config.sigma_end else 0) and hi == length
    assert {lo for _, (lo, _), _ in slices} == {n_txt, n_txt + n_regions}


# -- fp8 weights -----------------------------------------------------------------------------------------------------
def _fp8_sd3(tmp_path):
    """A tiny SD3 loaded by the stock UNET loader with weight_dtype fp8_e4m3fn."""
    import folder_paths
    import safetensors.torch

    tiny = build("sd3")
    state = {k: v.detach().contiguous() for k, v in patcher(tiny).model.diffusion_model.state_dict().items()}
    name = f"ja_sd3_{tmp_path.name}.safetensors"  # unique: the host looks names up in every folder added so far
    safetensors.torch.save_file(state, str(tmp_path / name))
    folder_paths.add_model_folder_path("diffusion_models", str(tmp_path))
    loader = _core_node("nodes", "UNETLoader")
    model = run_node(loader, name, "fp8_e4m3fn")[0]
    return tiny, model


@works_with("fp8 weights (stock UNET loader `weight_dtype` fp8_e4m3fn)", "Apply Regional Attention + Attention Capture",
            "exact")
@pytest.mark.parametrize("family", ["flux", "sd3", "z_image"])
def test_fp8_weights_with_regions_and_capture(family, tmp_path):
    if family == "sd3":
        tiny, model = _fp8_sd3(tmp_path)  # the real loader path (tiny FLUX files are not detectable: 24 heads fixed)
    else:
        tiny = build(family, weight_dtype=torch.float8_e4m3fn)  # set up as the loader does (set_inference_dtype)
        model = tiny.patcher
    dtypes = {p.dtype for p in model.model.diffusion_model.parameters() if p.ndim == 2}
    assert torch.float8_e4m3fn in dtypes
    regional = Regional(tiny)
    single = "all" if tiny.n_single else "none"
    patched, handle = run_node(JointAttentionCapture, regional.apply(model), "all", single, 0.0, 1.0)
    sampling = model.get_model_object("model_sampling")
    config = regional.config(model, capture_double=range(tiny.n_double), capture_single=range(tiny.n_single),
                             capture_start=float(sampling.percent_to_sigma(0.0)),
                             capture_end=float(sampling.percent_to_sigma(1.0)))
    reference = regional.reference(model, config)
    pos, neg = _pair(tiny)
    got, want, plain = (sample(m, pos, neg, **KW) for m in (patched, reference, model))
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    result = handle.take()
    torch.testing.assert_close(result["maps"], config.captured_maps(), atol=1e-5, rtol=1e-5)


# -- another pack's attention override -------------------------------------------------------------------------------
def _override_calls(model, tiny):
    """Attention calls of a run of `model` (with a counting pass-through override placed first)."""
    counted, override = foreign_override(model)
    pos, neg = _pair(tiny)
    sample(counted, pos, neg, **KW)
    return override.calls


@works_with("another pack's attention override already on the model (chained)", "Apply Regional Attention",
            "exact, the other override called once per call")
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_override_installed_before_the_pack_is_chained(family):
    tiny = build(family)
    base = patcher(tiny)
    regional = Regional(tiny)
    before, override = foreign_override(base)
    model = regional.apply(before)
    pos, neg = _pair(tiny)
    got = sample(model, pos, neg, **KW)
    calls = override.calls
    want = sample(regional.reference(base), pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    override.calls = 0
    sample(before, pos, neg, **KW)
    assert calls == override.calls > 0  # once per attention call, as without the pack


@works_with("another pack's attention override applied after the pack's nodes", "Apply Regional Attention",
            "exact when it chains; refused with an error when it replaces the pack's")
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_override_applied_after_the_pack(family):
    tiny = build(family)
    base = patcher(tiny)
    regional = Regional(tiny)
    pos, neg = _pair(tiny)
    chained, override = foreign_override(regional.apply(base), chain=True)
    got = sample(chained, pos, neg, **KW)
    assert override.calls > 0
    want = sample(regional.reference(base), pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # the pack's effect survives
    replacing, override = foreign_override(regional.apply(base), chain=False)
    with pytest.raises(reach.PackNotReached, match=r"\[Apply Regional Attention\] .*none of its attention calls"):
        sample(replacing, pos, neg, **KW)  # never a silent plain image
    assert override.calls > 0


@works_with("another pack's block patches (`patches_replace` dit)", "Apply Regional Attention",
            "exact when installed before the pack's nodes; refused with an error when installed after")
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_block_patches_of_another_pack(family):
    tiny = build(family)
    base = patcher(tiny)
    regional = Regional(tiny, double="all")
    pos, neg = _pair(tiny)
    before, patch = foreign_block_patch(base, "double", 0)
    got = sample(regional.apply(before), pos, neg, **KW)
    assert patch.calls > 0  # the pack runs the other patch inside its own
    want = sample(regional.reference(base), pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    after, patch = foreign_block_patch(regional.apply(base), "double", 0)
    with pytest.raises(reach.PackNotReached, match=r"\[Apply Regional Attention\] .*ran in blocks the pack's block patches "
                                                   r"did not see"):
        sample(after, pos, neg, **KW)  # block 0 would silently run without the regions
    assert patch.calls > 0


# -- ControlNet ------------------------------------------------------------------------------------------------------
def _tiny_flux_controlnet(tiny, seed=3):
    """A ControlNet for the tiny FLUX, built as the host's XLabs FLUX ControlNet loader builds one
    (comfy.controlnet.load_controlnet_flux_xlabs_mistoline) from the model's own config, random weights."""
    import comfy.controlnet
    import comfy.ldm.flux.controlnet
    import comfy.ops

    dm = patcher(tiny).model.diffusion_model
    config = dict(patcher(tiny).model.model_config.unet_config)
    config.pop("dtype", None)
    net = comfy.ldm.flux.controlnet.ControlNetFlux(operations=comfy.ops.disable_weight_init, device="cpu",
                                                   dtype=torch.float32, **config)
    net.main_model_double, net.main_model_single = len(dm.double_blocks), len(dm.single_blocks)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.08)
    net.eval()
    return comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"), manual_cast_dtype=None,
                                       extra_conds=["y", "guidance"])


@works_with("core ControlNet on FLUX (`ControlNetApplyAdvanced`, XLabs-style FLUX ControlNet)",
            "Apply Regional Attention", "exact")
def test_controlnet_with_regions():
    apply_controlnet = _core_node("nodes", "ControlNetApplyAdvanced")
    tiny = build("flux")
    base = patcher(tiny)
    regional = Regional(tiny)
    control = _tiny_flux_controlnet(tiny)
    hint = torch.rand(1, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(4))
    pos, neg = _pair(tiny)
    cpos, cneg = run_node(apply_controlnet, pos, neg, control, hint, 0.8, 0.0, 1.0)[:2]
    model = regional.apply(base)
    got = sample(model, cpos, cneg, **KW)
    want = sample(regional.reference(base), cpos, cneg, **KW)
    without_control = sample(model, pos, neg, **KW)
    assert (got - without_control).abs().max() > 1e-3  # the ControlNet acted
    assert (got - sample(base, cpos, cneg, **KW)).abs().max() > 1e-3  # the regions acted
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


# -- core Flux KV Cache (experimental, 0.29+) ------------------------------------------------------------------------
def _flux2_padded(text):
    """A region text as FLUX.2 takes every prompt: left-padded with zeros to 512 tokens (model_base.Flux2)."""
    return torch.cat([text.new_zeros(512 - text.shape[0], text.shape[1]), text])


@works_with("core `FluxKVCache` (experimental: reference-image keys cached across steps), FLUX.2 with a reference "
            "image", "Apply Regional Attention + TACA + Attention Capture", "exact")
@pytest.mark.parametrize("order", ["cache_first", "pack_first"])
def test_flux_kv_cache_with_regions_taca_and_capture(order):
    """From its second step Flux KV Cache drops the reference tokens from the queries and appends their keys and
    values cached at the first step. The pack's features act on those calls as on the keys' layout (reference
    tokens visible to all): exact against the dense reference model under the same cache, whichever is applied
    first."""
    kv_cache = _core_node("comfy_extras.nodes_flux", "FluxKVCache")
    tiny = build("flux2", guidance_embed=False)
    base = patcher(tiny)
    kw = dict(KW, width=WIDTH // 2, height=HEIGHT // 2)  # FLUX.2 latents are 1/16 of the pixels; `sample` takes 1/8
    ref = torch.randn(1, tiny.latent_channels, 4, 6, generator=torch.Generator().manual_seed(7))
    extra = {"reference_latents": [ref], "reference_latents_method": "index_timestep_zero"}
    pos, neg = ([[t, {**o, **extra}] for t, o in make_cond(tiny, seed=s)] for s in (1, 2))
    regional = Regional(tiny, double="all", single="all")
    regional.conds = [_flux2_padded(c) for c in regional.conds]

    def pack(model):
        model = run_node(JointAttentionTACA, regional.apply(model), 3.0, 0.0, "both", "all", "all")[0]
        return run_node(JointAttentionCapture, model, "all", "all", 0.0, 1.0)

    def cached(model):
        return run_node(kv_cache, model)[0]

    if order == "cache_first":
        model, handle = pack(cached(base))
    else:
        model, handle = pack(base)
        model = cached(model)
    sampling = base.get_model_object("model_sampling")
    config = regional.config(base, gamma=3.0, gamma_threshold=0.0, gamma_double=range(tiny.n_double),
                             gamma_single=range(tiny.n_single), capture_double=range(tiny.n_double),
                             capture_single=range(tiny.n_single), capture_start=float(sampling.percent_to_sigma(0.0)),
                             capture_end=float(sampling.percent_to_sigma(1.0)))
    reference = cached(regional.reference(base, config))
    seen = []

    def spy(q, k, v, extra_options, **_):  # after the cache's own attn1 patch: how many keys the calls had
        seen.append(k.shape[2] - q.shape[2])
        return {"q": q, "k": k, "v": v}

    spied = model.clone()
    spied.set_model_attn1_patch(spy)
    got, want = sample(spied, pos, neg, **kw), sample(reference, pos, neg, **kw)
    assert max(seen) == ref.shape[-2] * ref.shape[-1]  # the cached reference keys were appended...
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(handle.take()["maps"], config.captured_maps(), atol=1e-5, rtol=1e-5)
    assert (got - sample(pack(base)[0], pos, neg, **kw)).abs().max() > 1e-4  # ...and changed the result
    assert (got - sample(cached(base), pos, neg, **kw)).abs().max() > 1e-4  # the pack acted (10x the tolerance)
