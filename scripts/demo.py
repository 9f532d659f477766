"""`make demo`: the pack's main job on an embedded default.

Boots the pinned ComfyUI headless on CPU with this pack and the test-only tiny-model
nodes, runs the flagship example workflow (example_workflows/regional_flux.json: two
regions drawn as masks) with only its model loaders swapped for tiny built-in models,
then the SD3, regions+TACA and Qwen-Image examples, and writes everything to demo_output/.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from ja_server import ComfyServer  # noqa: E402
from ja_workflows import tiny_prompt  # noqa: E402

OUT = ROOT / "demo_output"
EXAMPLES = {
    "regional_flux.json": "regional FLUX, the flagship example (2 regions)",
    "regional_sd3.json": "regional SD3 (2 regions, CFG 4.5 with a negative prompt)",
    "regional_taca_flux.json": "regions + TACA on FLUX",
    "regional_qwen_image.json": "regional Qwen-Image (2 regions, CFG 2.5; tiny Qwen-Image model with 60 blocks)",
    "attention_maps_flux.json": "attention maps of the regional FLUX run (one per word and region, next to the image)",
}


def with_masks_saved(prompt: dict, prefix: str) -> dict:
    """Also save the two region masks, to show next to the image."""
    prompt = dict(prompt)
    composites = [k for k, v in prompt.items() if v["class_type"] == "MaskComposite"]
    for i, key in enumerate(sorted(composites, key=int)):
        prompt[f"demo_mask_{i}"] = {"class_type": "MaskToImage", "inputs": {"mask": [key, 0]}}
        prompt[f"demo_mask_save_{i}"] = {"class_type": "SaveImage", "inputs": {"images": [f"demo_mask_{i}", 0],
                                                                                "filename_prefix": f"{prefix}_mask{i + 1}"}}
    return prompt


def main() -> int:
    OUT.mkdir(exist_ok=True)
    written = []
    with ComfyServer(output_dir=OUT) as server:
        info = server.object_info()
        for name, title in EXAMPLES.items():
            prefix = f"demo/{Path(name).stem}"
            prompt = with_masks_saved(tiny_prompt(name, info, size=256, steps=8, prefix=prefix), prefix)
            entry = server.wait(server.queue(prompt), timeout=600)
            files = [OUT / img.get("subfolder", "") / img["filename"]
                     for out in entry["outputs"].values() for img in out.get("images", []) if img.get("type") == "output"]
            print(f"[demo] {title} ({name}):")
            for f in sorted(files):
                print(f"    {f.relative_to(ROOT)}")
            written += files
        report = server.get("/joint_attention/memory")
    print(f"[demo] wrote {len(written)} files to {OUT.relative_to(ROOT)}/; pack memory after the runs: "
          f"{report['tensors']} tensors, {report['bytes']} bytes (cache {report['cache']['bytes']} bytes)")
    missing = [f for f in written if not f.is_file()]
    if missing or not written:
        print(f"[demo] missing outputs: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
