// One key table (js/region_keys.js) for the editor's key handling, its help and the docs' shortcut list: the docs'
// list is the table, and every key the table binds does what its row says (the editor's ? help is built from the same
// rows; tests/browser/test_canvas_brush.py reads it in the real frontend and compares it with the docs).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { chordOf, KEY_COMMANDS, keyCommand, KEYS, markdownRows } from "../../js/region_keys.js";

const docs = readFileSync(new URL("../../docs/canvas.md", import.meta.url), "utf8");
const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

function shortcutRows(markdown) {
  const section = markdown.split("## Shortcuts")[1].split("\n## ")[0];
  return section.split("\n").filter((line) => line.startsWith("| ") && !line.startsWith("| key |"));
}

test("docs/canvas.md's shortcut list is the key table", () => {
  assert.deepEqual(shortcutRows(docs), markdownRows());
  assert.ok(KEYS.length >= 15);
});

test("the README's canvas shortcut list is the key table", () => {
  assert.deepEqual(shortcutRows(readme.split("## Region Canvas")[1]), markdownRows());
});

// An editor that records what the commands ask of it.
function recordingEditor(fullWindowOpen = false) {
  const calls = [];
  const record = (name) => (...args) => calls.push([name, ...args]);
  return {
    calls, brush: 48, hardness: 1, snapToGrid: false, addToSelected: false,
    setTool: record("setTool"), setBrush: record("setBrush"), setHardness: record("setHardness"), setSnap: record("setSnap"),
    setAddToSelected: record("setAddToSelected"), clearSelected: record("clearSelected"), invertSelected: record("invertSelected"),
    undo: record("undo"), redo: record("redo"),
    fullWindow: { isOpen: fullWindowOpen, toggle: record("toggle"), zoomBy: record("zoomBy"), close: record("close") },
  };
}

function press(key, mods = {}, fullWindowOpen = false) {
  const editor = recordingEditor(fullWindowOpen);
  const e = { key, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods };
  const command = keyCommand(e, fullWindowOpen);
  if (command) KEY_COMMANDS[command[0]](editor, command[1]);
  return { command, calls: editor.calls, editor };
}

test("every bound key runs its command, and no key is bound twice", () => {
  const seen = new Map();
  for (const row of KEYS) {
    for (const [chord, [command]] of Object.entries(row.bind ?? {})) {
      assert.equal(typeof KEY_COMMANDS[command], "function", `${chord} -> ${command}`);
      assert.ok(!seen.has(chord), `${chord} is bound in "${seen.get(chord)}" and "${row.keys}"`);
      seen.set(chord, row.keys);
    }
  }
});

test("the keys do what their rows say", () => {
  assert.deepEqual(press("l").calls, [["setTool", "lasso"]]);
  assert.deepEqual(press("k").calls, [["setTool", "fill"]]);
  assert.deepEqual(press("V", { shiftKey: true }).calls, [["setTool", "select"]]); // Shift alone is not part of a chord
  assert.deepEqual(press("]").calls, [["setBrush", 56]]);
  assert.deepEqual(press("{", { shiftKey: true }).calls, [["setHardness", 0.75]]);
  assert.deepEqual(press("g").calls, [["setSnap", true]]);
  assert.deepEqual(press("Delete").calls, [["clearSelected"]]);
  assert.deepEqual(press("Backspace").calls, [["clearSelected"]]);
  assert.deepEqual(press("i").calls, [["invertSelected"]]);
});

test("undo is Ctrl+Z; redo is both Ctrl+Y and Ctrl+Shift+Z, with Ctrl or ⌘", () => {
  assert.deepEqual(press("z", { ctrlKey: true }).calls, [["undo"]]);
  assert.deepEqual(press("z", { metaKey: true }).calls, [["undo"]]);
  assert.deepEqual(press("y", { ctrlKey: true }).calls, [["redo"]]);
  assert.deepEqual(press("y", { metaKey: true }).calls, [["redo"]]);
  assert.deepEqual(press("Z", { ctrlKey: true, shiftKey: true }).calls, [["redo"]]);
  assert.deepEqual(press("Z", { metaKey: true, shiftKey: true }).calls, [["redo"]]);
  assert.equal(chordOf({ key: "Z", ctrlKey: true, shiftKey: true }), "ctrl+shift+z");
  // Keys the table does not bind are left to the page: Ctrl+B, Alt+V, a letter with no row.
  for (const [key, mods] of [["b", { ctrlKey: true }], ["v", { altKey: true }], ["q", {}]]) assert.equal(press(key, mods).command, null);
});

test("zoom, pan and Esc belong to the full-window editor only", () => {
  for (const key of ["-", "+", "0", "Escape", " "]) assert.equal(press(key).command, null, key);
  assert.deepEqual(press("+", {}, true).calls, [["zoomBy", 1]]);
  assert.deepEqual(press("0", {}, true).calls, [["zoomBy", 0]]);
  assert.deepEqual(press("Escape", {}, true).calls, [["close"]]);
  const space = press(" ", {}, true);
  assert.equal(space.editor.fullWindow.spaceDown, true);
});
