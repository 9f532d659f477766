"""Tiny instances of ComfyUI's real MMDiT model classes, and sampling as the KSampler node does it.

Every builder returns a `TinyModel`: `patcher` (a real ModelPatcher), `family`,
`context_dim` (text features per token), `pooled_dim`, `latent_channels`, `n_double`,
`n_single`. Weights are random (seeded) and everything runs in fp32 on the CPU.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch

CONTEXT_DIM = 64
POOLED_DIM = 64  # = the tiny CLIP's pooled output


@dataclass
class TinyModel:
    patcher: object
    family: str
    context_dim: int
    pooled_dim: int
    latent_channels: int
    n_double: int
    n_single: int
    text_tokens: int = 0  # every conditioning has this many tokens (an encoder that pads every prompt alike), 0: any
    llama_layers: int = 0  # HiDream: the Llama layers its conditioning carries beside the T5 tokens
    # The conditioning carries the text encoder's attention mask, which the model reads its text length from
    # (OmniGen2's `num_tokens`): make_cond adds one, as the host's text encoder does.
    text_attention_mask: bool = False


def _finish(config_cls, unet_config, family, latent_channels, n_double, n_single, seed, weight_dtype=None):
    import comfy.model_patcher

    from ja_host import test_device

    config = _detected_config(unet_config) if config_cls is None else config_cls(unet_config)
    # weight_dtype (e.g. torch.float8_e4m3fn): weights stored in it and cast for compute, as the stock UNET loader's
    # weight_dtype option sets up a model (comfy.sd.load_diffusion_model_state_dict: set_inference_dtype).
    manual_cast = None
    if weight_dtype is not None:
        import comfy.model_management

        manual_cast = comfy.model_management.unet_manual_cast(weight_dtype, torch.device(test_device()),
                                                              config.supported_inference_dtypes)
    config.set_inference_dtype(weight_dtype or torch.float32, manual_cast)
    generator = torch.Generator().manual_seed(seed)
    model = config.get_model({}, device=torch.device("cpu"))
    with torch.no_grad():
        for p in model.diffusion_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.08)
        # Buffers ComfyUI fills from the checkpoint (SD3's pos_embed) start uninitialised.
        for b in model.diffusion_model.buffers():
            if b.is_floating_point():
                b.copy_(torch.randn(b.shape, generator=generator) * 0.08)
    model.eval()
    # The host's own loaders wrap models in CoreModelPatcher where it has one (0.29: ModelPatcherDynamic once main.py
    # enables DynamicVRAM on an NVIDIA GPU; plain ModelPatcher otherwise, and on the CPU).
    patcher_cls = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    patcher = patcher_cls(model, load_device=torch.device(test_device()), offload_device=torch.device("cpu"))
    return TinyModel(patcher, family, CONTEXT_DIM, POOLED_DIM, latent_channels, n_double, n_single)


def _detected_config(unet_config):
    """The model config the host's own detection picks for this unet config (`model_config_from_unet_config`, as
    its checkpoint loaders do after reading the state dict), holding the tiny sizes."""
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet_config(dict(unet_config))
    if config is None:
        raise ValueError(f"this host's model detection finds no model for {unet_config.get('image_model')!r}")
    return config


def _as_detected(params_cls, cfg, detected):
    """Add what the host's own model detection (comfy/model_detection.py) sets for this family to a hand-made
    unet config, for each key the host's params dataclass has a field for. Hosts that added a required field
    (ComfyUI 0.29's `txt_ids_dims`; Chroma's `vec_in_dim`) get the detected value; older ones are left as they were.
    Feature-detected, never keyed on a version."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(params_cls)}
    cfg.update({k: v for k, v in detected.items() if k in fields and k not in cfg})
    return cfg


def _flux_params():
    import comfy.ldm.flux.model

    return comfy.ldm.flux.model.FluxParams


def tiny_flux(depth=2, depth_single=2, seed=0, weight_dtype=None):
    import comfy.supported_models

    cfg = dict(image_model="flux", in_channels=16, patch_size=2, out_channels=16, vec_in_dim=POOLED_DIM,
               context_in_dim=CONTEXT_DIM, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=depth,
               depth_single_blocks=depth_single, axes_dim=[8, 12, 12], theta=10000, qkv_bias=True, guidance_embed=True)
    # Detection: FLUX.1 text tokens carry no position ids.
    _as_detected(_flux_params(), cfg, {"txt_ids_dims": []})
    return _finish(comfy.supported_models.Flux, cfg, "flux", 16, depth, depth_single, seed, weight_dtype)


def tiny_longcat_image(depth=2, depth_single=2, seed=0):
    """LongCat-Image layout (FLUX blocks, no pooled vector or guidance weights, text positions on rope axes 1 and 2)
    from the host's own LongCatImage config. Detection takes LongCat-Image by its 3584-wide text input, which the tests'
    64-wide conditionings cannot feed, so the config class is the host's and the sizes are tiny. Its encoder pads every
    prompt to the same length: so do the tests' conditionings for it (`text_tokens`)."""
    import comfy.supported_models

    cfg = dict(image_model="flux", in_channels=16, patch_size=2, out_channels=16, vec_in_dim=None,
               context_in_dim=CONTEXT_DIM, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=depth,
               depth_single_blocks=depth_single, axes_dim=[8, 12, 12], theta=10000, qkv_bias=True, guidance_embed=False,
               txt_ids_dims=[1, 2])
    tiny = _finish(comfy.supported_models.LongCatImage, cfg, "longcat_image", 16, depth, depth_single, seed)
    tiny.text_tokens = 12
    return tiny


