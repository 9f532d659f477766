// Editing a region's shape with the Select tool: the selected region's box with eight handles; a drag inside the box
// (or on another region, which it selects) moves the shape, a drag on a handle resizes it (its cells stretched,
// nearest), Del clears it. A region is one mask: its shape is everything drawn in it.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class and functions.
import { bitsBounds, CELL, maskDims, regionAt, shown, TOKEN_GRID, transformBits } from "./region_state.js";

const HANDLE_PX = 9; // a handle's side, in CSS pixels
// Where each handle sits on the box, as fractions of its width and height.
const HANDLES = { nw: [0, 0], n: [0.5, 0], ne: [1, 0], e: [1, 0.5], se: [1, 1], s: [0.5, 1], sw: [0, 1], w: [0, 0.5] };
const CURSORS = { nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize", n: "ns-resize", s: "ns-resize",
  e: "ew-resize", w: "ew-resize", move: "move" };

export class ShapeEditing {
  // `editor`: the RegionCanvasEditor (its state, selection, snapping, render and touch).
  constructor(editor) {
    this.editor = editor;
    this.boxes = new WeakMap(); // region -> { rev, box }: its box in cells, found again only when it changed
  }

  box(r) {
    const cached = this.boxes.get(r);
    if (cached?.rev === (r.rev ?? 0)) return cached.box;
    const { mw, mh } = maskDims(this.editor.state.width, this.editor.state.height);
    const box = bitsBounds(r.bits, mw, mh);
    this.boxes.set(r, { rev: r.rev ?? 0, box });
    return box;
  }

  // The selected region's box in image pixels while the Select tool is on (where it is being dragged to), or null.
  handlesBox() {
    const { state, selected, tool, drag } = this.editor;
    const r = state.regions[selected];
    if (tool !== "select" || !r || !shown(r)) return null;
    const box = drag?.shape && drag.to ? drag.to : this.box(r);
    return box?.map((v) => v * CELL) ?? null;
  }

  // The handle under image point p ("nw", ..., "w"), "move" inside the box, or null; scale: CSS pixels per image pixel.
  hit(p, scale) {
    const box = this.handlesBox();
    if (!box) return null;
    const tolerance = HANDLE_PX / scale;
    for (const [name, [x, y]] of Object.entries(HANDLES)) {
      const [hx, hy] = handleAt(box, x, y);
      if (Math.abs(p[0] - hx) <= tolerance && Math.abs(p[1] - hy) <= tolerance) return name;
    }
    return p[0] >= box[0] && p[0] <= box[2] && p[1] >= box[1] && p[1] <= box[3] ? "move" : null;
  }

  cursor(p, scale) {
    return CURSORS[this.hit(p, scale)] ?? "default";
  }

  // A press with the Select tool: the drag of a handle or of the selected shape, else the region under the pointer is
  // selected and its shape dragged; null where there is nothing to drag.
  begin(p, scale) {
    const editor = this.editor;
    let shape = this.hit(p, scale);
    if (!shape) {
      const i = regionAt(editor.state, p[0], p[1]);
      if (i < 0) return null;
      editor.select(i);
      shape = "move";
    }
    const region = editor.state.regions[editor.selected];
    const from = this.box(region);
    return from ? { shape, region, from, bits: region.bits, start: p, changed: false } : null;
  }

  // The pointer moved during a drag: the shape follows, in whole cells (token squares while snapping). Until the
  // drag ends only `drag.to` changes: the painter shows the region's overlay moved there (no cell is rewritten).
  follow(drag, p) {
    const step = this.editor.snapToGrid ? TOKEN_GRID / CELL : 1;
    const delta = [0, 1].map((k) => Math.round((p[k] - drag.start[k]) / (CELL * step)) * step);
    drag.changed = delta[0] !== 0 || delta[1] !== 0;
    drag.to = moved(drag.from, drag.shape, delta);
    this.editor.render();
  }

  // The drag ended: the region's cells go where the shape was dragged.
  finish(drag) {
    if (!drag.changed) return false;
    const { mw, mh } = maskDims(this.editor.state.width, this.editor.state.height);
    drag.region.bits = transformBits(drag.bits, mw, mh, drag.from, drag.to);
    this.editor.touch(drag.region);
    return true;
  }
}

function handleAt([x0, y0, x1, y1], fx, fy) {
  return [x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)];
}

// The box after a drag of `delta` cells on `shape` ("move" or a handle); a box keeps at least one cell.
function moved([x0, y0, x1, y1], shape, [dx, dy]) {
  if (shape === "move") return [x0 + dx, y0 + dy, x1 + dx, y1 + dy];
  if (shape.includes("w")) x0 = Math.min(x1 - 1, x0 + dx);
  if (shape.includes("e")) x1 = Math.max(x0 + 1, x1 + dx);
  if (shape.includes("n")) y0 = Math.min(y1 - 1, y0 + dy);
  if (shape.includes("s")) y1 = Math.max(y0 + 1, y1 + dy);
  return [x0, y0, x1, y1];
}

// The box of the selected shape and its handles, drawn at a fixed size on screen (px: one CSS pixel in image pixels).
export function paintHandles(ctx, px, box) {
  const [x0, y0, x1, y1] = box;
  ctx.setLineDash([5 * px, 3 * px]);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = px;
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.setLineDash([]);
  const side = HANDLE_PX * px;
  for (const [fx, fy] of Object.values(HANDLES)) {
    const [hx, hy] = handleAt(box, fx, fy);
    ctx.fillStyle = "#fff";
    ctx.fillRect(hx - side / 2, hy - side / 2, side, side);
    ctx.strokeStyle = "#000";
    ctx.strokeRect(hx - side / 2, hy - side / 2, side, side);
  }
}
