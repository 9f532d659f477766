"""`make demo`: the pack's main job on an embedded default.

Boots the pinned ComfyUI headless on CPU with this pack and the test-only tiny-model
nodes, runs the regional workflow (two regions drawn as masks, CFG with a negative
prompt) next to the same prompt without regions, and writes everything to demo_output/.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "tests" / "support"))
from ja_prompts import regional_prompt  # noqa: E402
from ja_server import ComfyServer  # noqa: E402

OUT = ROOT / "demo_output"


def with_masks_saved(prompt: dict, prefix: str) -> dict:
    prompt = dict(prompt)
    for name in ("left", "right"):
        prompt[f"{name}_image"] = {"class_type": "MaskToImage", "inputs": {"mask": [name, 0]}}
        prompt[f"{name}_save"] = {"class_type": "SaveImage", "inputs": {"images": [f"{name}_image", 0],
                                                                         "filename_prefix": f"{prefix}_mask_{name}"}}
    return prompt


def plain(prompt: dict) -> dict:
    prompt = dict(prompt)
    sampler = dict(prompt["sampler"])
    sampler["inputs"] = {**sampler["inputs"], "model": ["model", 0]}
    prompt["sampler"] = sampler
    for key in ("region1", "region2", "apply"):
        prompt.pop(key)
    return prompt


def main() -> int:
    OUT.mkdir(exist_ok=True)
    jobs = {
        "regional FLUX (2 regions, cfg 3.5 + negative)": with_masks_saved(
            regional_prompt(family="flux", steps=8, cfg=3.5, width=256, height=192, split=128, prefix="demo/regional_flux"),
            "demo/regional_flux"),
        "same prompt without regions": plain(
            regional_prompt(family="flux", steps=8, cfg=3.5, width=256, height=192, split=128, prefix="demo/plain_flux")),
        "regional SD3 (2 regions)": regional_prompt(family="sd3", steps=8, cfg=3.5, width=256, height=192, split=128,
                                                    prefix="demo/regional_sd3"),
    }
    written = []
    with ComfyServer(output_dir=OUT) as server:
        for title, prompt in jobs.items():
            entry = server.wait(server.queue(prompt), timeout=600)
            files = [
                OUT / img.get("subfolder", "") / img["filename"]
                for out in entry["outputs"].values() for img in out.get("images", [])
            ]
            print(f"[demo] {title}:")
            for f in files:
                print(f"    {f.relative_to(ROOT)}")
            written += files
        report = server.get("/joint_attention/memory")
    print(f"[demo] wrote {len(written)} files to {OUT.relative_to(ROOT)}/ ; pack memory after the runs: "
          f"{report['tensors']} tensors, {report['bytes']} bytes, cache {report['cache']['bytes']} bytes")
    missing = [f for f in written if not f.is_file()]
    if missing or not written:
        print(f"[demo] missing outputs: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
