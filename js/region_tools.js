// The drawing tools of the Region Canvas: what a press, a drag and a release on the canvas do with each tool (select,
// rectangle, brush, eraser, lasso, fill), and the two cell operations only these tools use: a lasso's polygon in cells
// and the bucket fill's connected area.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class and functions.
import { CELL, maskDims, paintRect, paintStroke, snap, TOKEN_GRID } from "./region_bits.js";
import { StrokeRaster } from "./region_raster.js";
import { addRegion, MAX_REGIONS, regionAt, shown } from "./region_state.js";

// The cells a closed polygon (image pixels) covers at least half, sampled `samples` x `samples` times per cell (even-odd
// rule: a lasso that crosses itself leaves the doubly enclosed part out, as a vector editor does). Set to `value` in
// `bits`; returns how many cells the polygon covers.
export function paintPolygon(bits, width, height, points, value = 1, samples = 4) {
  const { mw, mh } = maskDims(width, height);
  if (points.length < 3) return 0;
  const step = CELL / samples;
  const ys = points.map((p) => p[1]);
  const sy0 = Math.max(0, Math.floor(Math.min(...ys) / step));
  const sy1 = Math.min(mh * samples, Math.ceil(Math.max(...ys) / step));
  const counts = new Uint16Array(mw * mh);
  for (let sy = sy0; sy < sy1; sy++) {
    const y = (sy + 0.5) * step;
    const crossings = [];
    for (let i = 0; i < points.length; i++) {
      const [ax, ay] = points[i];
      const [bx, by] = points[(i + 1) % points.length];
      if ((ay <= y) !== (by <= y)) crossings.push(ax + ((y - ay) * (bx - ax)) / (by - ay));
    }
    crossings.sort((a, b) => a - b);
    const cy = Math.floor(sy / samples);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      const first = Math.max(0, Math.ceil(crossings[k] / step - 0.5));
      const last = Math.min(mw * samples - 1, Math.floor(crossings[k + 1] / step - 0.5));
      for (let sx = first; sx <= last; sx++) counts[cy * mw + Math.floor(sx / samples)]++;
    }
  }
  const half = (samples * samples) / 2;
  let covered = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] < half) continue;
    bits[i] = value;
    covered++;
  }
  return covered;
}

// Bucket fill: the cells connected (4-neighbours) to cell (cx, cy) that look alike, i.e. are covered by the same set of
// shown regions and are not yet in region `target`, are added to region `target`. Clicked in an empty spot, it fills
// the empty area around it up to other regions' shapes, the target's own outline and the canvas's edge. Returns the
// number of cells added (0 when the cell is already in the target).
export function fillArea(state, target, cx, cy) {
  const { mw, mh } = maskDims(state.width, state.height);
  if (cx < 0 || cy < 0 || cx >= mw || cy >= mh) return 0;
  const regions = state.regions.filter((r, i) => i === target || shown(r));
  const own = state.regions[target];
  if (own.bits[cy * mw + cx]) return 0;
  const key = (i) => {
    let k = 0;
    regions.forEach((r, j) => { if (r.bits[i]) k |= 1 << j; });
    return k >>> 0;
  };
  const start = cy * mw + cx;
  const wanted = key(start);
  const seen = new Uint8Array(mw * mh);
  const stack = [start];
  seen[start] = 1;
  let added = 0;
  while (stack.length) {
    const i = stack.pop();
    own.bits[i] = 1;
    added++;
    const x = i % mw;
    for (const j of [x > 0 ? i - 1 : -1, x < mw - 1 ? i + 1 : -1, i - mw, i + mw]) {
      if (j < 0 || j >= mw * mh || seen[j]) continue;
      seen[j] = 1;
      // The target is filled as the walk goes: the cells still waiting are compared as they were.
      if (!own.bits[j] && key(j) === wanted) stack.push(j);
    }
  }
  return added;
}

export class DrawingTools {
  // `editor`: the RegionCanvasEditor whose drawing the gestures change.
  constructor(editor) {
    this.editor = editor;
  }

  // A press on the canvas at image point p; returns the gesture to follow (the editor's `drag`) or null.
  begin(e, p) {
    const editor = this.editor;
    const tool = editor.tool;
    if (e.altKey && tool !== "select") {
      const i = regionAt(editor.state, p[0], p[1]);
      if (i >= 0) editor.select(i);
      return null;
    }
    if (tool === "select") return editor.shapes.begin(p, editor.layout().scale);
    if (tool === "fill") {
      this.#fill(e, p);
      return null;
    }
    const region = tool === "brush" ? this.#target(e, p) : tool === "eraser" ? editor.current() : null;
    if (tool === "brush" && !region) return null;
    const drag = { start: p, last: p, points: [p], x: e.clientX, y: e.clientY, moved: false, region };
    if (tool === "brush" || tool === "eraser") {
      const { mw, mh } = maskDims(editor.state.width, editor.state.height);
      if (!editor.snapToGrid) drag.raster = new StrokeRaster(mw, mh);
      this.#stroke(drag, [p, p], e);
    }
    return drag;
  }

