"""The pack inside the real ComfyUI server: registration, regional workflows, memory over many prompts."""
import json
import time

import pytest

from ja_prompts import memory_prompt, regional_prompt

pytestmark = pytest.mark.server

PACK_NODES = {
    "JointAttentionRegion", "JointAttentionRegionalApply", "JointAttentionTACA", "JointAttentionTextScale",
    "JointAttentionMemory",
}


def test_nodes_are_listed_and_import_cleanly(comfy_server):
    info = comfy_server.object_info()
    assert PACK_NODES <= set(info)
    assert info["JointAttentionRegionalApply"]["category"] == "joint_attention/regional"
    log = comfy_server.log_text()
    assert "comfyui-joint-attention" in log  # the pack was loaded ...
    for line in log.splitlines():
        assert not ("IMPORT FAILED" in line and "joint-attention" in line), line


def memory(server, objects=False):
    return server.get("/joint_attention/memory" + ("?objects=1" if objects else ""))


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_regional_workflow_with_cfg_and_negative_runs(comfy_server, family):
    prompt_id = comfy_server.queue(regional_prompt(family=family, prefix=f"regional_{family}"))
    entry = comfy_server.wait(prompt_id, timeout=120)
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert images and images[0]["filename"].startswith(f"regional_{family}")


def test_fifty_changing_regional_prompts_leave_no_growth(comfy_server):
    # Warm-up: one prompt per region layout the loop uses, with a strength other than 1 as the loop has (a plan's
    # tensors, counted with its query groups, depend on both), then the pack must hold no more than for any of them.
    warm = []
    for split in (16, 32, 48, 64, 80):
        comfy_server.wait(comfy_server.queue(regional_prompt(split=split, strengths=(1.05, 1.0), save=False)), timeout=120)
        warm.append(memory(comfy_server)["tensors"])
    baseline = memory(comfy_server, objects=True)
    counts = []
    for i in range(50):
        split = 16 + 16 * (i % 5)
        prompt = regional_prompt(split=split, strengths=(1.0 + 0.05 * i, 1.0), seed=i, save=False)
        comfy_server.wait(comfy_server.queue(prompt), timeout=120)
        report = memory(comfy_server)
        counts.append(report["tensors"])
        assert report["by_lifetime"]["run"] == 0
        assert report["cache"]["bytes"] <= report["cache"]["budget_bytes"]
    final = memory(comfy_server, objects=True)
    assert max(counts) <= max(warm)
    assert final["tensors"] <= max(warm)
    assert final["process_tensors"] <= baseline["process_tensors"] + 8  # no growth beyond noise


def test_interrupted_run_leaves_no_per_run_tensors(comfy_server):
    prompt_id = comfy_server.queue(regional_prompt(steps=3000, save=False, seed=123))
    # Interrupt once it is running (the queue shows it executing), then check the state.
    deadline = time.time() + 60
    while time.time() < deadline:
        queue = comfy_server.get("/queue")
        if queue.get("queue_running"):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    comfy_server.interrupt()
    deadline = time.time() + 60
    while time.time() < deadline and comfy_server.get("/queue").get("queue_running"):
        time.sleep(0.1)
    history = comfy_server.get(f"/history/{prompt_id}")
    assert prompt_id in history
    status = history[prompt_id]["status"]
    assert status["status_str"] == "error" or any(m[0] == "execution_interrupted" for m in status["messages"])
    report = memory(comfy_server)
    assert report["by_lifetime"]["run"] == 0
    # and the server still serves
    comfy_server.wait(comfy_server.queue(regional_prompt(steps=2, save=False, seed=5)), timeout=120)


def test_memory_node_and_route_report(comfy_server):
    entry = comfy_server.wait(comfy_server.queue(memory_prompt(free_caches=True)), timeout=60)
    text = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    report = json.loads(text[0])
    assert report["cache"]["entries"] == 0
    assert {"tensors", "bytes", "by_owner", "by_device", "by_lifetime", "cache"} <= set(report)
    assert set(memory(comfy_server)) >= {"tensors", "by_owner", "cache"}


