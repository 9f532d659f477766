// The Region Canvas frontend as modules: ComfyUI lists every .js file under the pack's web directory (js/) and
// imports each as an extension, so every module but the registration one must do nothing on import, and what
// outlives an editor (NodeHandover) keeps its promises.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { History } from "../../js/region_state.js";
import { NodeHandover, readChoices } from "../../js/region_handover.js";

const JS = new URL("../../js/", import.meta.url);
const REGISTRATION = "region_canvas.js";
const modules = readdirSync(JS).filter((name) => name.endsWith(".js"));

test("every module but the registration imports without a page (nothing runs on import)", async () => {
  // Node has no document, window or ComfyUI: a module touching any of them while it is imported throws here.
  assert.ok(modules.includes(REGISTRATION) && modules.length > 2, modules);
  for (const name of modules.filter((n) => n !== REGISTRATION)) {
    const module = await import(new URL(name, JS));
    assert.ok(Object.keys(module).length > 0, `${name} exports nothing`);
  }
});

test("only the registration module imports ComfyUI's scripts or registers an extension", () => {
  for (const name of modules) {
    const source = readFileSync(new URL(name, JS), "utf8");
    const reachesComfy = /registerExtension|scripts\/(app|api)\.js/.test(source);
    assert.equal(reachesComfy, name === REGISTRATION, name);
  }
});

test("relative imports name files of js/ (they resolve under /extensions/<pack>/ as they do here)", () => {
  for (const name of modules) {
    const source = readFileSync(new URL(name, JS), "utf8");
    for (const [, path] of source.matchAll(/from\s+"(\.[^"]+)"/g)) {
      if (path.startsWith("../../scripts/")) continue; // the frontend's own modules, beside /extensions/
      assert.ok(path.startsWith("./") && modules.includes(path.slice(2)), `${name} imports ${path}`);
    }
  }
});

test("a rebuilt node's editor takes the history its removed editor left only when it holds the restored value", () => {
  const handover = new NodeHandover();
  const node = { id: 7 };
  const history = new History();
  for (const snapshot of ["a", "b", "c"]) history.record(snapshot);
  const slot = { name: "the Vue widget container" };
  handover.leave(node, history, slot);
  assert.equal(handover.takeHistoryHolding({ id: 8 }, "b"), null); // another node
  assert.equal(handover.takeHistoryHolding(node, "z"), null); // a value it never held (another workflow)
  assert.equal(handover.takeHistoryHolding(node, "b"), history);
  assert.equal(history.undo(), "a"); // moved to "b": undo goes on from there
  assert.equal(handover.takeHistoryHolding(node, "b"), null); // taken once
  assert.deepEqual(handover.takeLeft(node), { history: null, slot }); // the container is still there for it
  assert.equal(handover.takeLeft(node), undefined);
});

test("removed editors are remembered by node id, the last 32 of them; a node without an id leaves nothing", () => {
  const handover = new NodeHandover();
  handover.leave({ id: undefined }, new History(), null);
  assert.equal(handover.left.size, 0);
  for (let id = 0; id < 40; id++) handover.leave({ id }, new History(), null);
  assert.equal(handover.left.size, 32);
  assert.equal(handover.takeLeft({ id: 7 }), undefined);
  assert.ok(handover.takeLeft({ id: 8 }));
  handover.leave({ id: 9 }, new History(), null); // left again: the newest now
  for (let id = 40; id < 71; id++) handover.leave({ id }, new History(), null);
  assert.ok(handover.takeLeft({ id: 9 }));
  assert.equal(handover.takeLeft({ id: 10 }), undefined);
});

test("a node's own choices outlive its editor; unusable remembered choices fall back to the defaults", () => {
  const handover = new NodeHandover();
  const node = { id: 3 };
  assert.equal(handover.nodeChoices(node), undefined);
  const chosen = { tool: "lasso", brush: 64, hardness: 0.25, snapToGrid: true, opacity: 0.6, eraseAll: true, addToSelected: true };
  handover.keepChoices(node, chosen); // without localStorage (node) they last for the page
  assert.deepEqual(handover.choicesFor(node), chosen);
  assert.deepEqual(readChoices(handover.nodeChoices(node)), chosen);
  // Snapping is off unless chosen (issue 32: snapped strokes looked blocky); the brush is hard unless chosen.
  assert.deepEqual(readChoices({ tool: "pen", brush: 4, hardness: 2, snapToGrid: "yes", opacity: 1, eraseAll: 1, addToSelected: "no" }),
    { tool: "rect", brush: 48, hardness: 1, snapToGrid: false, opacity: 0.45, eraseAll: false, addToSelected: false });
});
