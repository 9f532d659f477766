// What outlives one Region Canvas editor. ComfyUI builds a new editor whenever it rebuilds a node: a graph undo clears
// the graph and configures it again with the same node ids, and so do loading a workflow and the page restoring its
// last one. The registration module holds the one NodeHandover of the page.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class and functions.

// The tool, brush size, snapping and overlay a new editor starts with: the last ones chosen in this browser.
const PREFS_KEY = "joint_attention.region_canvas.prefs";
// Only the last few removed editors matter (a graph undo rebuilds its nodes at once).
const LEFT_KEPT = 32;

export const TOOLS = ["select", "rect", "brush", "eraser", "lasso", "fill"];

// The UI choices an editor starts with, from remembered ones (anything unusable falls back to the default).
export function readChoices(prefs) {
  return {
    tool: TOOLS.includes(prefs.tool) ? prefs.tool : "rect",
    brush: Number.isInteger(prefs.brush) && prefs.brush >= 8 && prefs.brush <= 256 ? prefs.brush : 48,
    hardness: Number.isFinite(prefs.hardness) && prefs.hardness >= 0 && prefs.hardness <= 1 ? prefs.hardness : 1,
    // Off unless chosen: snapped strokes and boxes looked blocky (issue 32); G turns it on for token-exact shapes.
    snapToGrid: typeof prefs.snapToGrid === "boolean" ? prefs.snapToGrid : false,
    opacity: Number.isFinite(prefs.opacity) && prefs.opacity >= 0.1 && prefs.opacity <= 0.9 ? prefs.opacity : 0.45,
    eraseAll: prefs.eraseAll === true,
    addToSelected: prefs.addToSelected === true,
  };
}

function storedChoices() {
  try {
    const prefs = JSON.parse(localStorage.getItem(PREFS_KEY) ?? "{}");
    return prefs && typeof prefs === "object" ? prefs : {};
  } catch {
    return {};
  }
}

export class NodeHandover {
  constructor() {
    // UI choices per node id (tool, brush size, ...): they outlive the editor when ComfyUI rebuilds the node on a graph
    // undo, and are not part of the saved value.
    this.choices = new Map();
    // What a removed editor leaves for the editor built in its place (same node id): { history, slot }.
    // history: its undo history. The restored value is a snapshot of that history, so undo and redo go on from it; it
    // is taken only when it holds the restored value, so a node of another workflow with the same id never takes one
    // that is not about its drawing. The background is not handed over: loading another workflow (or the page
    // restoring the last one) also rebuilds nodes under the same ids, and a background from another workflow would be
    // shown as this one's; the node's properties and its next run (cached or not) bring the background back.
    // slot: the element it was mounted in. With Vue node rendering a graph undo rebuilds the node under the same id
    // and the node's component keeps its (now empty) widget container instead of mounting the new element.
    this.left = new Map();
  }

  // The choices a new editor of `node` starts with: the node's own, else the last ones chosen in this browser.
  choicesFor(node) {
    return this.choices.get(node.id) ?? storedChoices();
  }

  // The node's own choices, if it has any.
  nodeChoices(node) {
    return this.choices.get(node.id);
  }

  keepChoices(node, prefs) {
    this.choices.set(node.id, prefs);
    try {
      localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
    } catch {
      // Storage off or full: the choices last for this page only.
    }
  }

  // An editor of `node` is removed: what it leaves for the next one.
  leave(node, history, slot) {
    if (node.id === undefined) return;
    const key = String(node.id);
    this.left.delete(key); // re-inserted last: the oldest entries go first
    this.left.set(key, { history, slot });
    while (this.left.size > LEFT_KEPT) this.left.delete(this.left.keys().next().value);
  }

  // The undo history a removed editor of `node` left, when it holds `value` (moved to it); it is taken, the rest of
  // what was left stays for takeLeft().
  takeHistoryHolding(node, value) {
    if (node.id === undefined) return null;
    const left = this.left.get(String(node.id));
    if (!left?.history?.moveTo(value)) return null;
    const history = left.history;
    left.history = null;
    return history;
  }

  // Everything a removed editor of `node` left ({ history, slot } or undefined), taken once.
  takeLeft(node) {
    const key = String(node.id);
    const left = this.left.get(key);
    this.left.delete(key);
    return left;
  }
}