  follow(e, drag, p) {
    if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) > 3) drag.moved = true;
    const tool = this.editor.tool;
    if (tool === "brush" || tool === "eraser") this.#stroke(drag, [drag.points[drag.points.length - 1], p], e);
    drag.last = p;
    if (tool !== "rect") drag.points.push(p);
  }

  // The gesture ends: returns whether the drawing changed (the editor commits it).
  end(e, drag) {
    const editor = this.editor;
    const { state } = editor;
    const tool = editor.tool;
    if (tool === "brush" || tool === "eraser") {
      if (drag.raster) for (const r of this.#strokeTargets(drag)) editor.touch(r, drag.raster.applyTo(r.bits, tool === "brush" ? 1 : 0));
      return true;
    }
    if (!drag.moved) {
      // A click without dragging selects the region under the pointer.
      const i = regionAt(state, drag.start[0], drag.start[1]);
      if (i >= 0) editor.select(i);
      return false;
    }
    const before = state.regions.length;
    const r = this.#target(e, drag.start);
    if (!r) return false;
    if (tool === "rect") {
      let [x0, y0] = drag.start;
      let [x1, y1] = editor.toImage(e);
      if (editor.snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
      paintRect(r.bits, state.width, state.height, x0, y0, x1, y1, 1);
    } else {
      paintPolygon(r.bits, state.width, state.height, drag.points, 1);
    }
    editor.touch(r);
    drag.structural = state.regions.length !== before;
    return true;
  }

  // The region a new shape goes into: the selected one when it is still empty, when the user asks to add to it (Shift
  // held, or "add to selected"), or when a brush stroke starts on it; otherwise a new region, which is selected. Null
  // when a new one is needed and the canvas is full.
  #target(e, p) {
    const editor = this.editor;
    const r = editor.current();
    const { mw } = maskDims(editor.state.width, editor.state.height);
    const onIt = editor.tool === "brush" && r.bits[Math.floor(p[1] / CELL) * mw + Math.floor(p[0] / CELL)];
    if (editor.addToSelected || e.shiftKey || onIt || !editor.shapes.box(r)) return r;
    if (editor.state.regions.length >= MAX_REGIONS) {
      editor.message = `A canvas holds at most ${MAX_REGIONS} regions: hold Shift to add to the selected one.`;
      editor.render();
      return null;
    }
    const region = addRegion(editor.state);
    editor.selected = editor.state.regions.length - 1;
    editor.regionList.render();
    return region;
  }

  #fill(e, p) {
    const editor = this.editor;
    const r = editor.current();
    const added = fillArea(editor.state, editor.selected, Math.floor(p[0] / CELL), Math.floor(p[1] / CELL));
    if (!added) {
      editor.message = `That spot is already in ${r.name}.`;
      editor.render();
      return;
    }
    editor.message = "";
    editor.touch(r);
    editor.commit();
  }

  #strokeTargets(drag) {
    const editor = this.editor;
    return editor.tool === "eraser" && editor.eraseAll ? editor.state.regions : [drag.region];
  }

  // A pen draws as wide as it is pressed (the brush size at full pressure); a mouse or finger, the brush size. Smooth
  // strokes go onto the stroke's raster (the cells follow at the end); while snapping, whole token squares at once.
  #stroke(drag, [a, b], e) {
    const editor = this.editor;
    const pressure = e.pointerType === "pen" && e.pressure > 0 ? Math.max(0.1, Math.min(1, e.pressure)) : 1;
    const radius = (editor.brush / 2) * pressure;
    if (drag.raster) {
      drag.raster.addSegment(a, b, radius, editor.hardness);
      return;
    }
    const { state } = editor;
    const value = editor.tool === "eraser" ? 0 : 1;
    const { mw, mh } = maskDims(state.width, state.height);
    const reach = radius + TOKEN_GRID;
    const cell = (v, hi, up) => Math.max(0, Math.min(hi, (up ? Math.ceil : Math.floor)(v / CELL)));
    const rect = [cell(Math.min(a[0], b[0]) - reach, mw, false), cell(Math.min(a[1], b[1]) - reach, mh, false),
      cell(Math.max(a[0], b[0]) + reach, mw, true), cell(Math.max(a[1], b[1]) + reach, mh, true)];
    for (const r of this.#strokeTargets(drag)) {
      paintStroke(r.bits, state.width, state.height, [a, b], radius, value, TOKEN_GRID);
      editor.touch(r, rect);
    }
  }
}
