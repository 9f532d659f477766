"""The real-server harness itself: boot, test nodes loaded, a stock workflow saves a PNG, errors and interrupts."""
import time

import pytest

from ja_server import PromptFailed, PromptRejected

pytestmark = pytest.mark.server

TEST_NODES = {"JATestTinyModel", "JATestEncode", "JATestLatentToImage", "JATestTinyCLIP", "JATestTinyVAE",
              "JATestTinyCheckpoint"}


def stock_prompt(family="sd3", steps=2, width=40, height=24, prefix="ja_harness", save=True):
    """Tiny model -> test encoder (pos/neg) -> stock KSampler (cfg 2) -> latent-to-image -> SaveImage/PreviewImage."""
    image_out = {"class_type": "SaveImage", "inputs": {"images": ["image", 0], "filename_prefix": prefix}} if save \
        else {"class_type": "PreviewImage", "inputs": {"images": ["image", 0]}}
    return {
        "model": {"class_type": "JATestTinyModel", "inputs": {"family": family, "seed": 0}},
        "pos": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "a house", "tokens": 6}},
        "neg": {"class_type": "JATestEncode", "inputs": {"family": family, "text": "blurry", "tokens": 4}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["model", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "seed": 0, "steps": steps, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "image": {"class_type": "JATestLatentToImage", "inputs": {"samples": ["sampler", 0]}},
        "out": image_out,
    }


def test_server_lists_the_test_nodes_and_imports_them_cleanly(comfy_server):
    assert TEST_NODES <= set(comfy_server.object_info())
    # "Import times for custom nodes:" lists each custom node folder; failures carry "(IMPORT FAILED)".
    # (ComfyUI's own comfy_extras audio nodes fail without torchaudio; they are not custom nodes.)
    log = comfy_server.log_text().split("Import times for custom nodes:", 1)[1]
    imports = log.strip().split("\n\n", 1)[0].splitlines()
    assert any(line.endswith("comfy_nodes/ja_test_nodes") for line in imports), imports
    assert not [line for line in imports if "IMPORT FAILED" in line]


def test_stock_workflow_writes_a_png(comfy_server):
    entry = comfy_server.wait(comfy_server.queue(stock_prompt(prefix="ja_harness_png")), timeout=120)
    images = entry["outputs"]["out"]["images"]
    path = comfy_server.output_dir / images[0]["subfolder"] / images[0]["filename"]
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 40 and int.from_bytes(data[20:24], "big") == 24  # IHDR size


def test_invalid_prompt_is_rejected_with_node_errors(comfy_server):
    prompt = stock_prompt()
    prompt["sampler"]["inputs"]["sampler_name"] = "no_such_sampler"
    status, body = comfy_server.queue_raw(prompt)
    assert status == 400 and "sampler" in body["node_errors"]
    with pytest.raises(PromptRejected) as err:
        comfy_server.queue(prompt)
    assert err.value.status == 400 and "no_such_sampler" in str(err.value)


def test_runtime_error_is_raised_with_the_failing_node(comfy_server):
    prompt = {  # 4-channel and 16-channel latents cannot be blended: fails while executing, not at validation
        "a": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "b": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "blend": {"class_type": "LatentBlend", "inputs": {"samples1": ["a", 0], "samples2": ["b", 0], "blend_factor": 0.5}},
        "image": {"class_type": "JATestLatentToImage", "inputs": {"samples": ["blend", 0]}},
        "out": {"class_type": "PreviewImage", "inputs": {"images": ["image", 0]}},
    }
    with pytest.raises(PromptFailed) as err:
        comfy_server.wait(comfy_server.queue(prompt), timeout=60)
    assert "LatentBlend" in str(err.value)
    assert err.value.entry["status"]["status_str"] == "error"


def test_interrupt_stops_a_run_and_the_server_keeps_serving(comfy_server):
    comfy_server.interrupt()  # idle: harmless
    prompt_id = comfy_server.queue(stock_prompt(steps=5000, save=False))
    # An interrupt that lands before the run starts is cleared by the executor, so repeat it until the run ends.
    deadline = time.time() + 60
    while time.time() < deadline and prompt_id not in comfy_server.get(f"/history/{prompt_id}"):
        comfy_server.interrupt()
        time.sleep(0.2)
    with pytest.raises(PromptFailed) as err:
        comfy_server.wait(prompt_id, timeout=5)
    assert any(kind == "execution_interrupted" for kind, _ in err.value.entry["status"]["messages"])
    assert comfy_server.proc.poll() is None
    comfy_server.wait(comfy_server.queue(stock_prompt(save=False)), timeout=120)
