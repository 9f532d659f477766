"""Tiny LoRA files for the tiny models, written in the key formats real trainers write.

- "comfy": `diffusion_model.<layer>.lora_up.weight` / `.lora_down.weight` / `.alpha` (ComfyUI's own saves, musubi-tuner)
- "kohya": `lora_unet_<layer with underscores>.lora_up.weight` / ... / `.alpha` (kohya sd-scripts)
- "diffusers": `transformer.<diffusers layer>.lora_A.weight` / `.lora_B.weight` (peft: ai-toolkit, diffusers
  trainers; FLUX's fused qkv / linear1 are trained as separate to_q / to_k / to_v / proj_mlp layers)

Layers are those of the tiny model the pack gives a per-token role (no modulation, nothing outside the blocks), so the
pack takes every file; `extra` adds other layers (to check refusals).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch

FORMATS = ("comfy", "kohya", "diffusers")
_FOLDER: list = []


def loras_folder() -> Path:
    """A folder registered as ComfyUI's `loras` folder for this test process."""
    import folder_paths

    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="ja_loras_")))
        folder_paths.add_model_folder_path("loras", str(_FOLDER[0]))
    return _FOLDER[0]


def _role_layers(patcher):
    from joint_attention_pack.attention.token_weights import SHARED
    from joint_attention_pack.families import model_family

    family = model_family(patcher)
    dm = patcher.model.diffusion_model
    out = {}
    for name, module in dm.named_modules():
        if isinstance(module, torch.nn.Linear):
            role = family.adapter_role(name, dm)
            if role is not None and role != SHARED:
                out[name] = module
    return out


def _pair(gen, out_features, in_features, rank, scale):
    down = torch.randn(rank, in_features, generator=gen) * scale
    up = torch.randn(out_features, rank, generator=gen) * scale
    return up, down


def lora_tensors(patcher, fmt="comfy", seed=0, rank=2, scale=0.3, alpha=1.0, extra=()) -> dict:
    """A LoRA state dict for the tiny model's role layers (plus the layers `extra`) in format `fmt`."""
    import comfy.lora

    gen = torch.Generator().manual_seed(seed)
    dm = patcher.model.diffusion_model
    layers = dict(_role_layers(patcher))
    for name in extra:
        layers[name] = dm.get_submodule(name)
    sd = {}
    if fmt == "diffusers":
        key_map = comfy.lora.model_lora_keys_unet(patcher.model, {})
        wanted = {f"diffusion_model.{name}.weight" for name in layers}
        for key, target in sorted(key_map.items(), key=lambda kv: kv[0]):
            if not key.startswith("transformer."):
                continue
            name, offset = (target[0], target[1]) if isinstance(target, tuple) else (target, None)
            if name not in wanted:
                continue
            module = dm.get_submodule(name[len("diffusion_model."):-len(".weight")])
            out_features = offset[2] if offset is not None else module.out_features
            if offset is not None and offset[1] + offset[2] > module.out_features:
                continue  # the host's FLUX key map assumes mlp ratio 4; the tiny model's is smaller
            up, down = _pair(gen, out_features, module.in_features, rank, scale)
            sd[f"{key}.lora_A.weight"], sd[f"{key}.lora_B.weight"] = down, up
        if not sd:
            raise ValueError("this model has no diffusers key names in the host's key map")
        return sd
    for name, module in layers.items():
        up, down = _pair(gen, module.out_features, module.in_features, rank, scale)
        prefix = f"diffusion_model.{name}" if fmt == "comfy" else "lora_unet_" + re.sub(r"\.", "_", name)
        sd[f"{prefix}.lora_up.weight"], sd[f"{prefix}.lora_down.weight"] = up, down
        sd[f"{prefix}.alpha"] = torch.tensor(float(alpha) * rank)
    return sd


def write_lora(patcher, name: str, fmt="comfy", folder=None, **kw) -> str:
    """Write the LoRA into the loras folder (this process's, or `folder`: a test server's); returns its name as the
    LoRA pickers list it."""
    import safetensors.torch

    sd = lora_tensors(patcher, fmt, **kw)
    target = Path(folder) if folder is not None else loras_folder()
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(target / name))
    return name


def core_lora(patcher, name: str, strength: float):
    """The model with the LoRA loaded by core's LoRA loader (LoraLoaderModelOnly's path)."""
    import comfy.sd
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(loras_folder() / name), safe_load=True)
    return comfy.sd.load_lora_for_models(patcher, None, sd, strength, 0)[0]