def test_free_route_drops_cached_tensors(comfy_server):
    comfy_server.wait(comfy_server.queue(regional_prompt(save=False, seed=77)), timeout=120)
    comfy_server.post("/free", {"unload_models": True, "free_memory": True})
    deadline = time.time() + 30
    while time.time() < deadline and memory(comfy_server)["by_lifetime"]["cache"] > 0:
        time.sleep(0.2)
    assert memory(comfy_server)["by_lifetime"]["cache"] == 0


def test_bad_input_gets_a_node_error_and_server_keeps_serving(comfy_server):
    prompt = regional_prompt(save=False)
    prompt["apply"]["inputs"]["double_blocks"] = "0-999"
    prompt_id = comfy_server.queue(prompt)
    with pytest.raises(Exception) as err:
        comfy_server.wait(prompt_id, timeout=60)
    assert "double_blocks" in str(err.value) and "valid numbers are" in str(err.value)
    comfy_server.wait(comfy_server.queue(regional_prompt(save=False, seed=9)), timeout=120)


def test_captured_maps_are_saved_and_twenty_captured_prompts_leave_no_growth(comfy_server):
    from ja_prompts import captured_prompt

    entry = comfy_server.wait(comfy_server.queue(captured_prompt(prefix="maps/run")), timeout=120)
    saved = [img for out in entry["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]
    folder = comfy_server.output_dir / "maps"
    assert len(saved) == 3  # base prompt, region 1, region 2 (no clip given: whole texts)
    assert all((folder / img["filename"]).is_file() for img in saved)
    assert len(list(folder.glob("*.safetensors"))) == 1
    baseline = memory(comfy_server, objects=True)
    for i in range(20):
        comfy_server.wait(comfy_server.queue(captured_prompt(seed=i + 1, split=16 + 16 * (i % 5))), timeout=120)
        report = memory(comfy_server)
        assert report["by_lifetime"]["run"] == 0
        assert report["tensors"] <= baseline["tensors"]
    final = memory(comfy_server, objects=True)
    assert final["process_tensors"] <= baseline["process_tensors"] + 8


def test_traversal_prefix_is_refused_and_nothing_is_written_outside(comfy_server):
    from ja_prompts import captured_prompt
    outside = comfy_server.output_dir.parent / "escaped"
    # Refused when queued (the node's validate_inputs), so no sampling run is wasted on it; ComfyUI still runs the
    # prompt's other outputs (the preview) and reports the maps node's error.
    status, body = comfy_server.queue_raw(captured_prompt(prefix="../escaped/maps", seed=99))
    errors = json.dumps(body.get("node_errors", {}).get("maps", {}))
    assert "filename_prefix" in errors and "output folder" in errors, body
    # ComfyUI files a failed check under each input the check takes: the three it reads, not all seven of the node.
    assert {e["extra_info"]["input_name"] for e in body["node_errors"]["maps"]["errors"]} <= {"filename_prefix", "words",
                                                                                             "prompt"}
    if status == 200:
        entry = comfy_server.wait(body["prompt_id"], timeout=120)
        assert "maps" not in entry["outputs"]
    assert not outside.exists()
    assert comfy_server.get("/system_stats")


# Last in the file: the failed prompt's patched model stays in ComfyUI's output cache until a later prompt replaces
# that node's output, which the growth checks above would count as the pack's.
@pytest.mark.parametrize("mode", ["attention", "forward"])
def test_a_model_whose_attention_bypasses_the_pack_fails_the_prompt_naming_the_node(comfy_server, mode):
    """Issue 22: regions on a model whose forward was swapped around ComfyUI's hooks: the prompt ends in an error that
    names the node and the causes (never a plain image), and the server keeps serving."""
    prompt = regional_prompt(save=False, seed=11)
    prompt["bypass"] = {"class_type": "JATestBypassAttention", "inputs": {"model": ["apply", 0], "mode": mode}}
    prompt["sampler"]["inputs"]["model"] = ["bypass", 0]
    prompt_id = comfy_server.queue(prompt)
    with pytest.raises(Exception) as err:
        comfy_server.wait(prompt_id, timeout=120)
    text = str(err.value)
    assert "[Apply Regional Attention] this node should act in this step" in text
    assert "replaced by another node or pack" in text
    comfy_server.wait(comfy_server.queue(regional_prompt(save=False, seed=12)), timeout=120)