def tiny_ovis(depth=2, depth_single=2, seed=0):
    """Ovis-Image's FLUX variant as the host's detection sets it (0.33: `txt_norm` before `txt_in`, the gated "yak"
    MLP, text positions on rope axes 1 and 2), through the host's detection to the plain `Flux` class. The pooled input
    is kept so the concept scenarios' saliency reference (which zeroes FLUX.1's `vector_in`) applies."""
    cfg = dict(image_model="flux", in_channels=16, patch_size=2, out_channels=16, vec_in_dim=POOLED_DIM,
               context_in_dim=CONTEXT_DIM, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=depth,
               depth_single_blocks=depth_single, axes_dim=[8, 12, 12], theta=10000, qkv_bias=True, guidance_embed=False,
               yak_mlp=True, txt_norm=True, txt_ids_dims=[1, 2])
    if not flux_has_text_norm():
        raise ValueError("this host's FLUX has no txt_norm (Ovis-Image)")
    return _finish(None, cfg, "flux", 16, depth, depth_single, seed)


def flux_has_text_norm() -> bool:
    import dataclasses

    return "txt_norm" in {f.name for f in dataclasses.fields(_flux_params())}


def tiny_flux2(depth=2, depth_single=2, seed=0, guidance_embed=True):
    """FLUX.2 [dev] layout; guidance_embed=False is the Klein layout (no guidance weights, as detection finds)."""
    import comfy.supported_models

    cfg = dict(image_model="flux2", in_channels=128, patch_size=1, out_channels=128, vec_in_dim=None,
               context_in_dim=CONTEXT_DIM, hidden_size=64, mlp_ratio=3.0, num_heads=2, depth=depth,
               depth_single_blocks=depth_single, axes_dim=[8, 8, 8, 8], theta=2000, qkv_bias=False,
               guidance_embed=guidance_embed,
               global_modulation=True, mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0)
    # Detection: FLUX.2 text tokens carry their position on the 4th rope axis.
    _as_detected(_flux_params(), cfg, {"txt_ids_dims": [3]})
    return _finish(comfy.supported_models.Flux2, cfg, "flux2", 128, depth, depth_single, seed)


def tiny_chroma(depth=2, depth_single=2, seed=0):
    import comfy.ldm.chroma.model
    import comfy.supported_models

    cfg = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=CONTEXT_DIM, hidden_size=64,
               mlp_ratio=2.0, num_heads=2, depth=depth, depth_single_blocks=depth_single, axes_dim=[8, 12, 12],
               theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=2)
    # Detection: Chroma goes through the FLUX branch (no vector_in weights, no text position ids).
    _as_detected(comfy.ldm.chroma.model.ChromaParams, cfg, {"txt_ids_dims": [], "vec_in_dim": None})
    return _finish(comfy.supported_models.Chroma, cfg, "chroma", 16, depth, depth_single, seed)


def tiny_chroma_radiance(depth=2, depth_single=2, seed=0, sequential_text_ids=True):
    """Chroma Radiance: Chroma's blocks over pixel patches, decoded by a NeRF head. `sequential_text_ids`: the newer
    checkpoints' text positions along rope axis 0 (detection: a `__sequential__` buffer). The latent is pixels; the
    tests' latent (1/8 of WIDTH x HEIGHT) at patch 2 gives the same token grid as the other families."""
    import comfy.ldm.chroma_radiance.model
    import comfy.supported_models

    params = comfy.ldm.chroma_radiance.model.ChromaRadianceParams
    cfg = dict(image_model="chroma_radiance", in_channels=3, out_channels=3, context_in_dim=CONTEXT_DIM, hidden_size=64,
               mlp_ratio=2.0, num_heads=2, depth=depth, depth_single_blocks=depth_single, axes_dim=[8, 12, 12],
               theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=2,
               nerf_hidden_size=16, nerf_mlp_ratio=2, nerf_depth=2, nerf_max_freqs=4, nerf_tile_size=0,
               nerf_final_head_type="linear", nerf_embedder_dtype=torch.float32)
    # Detection's Chroma Radiance branch; fields an older host's params lack are left out.
    _as_detected(params, cfg, {"txt_ids_dims": [], "vec_in_dim": None, "use_x0": False,
                               "use_sequential_txt_ids": sequential_text_ids})
    tiny = _finish(comfy.supported_models.ChromaRadiance, cfg, "chroma_radiance", 3, depth, depth_single, seed)
    # At tiny size the NeRF head, which decodes each patch's pixels from the transformer's token, lets little of the
    # token through at the common init scale: larger head weights make the prompt reach the pixels (a prompt change
    # moves the latent by more than the identities' 1e-3 floor), so the text-side proofs can fail.
    with torch.no_grad():
        for name, p in tiny.patcher.model.diffusion_model.named_parameters():
            if name.startswith("nerf"):
                p.mul_(6.0)
    return tiny


def _sd3_config(depth, attn2_layers, num_blocks=None):
    # MMDiT ties width to depth (64 x depth); num_blocks sets the block count on its own.
    return dict(in_channels=16, patch_size=2, out_channels=16, depth=depth, num_blocks=num_blocks or depth, input_size=None,
                adm_in_channels=POOLED_DIM, pos_embed_scaling_factor=None, pos_embed_max_size=48, num_patches=48 * 48,
                context_embedder_config={"target": "torch.nn.Linear",
                                         "params": {"in_features": CONTEXT_DIM, "out_features": 64 * depth}},
                qk_norm="rms", x_block_self_attn_layers=list(attn2_layers))


