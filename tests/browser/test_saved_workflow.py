"""A workflow saved by the frontend before the V3 schema change opens and runs unchanged (issue 16).

tests/fixtures/saved_workflow_v1.json holds every one of the pack's 8 nodes with non-default widget values, as the
real frontend saved it while the nodes used the V1 dict schema (see tests/fixtures/make_saved_workflow.py). Users'
files look like it; a renamed input, a changed default or widget order, or a type change breaks them silently
(values land in the wrong widget) or loudly (missing nodes, broken links). Checked in the real frontend on each host.
"""
import json
from pathlib import Path

import pytest

from ja_browser import frontend
from ja_workflows import shrink, swap_loaders_api

pytestmark = pytest.mark.browser

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saved_workflow_v1.json"
PACK_NODES = {"JointAttentionRegion", "JointAttentionRegionalApply", "JointAttentionRegionCanvas", "JointAttentionTACA",
              "JointAttentionTextScale", "JointAttentionCapture", "JointAttentionMaps", "JointAttentionMemory"}


# Optional inputs added since the fixture was saved: the frontend gives an opened node their (unlinked) sockets, and
# saved values and links are untouched. Anything else new or missing is a change users' files would feel.
# Outputs added since, after the saved ones (so the saved links keep their slots): an opened node shows them unlinked.
ADDED_INPUTS = {"JointAttentionRegionCanvas": {"import_masks"}}
ADDED_OUTPUTS = {"JointAttentionRegionCanvas": {"width", "height"}}


def _sockets(node, added=frozenset(), added_outputs=frozenset()):
    return ([(i["name"], i["type"], i.get("link") is not None) for i in node.get("inputs", [])
             if not (i["name"] in added and i.get("link") is None)],
            [(o["name"], o["type"], sorted(o.get("links") or [])) for o in node.get("outputs", [])
             if not (o["name"] in added_outputs and not o.get("links"))])


def _pack_links(links, pack_ids):
    """Links into or out of a pack node: (id, origin, origin slot, target, target slot, type)."""
    return sorted(tuple(link[:6]) for link in links if link[1] in pack_ids or link[3] in pack_ids)


def test_the_fixture_holds_every_pack_node():
    saved = json.loads(FIXTURE.read_text())
    assert {n["type"] for n in saved["nodes"]} >= PACK_NODES


def test_a_workflow_saved_before_v3_opens_unchanged_and_runs(comfy_server):
    saved = json.loads(FIXTURE.read_text())
    with frontend(comfy_server) as page:
        report = page.evaluate("""async (wf) => {
            const missing = wf.nodes.map(n => n.type).filter(t => !LiteGraph.registered_node_types[t]);
            await app.loadGraphData(structuredClone(wf));
            const loaded = app.graph.serialize();
            const api = (await app.graphToPrompt()).output;
            return {missing, loaded, api, dialog: document.body.innerText.includes('Missing Node Types')};
        }""", saved)
        assert not [e for e in page.errors if "joint" in e.lower() or "ja-rc" in e], page.errors
    assert report["missing"] == [] and not report["dialog"]
    loaded = {n["id"]: n for n in report["loaded"]["nodes"]}
    assert sorted(loaded) == sorted(n["id"] for n in saved["nodes"])
    assert {i: n["type"] for i, n in loaded.items()} == {n["id"]: n["type"] for n in saved["nodes"]}
    # Only what the pack owns is compared: how the frontend serialises core's nodes changes between its versions
    # (1.49.6 saves PreviewImage's empty widget list as None), which says nothing about the pack.
    pack_ids = {n["id"] for n in saved["nodes"] if n["type"] in PACK_NODES}
    assert _pack_links(report["loaded"]["links"], pack_ids) == _pack_links(saved["links"], pack_ids)
    for node in saved["nodes"]:
        if node["type"] not in PACK_NODES:
            continue
        now = loaded[node["id"]]
        # Every widget value sits where it was saved (a reordered or renamed widget shifts them).
        assert now.get("widgets_values") == node.get("widgets_values"), node["type"]
        assert _sockets(now, ADDED_INPUTS.get(node["type"], frozenset()),
                        ADDED_OUTPUTS.get(node["type"], frozenset())) == _sockets(node), node["type"]

    # What the frontend queues from it: each pack node's inputs by name, with the saved values.
    api = report["api"]
    for node in saved["nodes"]:
        if node["type"] in PACK_NODES:
            inputs = api[str(node["id"])]["inputs"]
            widget_names = [i["name"] for i in node["inputs"] if i.get("widget")]
            for name in widget_names:
                assert name in inputs, (node["type"], name)
    assert api["21"]["inputs"]["image_attention"] == "open" and api["21"]["inputs"]["double_blocks"] == "0-9,12"
    assert api["41"]["inputs"]["token_range"] == "0-20" and api["45"]["inputs"]["free_caches"] is True

    prompt = shrink(swap_loaders_api(api, "flux"), size=128, steps=2, prefix="saved_v1_run")
    entry = comfy_server.wait(comfy_server.queue(prompt), timeout=300)
    outputs = entry["outputs"]
    assert any(img["filename"].startswith("saved_v1_run") for img in outputs["10"]["images"])
    assert len(outputs["44"]["images"]) == 2  # one heatmap per chosen word
    report_text = json.loads(outputs["45"]["text"][0])
    assert "tensors" in json.dumps(report_text)
    assert any(p.suffix == ".safetensors" for p in (comfy_server.output_dir / "saved_v1").glob("maps*"))
