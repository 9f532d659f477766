"""What users combine the pack with, built the way the host (or another pack) does it, for the composition tests.

- `bypass`: a model whose forward is swapped (as an object patch, like packs that bring their own model
  implementation) for one that runs without ComfyUI's attention override ("attention": the host's attention
  function is called directly) or without any of ComfyUI's patch points ("forward": no override, no block patches).
- `foreign_override`: another pack's attention override written into the one slot, chaining to the one that was
  there (`chain=True`, called once per attention call) or replacing it (`chain=False`, calling torch's SDPA itself).
- `tiny_lora`: a LoRA state dict (`<key>.lora_up.weight` / `.lora_down.weight`) for some of a tiny model's linear
  layers, saved as .safetensors for the stock LoRA loader.
"""
from __future__ import annotations

import importlib.util
import sys

import torch

OVERRIDE = "optimized_attention_override"
BYPASS_MODES = ("attention", "forward")


def bypass(model, mode: str = "attention"):
    """A clone of `model` whose diffusion model's forward runs without the host's patch points."""
    if mode not in BYPASS_MODES:
        raise ValueError(f"mode must be one of {BYPASS_MODES}, got {mode!r}")
    m = model.clone()
    dm = m.get_model_object("diffusion_model")
    forward = type(dm).forward

    def replaced_forward(*args, transformer_options=None, **kwargs):
        options = dict(transformer_options or {})
        if mode == "forward":
            options = {}  # a model implementation of its own knows nothing of ComfyUI's patches
        options.pop(OVERRIDE, None)
        return forward(dm, *args, transformer_options=options, **kwargs)

    m.add_object_patch("diffusion_model.forward", replaced_forward)
    return m


def sdpa_attention(*args, **kwargs):
    """Attention computed with torch's SDPA, from ComfyUI's attention call arguments (FLUX: q, k, v [B,H,L,D] with
    skip_reshape; SD3: [B,L,H*D] with heads); returns [B, L, H*D]."""
    q, k, v = args[0], args[1], args[2]
    heads = args[3] if len(args) > 3 else kwargs["heads"]
    if not kwargs.get("skip_reshape", False):
        b = q.shape[0]
        q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    mask = args[4] if len(args) > 4 else kwargs.get("mask")  # NextDiT and Qwen-Image pass it as the fifth argument
    if mask is not None and mask.ndim == 3:
        mask = mask.unsqueeze(1)  # [B, Lq, Lk]: one mask for every head, as ComfyUI's attention reads it
    # Fewer key / value heads than query heads (OmniGen2 on newer hosts passes enable_gqa).
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                           enable_gqa=bool(kwargs.get("enable_gqa", False)))
    b, h, length, d = out.shape
    return out.transpose(1, 2).reshape(b, length, h * d)


class ForeignOverride:
    """Another pack's attention override: counts its calls; chains to the previous override (or the host's
    attention) when `chain`, else computes attention itself."""

    def __init__(self, previous=None, chain=True):
        self.previous = previous
        self.chain = chain
        self.calls = 0

    def __deepcopy__(self, memo):  # ComfyUI 0.3.75 deep-copies model_options on clone: keep one counter
        return self

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        if not self.chain:
            return sdpa_attention(*args, **kwargs)
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)


def foreign_override(model, chain=True):
    """A clone of `model` with another pack's override in the slot; returns (model, override)."""
    m = model.clone()
    options = dict(m.model_options.get("transformer_options", {}))
    override = ForeignOverride(options.get(OVERRIDE), chain=chain)
    options[OVERRIDE] = override
    m.model_options = {**m.model_options, "transformer_options": options}
    return m, override


def tiny_lora(model, path, rank=2, seed=0, scale=0.5, match=("attn.qkv", "attention.qkv", "linear1", "context_embedder",
                                                                "attn.wq")):
    """Write a LoRA for the linear layers of `model` whose names contain one of `match` to `path`
    (.safetensors); returns the state dict."""
    import safetensors.torch

    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for name, module in model.get_model_object("diffusion_model").named_modules():
        weight = getattr(module, "weight", None)
        if weight is None or weight.ndim != 2 or not any(part in name for part in match):
            continue
        out_f, in_f = weight.shape
        key = f"diffusion_model.{name}"
        lora[f"{key}.lora_up.weight"] = torch.randn(out_f, rank, generator=generator) * scale
        lora[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=generator) * scale
    safetensors.torch.save_file(lora, str(path))
    return lora


def core_nodes():
    """ComfyUI's own nodes.py (LoraLoaderModelOnly, UNETLoader, ControlNetApplyAdvanced...). Under pytest the name
    `nodes` is this repository's tests/nodes folder, so the host's file is loaded under a name of its own."""
    module = sys.modules.get("nodes")
    if module is not None and hasattr(module, "KSampler"):
        return module
    module = sys.modules.get("ja_comfy_nodes")
    if module is None:
        from ja_host import host_path

        spec = importlib.util.spec_from_file_location("ja_comfy_nodes", host_path() / "nodes.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["ja_comfy_nodes"] = module
        spec.loader.exec_module(module)
    return module


class ForeignBlockPatch:
    """Another pack's `patches_replace["dit"]` block patch: counts its calls and runs the block it was given."""

    def __init__(self):
        self.calls = 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, args, extra):
        self.calls += 1
        return extra["original_block"](args)


def foreign_block_patch(model, kind="double", index=0):
    """A clone of `model` with another pack's patch on block (`kind`, `index`); returns (model, patch)."""
    m = model.clone()
    patch = ForeignBlockPatch()
    m.set_model_patch_replace(patch, "dit", f"{kind}_block", index)
    return m, patch