def tiny_sd3(depth=2, seed=0, num_blocks=None):
    import comfy.supported_models

    blocks = num_blocks or depth
    return _finish(comfy.supported_models.SD3, _sd3_config(depth, [], blocks), "sd3", 16, blocks, 0, seed)


def tiny_sd35m(depth=3, seed=0):
    """SD3.5-Medium style: the first blocks make an extra image-only attention call (attn2)."""
    import comfy.supported_models

    return _finish(comfy.supported_models.SD3, _sd3_config(depth, [0, 1]), "sd35m", 16, depth, 0, seed)


def tiny_qwen_image(depth=2, seed=0):
    """Qwen-Image layout (dual-stream blocks over [text ; image], per-stream q/k norms, 3-axis rope, text from
    Qwen2.5-VL) at 2 heads x 32. Detection fixes 24 heads x 128 for this family, so the config is hand-made."""
    import comfy.supported_models

    cfg = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=depth,
               attention_head_dim=32, num_attention_heads=2, joint_attention_dim=CONTEXT_DIM,
               axes_dims_rope=(8, 12, 12))
    return _finish(comfy.supported_models.QwenImage, cfg, "qwen_image", 16, depth, 0, seed)


def tiny_z_image(depth=2, seed=0, variant="z_image", weight_dtype=None):
    """Z-Image layout (NextDiT: caption refiner, noise refiner, joint layers over [caption ; image], caption and image
    padded to multiples of 32 by learned pad tokens) at 8 heads x 32 (Z-Image's modulation needs 256 features)."""
    import comfy.supported_models

    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, n_layers=depth, n_refiner_layers=1,
               n_heads=8, n_kv_heads=8, multiple_of=16, ffn_dim_multiplier=1.0, norm_eps=1e-5, qk_norm=True,
               cap_feat_dim=CONTEXT_DIM, axes_dims=[8, 12, 12], axes_lens=[512, 64, 64], rope_theta=256.0,
               z_image_modulation=True, time_scale=1000.0, pad_tokens_multiple=32)
    if variant == "lumina2":  # Lumina-2: the same NextDiT without pad tokens and with its own modulation
        cfg.update(z_image_modulation=False, time_scale=1.0, pad_tokens_multiple=None)
        return _finish(comfy.supported_models.Lumina2, cfg, "z_image", 16, depth, 0, seed, weight_dtype)
    return _finish(comfy.supported_models.ZImage, cfg, "z_image", 16, depth, 0, seed, weight_dtype)


def tiny_mage_flow(depth=2, seed=0):
    """Mage-Flow layout (Qwen-Image's dual-stream blocks at patch 1 over FLUX.2's 128-channel latent, zero text ids,
    text from Qwen3-VL-4B) at 2 heads x 32, through the host's detection. Its latent cells are 16 image pixels:
    `sample` draws its latent at 1/16 of the image, so the tests' 16 px cell masks fall on its tokens."""
    cfg = dict(image_model="mage_flow", in_channels=128, out_channels=128, num_layers=depth, attention_head_dim=32,
               num_attention_heads=2, joint_attention_dim=CONTEXT_DIM, axes_dims_rope=(8, 12, 12))
    tiny = _finish(None, cfg, "mage_flow", 128, depth, 0, seed)
    tiny.patcher.model.ja_latent_px = 16
    return tiny


HIDREAM_LLAMA_LAYERS = 3  # the tiny Llama's layers; the conditioning carries all of them, as the host's encoder does


def tiny_hidream(depth=2, depth_single=2, seed=0):
    """HiDream I1 through the host's own detection path: the unet config detection makes for a HiDream checkpoint
    (`model_detection.detect_unet_config`'s hidream branch), at 2 heads x 32, the tiny Llama's 3 layers read by the
    blocks as detection's list reads Llama 3.1's 32 (one per block, the last layer repeated), 64-wide T5 and Llama
    features, and the pooled vector of the host's HiDream encoder without CLIP (2048 zeros)."""
    import comfy.model_detection

    layers = HIDREAM_LLAMA_LAYERS
    llama_layers = [min(i, layers - 1) for i in range(depth + depth_single)]
    cfg = dict(image_model="hidream", attention_head_dim=32, axes_dims_rope=[8, 12, 12],
               caption_channels=[CONTEXT_DIM, CONTEXT_DIM], max_resolution=[128, 128], in_channels=16,
               llama_layers=llama_layers, num_attention_heads=2, num_routed_experts=4, num_activated_experts=2,
               num_layers=depth, num_single_layers=depth_single, out_channels=16, patch_size=2,
               text_emb_dim=HIDREAM_POOLED_DIM)
    config = comfy.model_detection.model_config_from_unet_config(cfg)
    tiny = _finish(lambda _cfg: config, cfg, "hidream", 16, depth, depth_single, seed)
    tiny.pooled_dim = HIDREAM_POOLED_DIM
    tiny.llama_layers = layers
    return tiny


HIDREAM_POOLED_DIM = 2048  # CLIP-L 768 + CLIP-G 1280, as the host's HiDream encoder gives it


def llama_states(tokens: torch.Tensor, layers: int) -> torch.Tensor:
    """The tiny conditioning's Llama states [1, layers, T + 3, C] of text tokens [1, T, C]: drawn from a seed made of
    the tokens, so whoever holds a text's tokens (a reference model) holds its Llama states; three tokens longer
    than the T5 part, as Llama and T5 token counts differ."""
    t = tokens.detach().to("cpu", torch.float32).contiguous()
    seed = int.from_bytes(hashlib.sha256(t.numpy().tobytes()).digest()[:4], "little")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, layers, t.shape[-2] + 3, t.shape[-1], generator=g).to(tokens.dtype)


