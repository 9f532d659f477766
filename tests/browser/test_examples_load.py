"""Every example workflow opens in the real frontend: no missing nodes, every widget value taken as saved."""
import json

import pytest

from ja_browser import frontend
from ja_workflows import EXAMPLES

pytestmark = pytest.mark.browser


def test_every_example_workflow_loads_in_the_frontend(comfy_server):
    names = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert len(names) >= 8
    with frontend(comfy_server) as page:
        for name in names:
            workflow = json.loads((EXAMPLES / name).read_text())
            report = page.evaluate("""async (wf) => {
                const missing = wf.nodes.map(n => n.type).filter(t => !LiteGraph.registered_node_types[t]);
                await app.loadGraphData(wf);
                const loaded = app.graph.serialize();
                const byId = Object.fromEntries(loaded.nodes.map(n => [n.id, n]));
                // JSON-valued widgets (the region canvas) are compared as data, not as formatting.
                const norm = (values) => JSON.stringify((values ?? []).map(v => {
                    if (typeof v === 'string' && v.startsWith('{')) { try { return JSON.parse(v); } catch { return v; } }
                    return v; }));
                const widgetMismatch = wf.nodes.filter(n => norm(byId[n.id]?.widgets_values) !== norm(n.widgets_values))
                    .map(n => [n.type, n.widgets_values, byId[n.id]?.widgets_values]);
                return {missing, count: loaded.nodes.length, widgetMismatch,
                        dialog: document.body.innerText.includes('Missing Node Types')};
            }""", workflow)
            assert report["missing"] == [], (name, report["missing"])
            assert report["count"] == len(workflow["nodes"]), name
            assert not report["dialog"], name
            assert report["widgetMismatch"] == [], (name, report["widgetMismatch"])
        assert not [e for e in page.errors if "joint" in e.lower() or "ja-rc" in e], page.errors
