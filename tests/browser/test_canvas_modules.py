"""Issue 29: the Region Canvas frontend as ES modules.

The host lists every .js file under the pack's web directory at /extensions and the frontend imports each one as an
extension: the helper modules load there (their relative imports resolve under /extensions/<pack>/), do nothing on
import, and the extension is registered once, by region_canvas.js.
"""
import pytest

from ja_browser import frontend
from ja_host import ROOT

pytestmark = pytest.mark.browser


def test_every_module_the_host_lists_loads_and_the_extension_registers_once(comfy_server):
    ours = sorted(p.name for p in (ROOT / "js").glob("*.js"))
    assert "region_canvas.js" in ours and len(ours) > 2
    with frontend(comfy_server) as page:
        report = page.evaluate("""async (ours) => {
            const listed = await (await fetch('/extensions', {cache: 'no-store'})).json();
            const served = listed.filter(path => ours.includes(path.split('/').pop()));
            const failed = [];
            // The frontend imported each of them already: the same URL gives the module it loaded (or its error).
            for (const path of served) { try { await import(path); } catch (err) { failed.push(`${path}: ${err}`); } }
            return {served, failed, registered: app.extensions.filter(e => e.name === 'joint_attention.region_canvas').length};
        }""", ours)
    assert sorted(path.rsplit("/", 1)[1] for path in report["served"]) == ours, report["served"]
    assert all(path.startswith("/extensions/") for path in report["served"]), report["served"]
    assert report["failed"] == []
    assert report["registered"] == 1
    assert not page.errors, page.errors