def _detected(unet_config, family, latent_channels, n_double, n_single, seed):
    """A tiny model whose config class the host's own detection picks from `unet_config`
    (`comfy.model_detection.model_config_from_unet_config`, the path a loaded checkpoint takes once its sizes are read),
    finished as `_finish` does."""
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet_config(dict(unet_config))
    if config is None:
        raise RuntimeError(f"this host's detection finds no model config for {unet_config!r}")
    return _finish(lambda cfg: config, unet_config, family, latent_channels, n_double, n_single, seed)


def tiny_krea2(depth=2, seed=0):
    """Krea 2 (single-stream blocks over [text ; image], the `txtfusion` text adapter over the encoder's stacked
    hidden layers, 3-axis rope, 5-D Wan 2.1 latents) at 2 heads x 32 (GQA: 1 key/value head). Detection reads only
    `image_model`, features, channels, patch, layers, heads, kvheads, txtlayers and txtdim from a checkpoint; the text
    adapter's heads and the rope theta are the class's defaults, shrunk here in the unet config. Context: 2 stacked
    layers x 32 features = the tiny CLIP's 64 features per token."""
    cfg = dict(image_model="krea2", features=64, channels=16, patch=2, layers=depth, heads=2, kvheads=1,
               txtlayers=2, txtdim=CONTEXT_DIM // 2, txtheads=2, txtkvheads=2, multiplier=2)
    return _detected(cfg, "krea2", 16, depth, 0, seed)


def tiny_ideogram4(depth=2, seed=0):
    """Ideogram 4 (single-stream layers over [text ; image], text projected per token, 3-axis interleaved rope, a
    patchified 128-channel latent: one 16 px cell per token) at 2 heads x 32. Detection reads only `in_channels` and
    `num_layers`; the config class then sets the real sizes, shrunk here after the host picked it."""
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet_config({"image_model": "ideogram4", "in_channels": 128,
                                                                  "num_layers": depth})
    if config is None:
        raise RuntimeError("this host's detection finds no Ideogram 4 config")
    config.unet_config.update(num_attention_heads=2, attention_head_dim=32, intermediate_size=128, adaln_dim=32,
                              llm_features_dim=CONTEXT_DIM, mrope_section=[6, 5, 5])
    return _finish(lambda cfg: config, config.unet_config, "ideogram4", 128, depth, 0, seed)


def tiny_omnigen2(depth=2, seed=0):
    """OmniGen2 layout (context / noise / reference refiners, joint layers over [caption ; references ; image],
    grouped-query attention) at 4 query heads and 2 key/value heads x 32, through the host's detection
    (`model_config_from_unet_config`) with the keys its detection sets and tiny sizes."""
    import comfy.model_detection

    cfg = dict(image_model="omnigen2", axes_dim_rope=[8, 12, 12], axes_lens=[1024, 1664, 1664],
               ffn_dim_multiplier=None, hidden_size=128, in_channels=16, multiple_of=16, norm_eps=1e-5,
               num_attention_heads=4, num_kv_heads=2, num_layers=depth, num_refiner_layers=1, out_channels=None,
               patch_size=2, text_feat_dim=CONTEXT_DIM, timestep_scale=1000.0)
    tiny = _finish(comfy.model_detection.model_config_from_unet_config, cfg, "omnigen2", 16, depth, 0, seed)
    tiny.text_attention_mask = True
    return tiny


def tiny_boogu(depth=2, depth_double=2, seed=0):
    """Boogu layout (OmniGen2's refiners, double-stream layers, OmniGen2's single-stream joint layers) at 4 query
    heads and 2 key/value heads x 32, through the host's detection (`model_config_from_unet_config`) with the keys
    its detection sets; detection reads no head counts or rope axes for Boogu, so those are in the config too."""
    import comfy.model_detection

    cfg = dict(image_model="boogu", hidden_size=128, num_layers=depth, num_double_stream_layers=depth_double,
               num_refiner_layers=1, instruction_feat_dim=CONTEXT_DIM, num_attention_heads=4, num_kv_heads=2,
               axes_dim_rope=[8, 12, 12], axes_lens=[1024, 1664, 1664], multiple_of=16)
    tiny = _finish(comfy.model_detection.model_config_from_unet_config, cfg, "boogu", 16, depth_double, depth, seed)
    tiny.text_attention_mask = True
    return tiny


AURA_CONTEXT_DIM = 2048  # AuraFlow is detected by its Pile-T5-XL text features (`cond_seq_dim`)


def tiny_aura_flow(depth=2, depth_single=2, seed=0):
    """AuraFlow (comfy/ldm/aura: double layers over [8 registers ; text] and [image], then single layers) at 4 heads x
    32, through the host's detection: the unet config its detection reads from a checkpoint (`max_seq`,
    `cond_seq_dim` 2048, layer counts) plus the tiny widths."""
    unet = dict(max_seq=256, cond_seq_dim=AURA_CONTEXT_DIM, n_double_layers=depth, n_layers=depth + depth_single,
                dim=128, n_heads=4, global_conddim=128)
    config = _detected_config(unet)
    tiny = _finish(lambda _: config, unet, "aura_flow", 4, depth, depth_single, seed)
    with torch.no_grad():  # text features of the size the other tiny models see from their 64-feature inputs
        tiny.patcher.model.diffusion_model.cond_seq_linear.weight.mul_((CONTEXT_DIM / AURA_CONTEXT_DIM) ** 0.5)
    tiny.context_dim = AURA_CONTEXT_DIM
    return tiny


def tiny_lens(depth=2, seed=0):
    """Lens (comfy/ldm/lens: dual-stream blocks over [image ; text], text from two encoder layers of 32 features each,
    the 128-channel FLUX.2 latent one token per cell) at 2 heads x 64, through the host's detection: the unet config
    its detection reads from a checkpoint, at tiny sizes. A host without Lens skips (ja_families)."""
    unet = dict(image_model="lens", in_channels=128, out_channels=32, num_layers=depth, num_attention_heads=2,
                enc_hidden_dim=CONTEXT_DIM // 2, multi_layer_encoder_feature=True, selected_layer_index=(0, 1))
    config = _detected_config(unet)
    return _finish(lambda _: config, unet, "lens", 128, depth, 0, seed)


def tiny_joy_image(depth=2, seed=0):
    """JoyImage-Edit (comfy/ldm/joyimage: dual-stream blocks over [image ; reference images ; text], Wan 2.1 latents
    with a frame axis, rope on image tokens only) at 2 heads x 128 (the host's config fixes the rope to 128 features
    per head), through the host's detection: the unet config its detection reads from a checkpoint (which detects
    JoyImage by `image_model` alone), at tiny sizes: 64 text features (the checkpoints' 4096) so that the tiny CLIP
    feeds it. A host without JoyImage skips (ja_families)."""
    unet = dict(image_model="joyimage", in_channels=16, hidden_size=256, patch_size=[1, 2, 2], num_layers=depth,
                num_attention_heads=2, text_dim=CONTEXT_DIM)
    config = _detected_config(unet)
    return _finish(lambda _: config, unet, "joy_image", 16, depth, 0, seed)


def tiny_pixart_sigma(seed=0):
    """PixArt-Sigma (comfy/ldm/pixart: cross-attention from the image to the text, no joint attention) at 2 heads x 32,
    through the host's detection: a model class the pack does not support, refused by name."""
    unet = dict(image_model="pixart_sigma", num_heads=2, patch_size=2, hidden_size=64, in_channels=4, depth=1,
                caption_channels=CONTEXT_DIM, input_size=64, pe_interpolation=1, micro_condition=False)
    config = _detected_config(unet)
    return _finish(lambda _: config, unet, "pixart_sigma", 4, 1, 0, seed)


def tiny_hunyuan_image(depth=2, depth_single=2, seed=0, byt5=True):
    """HunyuanImage 2.1 layout (comfy/ldm/hunyuan_video: a token refiner over the text, double then single blocks,
    byT5 glyph tokens beside the Qwen2.5-VL text) at 2 heads x 128, as the host's detection makes the unet config
    (heads = hidden / 128, rope axes [64, 64], theta 256) and picks the model config from it
    (`model_config_from_unet_config`). Patch 2 gives the tests' latent (1/8 of WIDTH x HEIGHT) the same 4 x 6 token
    grid as the other families (HunyuanImage 2.1 files have patch 1 on 32-pixel latent cells)."""
    import comfy.ldm.hunyuan_video.model
    import comfy.model_detection

    cfg = dict(image_model="hunyuan_video", in_channels=64, patch_size=[2, 2], out_channels=64, vec_in_dim=None,
               axes_dim=[64, 64], meanflow=False, context_in_dim=CONTEXT_DIM, hidden_size=256, mlp_ratio=4.0,
               num_heads=2, depth=depth, depth_single_blocks=depth_single, theta=256, qkv_bias=True, byt5=byt5,
               guidance_embed=False, use_cond_type_embedding=False, vision_in_dim=None)
    _as_detected(comfy.ldm.hunyuan_video.model.HunyuanVideoParams, cfg, {"meanflow_sum": False})
    config = comfy.model_detection.model_config_from_unet_config(cfg)
    if type(config).__name__ != "HunyuanImage21":
        raise RuntimeError(f"the host's detection picked {type(config).__name__} for a HunyuanImage 2.1 config")
    return _finish(type(config), cfg, "hunyuan_image", 64, depth, depth_single, seed)


def tiny_hunyuan_image_refiner(depth=2, depth_single=2, seed=0):
    """The HunyuanImage 2.1 refiner (the same comfy/ldm/hunyuan_video code at 3-D patch [1, 1, 1], rope axes
    [16, 56, 56]) at 2 heads x 128, picked by the host's detection (`model_config_from_unet_config`). It takes 128
    channels: the 64-channel paired-frame latent and the image to refine beside it (zeros when none). Its latent cells
    are 16 image pixels: `sample` draws its latent at 1/16 of the image, one frame pair, so the tests' 4 x 6 token
    grid holds."""
    import comfy.ldm.hunyuan_video.model

    cfg = dict(image_model="hunyuan_video", in_channels=128, patch_size=[1, 1, 1], out_channels=64, vec_in_dim=None,
               axes_dim=[16, 56, 56], meanflow=False, context_in_dim=CONTEXT_DIM, hidden_size=256, mlp_ratio=4.0,
               num_heads=2, depth=depth, depth_single_blocks=depth_single, theta=256, qkv_bias=True, byt5=True,
               guidance_embed=False, use_cond_type_embedding=False, vision_in_dim=None)
    _as_detected(comfy.ldm.hunyuan_video.model.HunyuanVideoParams, cfg, {"meanflow_sum": False})
    config = _detected_config(cfg)
    if type(config).__name__ != "HunyuanImage21Refiner":
        raise RuntimeError(f"the host's detection picked {type(config).__name__} for a HunyuanImage 2.1 refiner config")
    tiny = _finish(type(config), cfg, "hunyuan_image_refiner", 64, depth, depth_single, seed)
    tiny.patcher.model.ja_latent_px = 16
    return tiny


# HunyuanVideo variants: what the host's detection reads from each kind of checkpoint (input channels: latent, concat
# image, mask; 1.5's vision input, byT5 glyph input and cond-type embeddings), and the model_base class it must pick.
HUNYUAN_VIDEO = {
    "hunyuan_video": ("HunyuanVideo", dict(in_channels=16, out_channels=16)),
    "hunyuan_video_i2v": ("HunyuanVideoI2V", dict(in_channels=33, out_channels=16)),
    "hunyuan_video_skyreels": ("HunyuanVideoSkyreelsI2V", dict(in_channels=32, out_channels=16)),
    "hunyuan_video15": ("HunyuanVideo15", dict(in_channels=65, out_channels=32)),
    "hunyuan_video15_sr": ("HunyuanVideo15_SR_Distilled", dict(in_channels=98, out_channels=32)),
}


def tiny_hunyuan_video(variant="hunyuan_video", depth=2, depth_single=2, seed=0):
    """HunyuanVideo 1.0 / 1.5 (comfy/ldm/hunyuan_video over a (frames, rows, cols) token grid: the token refiner,
    double then single blocks) at 2 heads x 128, as the host's detection makes the unet config (heads = hidden / 128,
    rope axes [16, 56, 56], theta 256; 1.0: a pooled CLIP-L input (64 wide, the tiny CLIP's; the files' 768) and
    guidance weights; 1.5: byT5 glyph
    input, cond-type embeddings and a 1152-wide vision input) and picks the model class from it
    (`model_config_from_unet_config`). 1.0: patch (1, 2, 2) on 8-pixel latent cells, the tests' 4 x 6 token grid
    per frame; 1.5: patch (1, 1, 1) on 16-pixel cells (its files' patch), drawn at 1/16 of the image, the same grid."""
    import comfy.ldm.hunyuan_video.model
    import comfy.model_detection

    expected, sizes = HUNYUAN_VIDEO[variant]
    v15 = expected.startswith("HunyuanVideo15")
    cfg = dict(image_model="hunyuan_video", patch_size=[1, 1, 1] if v15 else [1, 2, 2],
               vec_in_dim=None if v15 else POOLED_DIM, axes_dim=[16, 56, 56], meanflow=False, context_in_dim=CONTEXT_DIM,
               hidden_size=256, mlp_ratio=4.0, num_heads=2, depth=depth, depth_single_blocks=depth_single, theta=256,
               qkv_bias=True, byt5=v15, guidance_embed=not v15, use_cond_type_embedding=v15,
               vision_in_dim=1152 if v15 else None, **sizes)
    _as_detected(comfy.ldm.hunyuan_video.model.HunyuanVideoParams, cfg, {"meanflow_sum": v15})
    config = comfy.model_detection.model_config_from_unet_config(cfg)
    if type(config).__name__ != expected:
        raise RuntimeError(f"the host's detection picked {type(config).__name__} for a {expected} config")
    tiny = _finish(type(config), cfg, variant, sizes["out_channels"], depth, depth_single, seed)
    if v15:
        tiny.patcher.model.ja_latent_px = 16
    return tiny


BUILDERS = {
    "flux": tiny_flux,
    "flux2": tiny_flux2,
    "chroma": tiny_chroma,
    "chroma_radiance": tiny_chroma_radiance,
    "sd3": tiny_sd3,
    "sd35m": tiny_sd35m,
    "qwen_image": tiny_qwen_image,
    "z_image": tiny_z_image,
    "mage_flow": tiny_mage_flow,
    "ovis": tiny_ovis,
    "longcat_image": tiny_longcat_image,
    "hunyuan_image": tiny_hunyuan_image,
    "hidream": tiny_hidream,
    "hunyuan_image_refiner": tiny_hunyuan_image_refiner,
    "krea2": tiny_krea2,
    "ideogram4": tiny_ideogram4,
    "omnigen2": tiny_omnigen2,
    "boogu": tiny_boogu,
    "aura_flow": tiny_aura_flow,
    "lens": tiny_lens,
    "joy_image": tiny_joy_image,
    **{variant: functools.partial(tiny_hunyuan_video, variant) for variant in HUNYUAN_VIDEO},
}


def build(family: str, **kw) -> TinyModel:
    tiny = BUILDERS[family](**kw)
    # What the host's own loaders leave on their models (ComfyUI 0.29: `cached_patcher_init`): a factory for a
    # freshly loaded copy, which `ModelPatcher.deepclone_multigpu` (MultiGPU work units) calls per extra device.
    # Same family, same arguments, same seeded weights.
    tiny.patcher.cached_patcher_init = (_reload, (family, tuple(sorted(kw.items()))))
    # ComfyUI 0.3.75's clone() does not carry that attribute: the model itself (shared by clones) keeps it too.
    tiny.patcher.model.ja_reload = tiny.patcher.cached_patcher_init
    return tiny


def _reload(family, kw_items, disable_dynamic=False):
    return BUILDERS[family](**dict(kw_items)).patcher


def patcher(tiny):
    return getattr(tiny, "patcher", tiny)


def text_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def make_cond(model: TinyModel, seed=0, n_tokens=8, ref_latents=None, guidance=3.5):
    """A CONDITIONING with the model's feature sizes, deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    n_tokens = getattr(model, "text_tokens", 0) or n_tokens
    tokens = torch.randn(1, n_tokens, model.context_dim, generator=g)
    extra = {"pooled_output": torch.randn(1, model.pooled_dim, generator=g), "guidance": guidance}
    if getattr(model, "text_attention_mask", False):
        extra["attention_mask"] = torch.ones(1, n_tokens, dtype=torch.long)
    if ref_latents is not None:
        extra["reference_latents"] = list(ref_latents)
    if model.llama_layers:  # HiDream: the text's Llama states of every layer
        extra["conditioning_llama3"] = llama_states(tokens, model.llama_layers)
    return [[tokens, extra]]


def with_options(cond, **options):
    """The conditioning with extra options set (reference_latents, reference_latents_method, attention_mask), as the
    host's nodes set them."""
    return [[tokens, {**extra, **options}] for tokens, extra in cond]


def prompt_alone(region_cond, base_cond):
    """The region's tokens as the prompt, with the base prompt's pooled vector and guidance (the pack keeps those):
    what a full-image region at strength 1 must sample like."""
    options = dict(base_cond[0][1])
    if "conditioning_llama3" in region_cond[0][1]:  # HiDream: the text's own Llama states
        options["conditioning_llama3"] = region_cond[0][1]["conditioning_llama3"]
    if "attention_mask" in options:  # the text encoder's mask is the text's own (OmniGen2 reads its length there)
        options["attention_mask"] = torch.ones(1, region_cond[0][0].shape[1], dtype=torch.long)
    return [[region_cond[0][0], options]]


def latent_cell(model) -> int:
    """Image pixels per latent cell as the tests draw latents: 8 (the tests' images are 8 latent cells a side per 64
    pixels), unless the builder says its model's cells are larger (Mage-Flow: 16)."""
    return getattr(getattr(model, "patcher", model).model, "ja_latent_px", 8)


def sample(patcher, positive, negative, seed=0, steps=4, cfg=1.0, width=64, height=64, batch=1,
           sampler="euler", scheduler="simple", denoise=1.0, latent=None, noise=None, **steps_range):
    """Sample like ComfyUI's KSampler node (common_ksampler) and return the latent.

    `noise`: the initial noise, else the host's `prepare_noise(latent, seed)`, which seeds torch's global
    generator: threads sampling at once pass noise made beforehand (`noise_for`). `steps_range`: start_step,
    last_step, force_full_denoise, as KSamplerAdvanced passes them."""
    import comfy.sample

    patcher = getattr(patcher, "patcher", patcher)
    if latent is None:
        channels = patcher.model.latent_format.latent_channels
        cell = latent_cell(patcher)
        latent = torch.zeros(batch, channels, height // cell, width // cell)
    latent = comfy.sample.fix_empty_latent_channels(patcher, latent)
    if noise is None:
        noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(patcher, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               denoise=denoise, disable_pbar=True, seed=seed, **steps_range)


def uncond_first_step(patcher, positive, negative, **kw):
    """Sample like `sample` and return (the negative half's prediction at the first step, the sampled latent)."""
    seen = []

    def post_cfg(args):
        seen.append(args["uncond_denoised"].clone())
        return args["denoised"]

    m = getattr(patcher, "patcher", patcher).clone()
    m.set_model_sampler_post_cfg_function(post_cfg)
    out = sample(m, positive, negative, **kw)
    return seen[0], out


def noise_for(patcher, seed=0, width=64, height=64, batch=1, **_):
    """The noise `sample` would start from for these arguments (made on the calling thread)."""
    import comfy.sample

    patcher = getattr(patcher, "patcher", patcher)
    channels = patcher.model.latent_format.latent_channels
    cell = latent_cell(patcher)
    latent = comfy.sample.fix_empty_latent_channels(patcher, torch.zeros(batch, channels, height // cell, width // cell))
    return comfy.sample.prepare_noise(latent, seed)


def tiny_clip(seed=0):
    """A real ComfyUI CLIP object: CLIP-L architecture at 64 features / 2 layers, ComfyUI's bundled
    tokenizer, random weights. Its tokens [1, 77, 64] and pooled [1, 64] fit every tiny model."""
    import functools
    import json

    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    from ja_host import host_path

    config = json.loads((host_path() / "comfy" / "sd1_clip_config.json").read_text())
    config.update(hidden_size=CONTEXT_DIM, intermediate_size=2 * CONTEXT_DIM, num_attention_heads=2,
                  num_hidden_layers=2, projection_dim=POOLED_DIM)

    class TinyClipL(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):  # noqa: B006 (ComfyUI signature)
            super().__init__(device=device, dtype=dtype, model_options=model_options, textmodel_json_config=config,
                             layer="last", return_projected_pooled=False)

    class TinyTokenizer(comfy.sd1_clip.SD1Tokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):  # noqa: B006 (ComfyUI signature)
            super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data,
                             tokenizer=functools.partial(comfy.sd1_clip.SDTokenizer, embedding_size=CONTEXT_DIM))

    class TinyTextModel(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 (ComfyUI signature)
            super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=TinyClipL)

    clip = comfy.sd.CLIP(target=comfy.supported_models_base.ClipTarget(TinyTokenizer, TinyTextModel))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clip.cond_stage_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return clip


def tiny_llm_clip(encoder="qwen3_4b", seed=0, tokenizer_data=None):
    """A real ComfyUI CLIP object of an LLM text encoder as the host's CLIPLoader builds it (its tokenizer class
    with its template, its text-encoder class), at 64 features / 3 layers through the host's own config override
    (`model_options["<name>_model_config"]`), random weights. "qwen3_4b": Z-Image (ZImageTokenizer with the
    host's Qwen tokenizer files); "gemma2_2b": Lumina-2 (LuminaTokenizer; its SentencePiece model comes from the
    checkpoint, so `tokenizer_data` must hold one). Its conditioning is [1, tokens, 64]."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.lumina2
    import comfy.text_encoders.qwen_image
    import comfy.text_encoders.z_image

    small = {"hidden_size": CONTEXT_DIM, "intermediate_size": 2 * CONTEXT_DIM, "num_hidden_layers": 3,
             "num_attention_heads": 2, "num_key_value_heads": 1}
    if encoder == "qwen3_4b":
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.z_image.ZImageTokenizer,
                                                        comfy.text_encoders.z_image.te())
    elif encoder == "qwen25_7b":  # Qwen-Image / -Edit: QwenImageTokenizer (chat template, picture template)
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.qwen_image.QwenImageTokenizer,
                                                        comfy.text_encoders.qwen_image.te())
    elif encoder == "gemma2_2b":
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.lumina2.LuminaTokenizer,
                                                        comfy.text_encoders.lumina2.te(model_type="gemma2_2b"))
        small["vocab_size"] = 32128  # enough for the SentencePiece model tests give it
    else:
        raise ValueError(encoder)
    clip = comfy.sd.CLIP(target=target, tokenizer_data=tokenizer_data or {},
                         model_options={f"{encoder}_model_config": small, "dtype": torch.float32})
    if encoder == "qwen25_7b":
        _shrink_vision_tower(clip.cond_stage_model.qwen25_7b)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clip.cond_stage_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return clip


def tiny_hidream_clip(seed=0):
    """A real ComfyUI CLIP object of HiDream's text encoder as the host builds it (HiDreamTokenizer, the host's
    `hidream_clip` model) with T5-XXL and Llama 3.1 at 64 features (T5: 2 layers; Llama: 3 layers, all of whose
    hidden states the conditioning carries) through the host's config overrides, and no CLIP-L / -G (the host's
    encoder then gives a zero pooled vector of 2048). Its conditioning: T5 tokens [1, 128, 64] and
    `conditioning_llama3` [1, 3, tokens, 64]."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.hidream

    t5 = {"d_model": CONTEXT_DIM, "d_ff": 2 * CONTEXT_DIM, "d_kv": 32, "num_heads": 2, "num_layers": 2}
    llama = {"hidden_size": CONTEXT_DIM, "intermediate_size": 2 * CONTEXT_DIM,
             "num_hidden_layers": HIDREAM_LLAMA_LAYERS, "num_attention_heads": 2, "num_key_value_heads": 1}
    target = comfy.supported_models_base.ClipTarget(
        comfy.text_encoders.hidream.HiDreamTokenizer,
        comfy.text_encoders.hidream.hidream_clip(clip_l=False, clip_g=False, t5=True, llama=True))
    clip = comfy.sd.CLIP(target=target, model_options={"t5xxl_model_config": t5, "llama_model_config": llama,
                                                       "dtype": torch.float32})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clip.cond_stage_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return clip


def tiny_aura_clip(seed=0):
    """A real ComfyUI CLIP object of AuraFlow's text encoder as the host builds it (AuraT5Tokenizer with the host's
    Pile-T5 SentencePiece model, the host's `AuraT5Model`) at AuraFlow's 2048 features, which the tiny AuraFlow's
    detected text input takes, and otherwise tiny (1 layer, 2 heads x 16) through the host's config override. Its
    conditioning: Pile-T5 tokens [1, 256, 2048] (no start token), no pooled vector."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.aura_t5

    config = {"d_model": AURA_CONTEXT_DIM, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1}
    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.aura_t5.AuraT5Tokenizer,
                                                    comfy.text_encoders.aura_t5.AuraT5Model)
    clip = comfy.sd.CLIP(target=target, model_options={"pile_t5xl_model_config": config, "dtype": torch.float32})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clip.cond_stage_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return clip


def _shrink_vision_tower(encoder):
    """Qwen2.5-VL's vision tower has fixed sizes (1280 wide, 32 layers), not read from the config: the host's
    own class at 32 features and one layer takes its place, built with the encoder's own operations, before the
    weights are drawn. The picture -> vision token path (resize to the 28-pixel grid, 2x2 merge, embeds spliced
    in at <|image_pad|>) is the host's."""
    import comfy.text_encoders.qwen_vl

    encoder.transformer.visual = comfy.text_encoders.qwen_vl.Qwen2VLVisionTransformer(
        hidden_size=32, output_hidden_size=CONTEXT_DIM, intermediate_size=64, num_heads=2, num_layers=1,
        dtype=torch.float32, ops=encoder.operations).requires_grad_(False)  # as the host's loaded weights


def tiny_wan_vae(seed=0):
    """A real ComfyUI VAE object of the Wan 2.1 architecture (Qwen-Image's VAE; 3-D latents, 16 channels) at
    8 base channels, random weights; the host detects it from the state dict as it does the real file."""
    import comfy.ldm.wan.vae
    import comfy.sd

    generator = torch.Generator().manual_seed(seed)
    model = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True])
    state = {k: (torch.randn(v.shape, generator=generator) * 0.05 if v.ndim > 1 else v)
             for k, v in model.state_dict().items()}
    return comfy.sd.VAE(sd=state)


def tiny_vae(latent_channels=16, seed=0):
    """A real ComfyUI VAE object (TAESD architecture, random weights)."""
    import comfy.sd
    import comfy.taesd.taesd

    generator = torch.Generator().manual_seed(seed)
    state = comfy.taesd.taesd.TAESD(latent_channels=latent_channels).state_dict()
    state = {k: (torch.randn(v.shape, generator=generator) * 0.05 if v.ndim > 1 else v) for k, v in state.items()}
    return comfy.sd.VAE(sd=state)
