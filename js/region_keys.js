// The Region Canvas's keyboard shortcuts: ONE table that the editor's key handling (keyCommand + KEY_COMMANDS), its
// help (the ? button) and the shortcut list of docs/canvas.md all come from; tests/js/region_keys.test.mjs holds the
// three together. A row without `bind` is a mouse gesture, listed for completeness.
// `bind`: chord -> [command, argument]. A chord is the key as KeyboardEvent.key reports it, lower-cased, after "ctrl+"
// when Ctrl or ⌘ is held and "shift+" when Shift is held with them; Shift alone is not part of a chord (it is held
// while drawing to add to the selected region; "{" and "}" are the keys Shift+[ and Shift+] type). Alt is never a
// shortcut (Alt+click selects). `fullWindow`: only while the full-window editor is open.
// Import-safe and pure: no DOM.

export const KEYS = [
  { keys: "V / R / B / E / L / K", does: "select / rectangle / brush / eraser / lasso / fill (bucket) tool",
    bind: { v: ["tool", "select"], r: ["tool", "rect"], b: ["tool", "brush"], e: ["tool", "eraser"], l: ["tool", "lasso"],
      k: ["tool", "fill"] } },
  { keys: "Alt+click", does: "select a region with any tool" },
  { keys: "drag a shape / a handle (Select tool)", does: "move / resize the selected region's shape" },
  { keys: "drag (Lasso tool)", does: "draw a free shape; it closes itself when the button is released" },
  { keys: "click (Fill tool)", does: "fill the connected empty (or alike) area under the pointer into the selected region" },
  { keys: "Shift (held while drawing), A", does: "add the new shape to the selected region / toggle “add”",
    bind: { a: ["toggleAdd"] } },
  { keys: "[ / ]", does: "smaller / larger brush", bind: { "[": ["brushBy", -8], "]": ["brushBy", 8] } },
  { keys: "{ / } (Shift+[ / Shift+])", does: "softer / harder brush (hardness in steps of 25 %)",
    bind: { "{": ["hardnessBy", -0.25], "}": ["hardnessBy", 0.25] } },
  { keys: "G", does: "snap rectangles and strokes to the 16-pixel token grid (off until turned on)", bind: { g: ["toggleSnap"] } },
  { keys: "Del, Backspace", does: "delete the selected region's shape (never the node)",
    bind: { delete: ["clearSelected"], backspace: ["clearSelected"] } },
  { keys: "I", does: "invert the selected region", bind: { i: ["invert"] } },
  { keys: "double-click a name", does: "rename the region" },
  { keys: "Ctrl+Z (⌘Z)", does: "undo the drawing (never the graph)", bind: { "ctrl+z": ["undo"] } },
  { keys: "Ctrl+Y, Ctrl+Shift+Z (⌘Y, ⌘⇧Z)", does: "redo the drawing (both work on every system; never the graph)",
    bind: { "ctrl+y": ["redo"], "ctrl+shift+z": ["redo"] } },
  { keys: "Ctrl+Enter (in a prompt box)", does: "queue the prompt" },
  { keys: "F, ⤢ or double-click", does: "full-window editor", bind: { f: ["fullWindow"] } },
  { keys: "- / + / 0 (full-window editor)", does: "zoom out / in around the centre / fit", fullWindow: true,
    bind: { "-": ["zoomBy", -1], "+": ["zoomBy", 1], "=": ["zoomBy", 1], 0: ["zoomBy", 0] } },
  { keys: "Space+drag, middle button (full-window editor)", does: "pan", fullWindow: true, bind: { " ": ["holdSpace"] } },
  { keys: "Esc", does: "back to the node from the full-window editor", fullWindow: true, bind: { escape: ["closeFullWindow"] } },
];

// What each command does to the editor (a RegionCanvasEditor).
export const KEY_COMMANDS = {
  tool: (editor, tool) => editor.setTool(tool),
  toggleAdd: (editor) => editor.setAddToSelected(!editor.addToSelected),
  brushBy: (editor, step) => editor.setBrush(editor.brush + step),
  hardnessBy: (editor, step) => editor.setHardness(editor.hardness + step),
  toggleSnap: (editor) => editor.setSnap(!editor.snapToGrid),
  clearSelected: (editor) => editor.clearSelected(),
  invert: (editor) => editor.invertSelected(),
  undo: (editor) => editor.undo(),
  redo: (editor) => editor.redo(),
  fullWindow: (editor) => editor.fullWindow.toggle(),
  zoomBy: (editor, step) => editor.fullWindow.zoomBy(step),
  holdSpace: (editor) => { editor.fullWindow.spaceDown = true; },
  closeFullWindow: (editor) => editor.fullWindow.close(),
};

export function chordOf(e) {
  const mod = e.ctrlKey || e.metaKey;
  return `${mod ? "ctrl+" : ""}${mod && e.shiftKey ? "shift+" : ""}${String(e.key).toLowerCase()}`;
}

// The [command, argument] a key event asks for, or null (the key is not the editor's).
export function keyCommand(e, fullWindowOpen) {
  if (e.altKey) return null;
  const chord = chordOf(e);
  for (const row of KEYS) {
    if (!row.bind || (row.fullWindow && !fullWindowOpen)) continue;
    if (Object.hasOwn(row.bind, chord)) return row.bind[chord];
  }
  return null;
}

// The shortcut list as docs/canvas.md writes it: one "| keys | does |" line per row.
export function markdownRows() {
  return KEYS.map((row) => `| ${row.keys} | ${row.does} |`);
}
