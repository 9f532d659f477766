"""ComfyUI's DynamicVRAM (comfy-aimdo) on an NVIDIA GPU: `main.py` swaps CoreModelPatcher for ModelPatcherDynamic.

That path exists only on hosts that have ModelPatcherDynamic (0.29) and only runs on CUDA (on the CPU the class
hands back a plain ModelPatcher), so these tests skip elsewhere: skipped, not faked. The real server is started on
the GPU twice, with DynamicVRAM as the host enables it by default and with `--disable-dynamic-vram`; the tiny test
models are built through CoreModelPatcher as the host's loaders do (tests/support/ja_tiny.py), and the pack's
features must give the same images and attention maps on both.
"""
import re
import subprocess

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.server,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

ENABLED = "DynamicVRAM support detected and enabled"


@pytest.fixture(scope="module")
def has_dynamic_patcher():
    import comfy.model_patcher

    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        pytest.skip("this ComfyUI has no ModelPatcherDynamic (DynamicVRAM arrived after 0.3.75)")


def _gpu_server(monkeypatch, tmp_path, *args):
    """The test server without --cpu (ja_server always passes it), models built on CUDA."""
    from ja_server import ComfyServer

    real_popen = subprocess.Popen

    def popen(cmd, *a, **kw):
        return real_popen([c for c in cmd if c != "--cpu"], *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setenv("JA_TEST_DEVICE", "cuda")
    return ComfyServer(output_dir=tmp_path, extra_args=args)


def _images(server, entry):
    from PIL import Image

    found = {}
    for out in entry["outputs"].values():
        for img in out.get("images", []):
            if img["type"] == "output":
                path = server.output_dir / img.get("subfolder", "") / img["filename"]
                key = f'{img.get("subfolder", "")}/{re.sub(r"_[0-9]{5}_", "_", img["filename"])}'  # without the counter
                found[key] = np.asarray(Image.open(path), np.int16)
    return found


def _run_all(server):
    from ja_prompts import captured_prompt, regional_prompt

    results = {}
    for name, prompt in (("regional_flux", regional_prompt(family="flux", prefix="dyn_regional_flux")),
                         ("regional_flux2", regional_prompt(family="flux2", prefix="dyn_regional_flux2")),
                         ("regional_sd3", regional_prompt(family="sd3", prefix="dyn_regional_sd3")),
                         ("maps", captured_prompt(prefix="dyn_maps/run"))):
        entry = server.wait(server.queue(prompt), timeout=300)
        results[name] = _images(server, entry)
        assert results[name], f"{name}: no image saved"
    return results


def test_features_match_with_and_without_dynamic_vram(has_dynamic_patcher, monkeypatch, tmp_path):
    with _gpu_server(monkeypatch, tmp_path / "dynamic") as server:
        log = server.log_text()
        if ENABLED not in log:
            pytest.skip("the host did not enable DynamicVRAM on this GPU: "
                        + next((line for line in log.splitlines() if "DynamicVRAM" in line), "no DynamicVRAM line"))
        dynamic = _run_all(server)
        # A second run on the same server reuses the loaded (dynamic) model and the pack's caches.
        again = _run_all(server)
    with _gpu_server(monkeypatch, tmp_path / "legacy", "--disable-dynamic-vram") as server:
        assert ENABLED not in server.log_text()
        legacy = _run_all(server)
    for name in dynamic:
        assert dynamic[name].keys() == legacy[name].keys() == again[name].keys()
        for key in dynamic[name]:
            # 8-bit images of the same computation: allow one step of rounding.
            assert np.abs(dynamic[name][key] - legacy[name][key]).max() <= 1, f"{name}/{key} differs from legacy"
            assert np.abs(dynamic[name][key] - again[name][key]).max() <= 1, f"{name}/{key} differs on a rerun"
