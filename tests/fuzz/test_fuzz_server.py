"""Fuzz suite through the real server: generated values in API prompts (POST /prompt, bare NaN included).

Every prompt is refused when queued, fails with an error naming the node and the input, or runs and
samples a finite latent; the server keeps serving and holds no more tensors than before.
"""
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ja_fuzz import any_float, any_text, fuzz_settings
from ja_prompts import captured_prompt, regional_prompt
from ja_server import PromptFailed

pytestmark = pytest.mark.server

TARGETS = [
    ("apply", "base_ratio", any_float), ("apply", "start_percent", any_float), ("apply", "end_percent", any_float),
    ("region1", "strength", any_float), ("apply", "double_blocks", any_text), ("apply", "single_blocks", any_text),
]
_NAMED = re.compile(r"\[[^\]]+\] input '[a-z_]+': ")


def _outcome(server, prompt):
    """"refused", "failed" or "ran"; checks what each outcome must show."""
    status, body = server.queue_raw(prompt)
    if status != 200 or "prompt_id" not in body:
        assert status == 400 and isinstance(body, dict) and ("node_errors" in body or "error" in body), (status, body)
        return "refused"
    for node_id, errors in (body.get("node_errors") or {}).items():  # outputs refused at queue time, the rest runs
        if prompt[node_id]["class_type"].startswith("JointAttention"):
            details = " ".join(e.get("details", "") for e in errors["errors"])
            assert any(e["type"] != "custom_validation_failed" for e in errors["errors"]) or _NAMED.search(details), errors
    try:
        entry = server.wait(body["prompt_id"], timeout=120)
    except PromptFailed as err:
        messages = [m for m in err.entry["status"]["messages"] if m[0] == "execution_error"]
        assert messages, err
        detail = messages[0][1]
        assert _NAMED.search(detail.get("exception_message", "")), detail.get("exception_message", "")[:500]
        assert detail.get("exception_type", "").endswith("ValueError"), detail.get("exception_type")
        return "failed"
    stats = [s for out in entry["outputs"].values() for s in out.get("ja_latent", [])]
    assert stats and all(s["finite"] for s in stats), stats
    return "ran"


def _with_stats(prompt):
    prompt.pop("preview", None)
    prompt["stats"] = {"class_type": "JATestLatentStats", "inputs": {"samples": ["sampler", 0]}}
    return prompt


@pytest.fixture(scope="module")
def baseline(comfy_server):
    _outcome(comfy_server, _with_stats(regional_prompt(save=False, steps=2)))
    return comfy_server.get("/joint_attention/memory?objects=1")


@fuzz_settings(24)
@given(target=st.sampled_from(range(len(TARGETS))), data=st.data(), seed=st.integers(0, 10 ** 6))
def test_generated_values_in_api_prompts(comfy_server, baseline, target, data, seed):
    node, name, strategy = TARGETS[target]
    value = data.draw(strategy)
    prompt = _with_stats(regional_prompt(save=False, steps=2, seed=seed))
    prompt[node]["inputs"][name] = value
    _outcome(comfy_server, prompt)


@fuzz_settings(12)
@given(words=any_text, prefix=any_text)
def test_generated_words_and_prefixes(comfy_server, baseline, words, prefix):
    prompt = captured_prompt(seed=7)
    prompt["maps"]["inputs"].update(words=words, filename_prefix=prefix)
    _outcome(comfy_server, _with_stats(prompt))


@fuzz_settings(12)
@given(value=st.one_of(any_text, st.recursive(st.one_of(st.integers(), any_float, st.text(max_size=10)),
                                              lambda c: st.lists(c, max_size=3), max_leaves=8).map(json.dumps)))
def test_generated_canvas_values(comfy_server, baseline, value):
    prompt = _with_stats(regional_prompt(save=False, steps=2))
    prompt["clip"] = {"class_type": "JATestTinyCLIP", "inputs": {"seed": 0}}
    prompt["canvas_node"] = {"class_type": "JointAttentionRegionCanvas", "inputs": {
        "clip": ["clip", 0], "width": 96, "height": 64, "regions": value}}
    prompt["apply"]["inputs"]["regions"] = ["canvas_node", 0]
    _outcome(comfy_server, prompt)


def test_after_fuzzing_the_server_serves_and_holds_nothing_more(comfy_server, baseline):
    assert _outcome(comfy_server, _with_stats(regional_prompt(save=False, steps=2, seed=3))) == "ran"
    report = comfy_server.get("/joint_attention/memory?objects=1")
    assert report["by_lifetime"]["run"] == 0
    assert report["tensors"] <= baseline["tensors"]
    assert report["process_tensors"] <= baseline["process_tensors"] + 8
