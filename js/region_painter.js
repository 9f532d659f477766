// What the Region Canvas draws, in image pixels: the background letterboxed, each region's mask as a tinted overlay
// with its outline, the token grid while snapping, the rectangle being dragged and the brush cursor.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { paintHandles } from "./region_shapes.js";
import { previewPixels } from "./region_raster.js";
import { CELL, featherMask, maskDims, shown, snap, TOKEN_GRID } from "./region_state.js";

// What a region's overlay is drawn with: the overlay slider times the region's own opacity (view only).
function overlayAlpha(r, opacity) {
  return opacity * (r.opacity ?? 1);
}

export class RegionPainter {
  constructor() {
    this.overlays = new WeakMap(); // region -> { key, canvas }: its overlay, redrawn only where the region changed
    this.outlines = new WeakMap(); // region -> { key, path }: its border, found again only when the region changed
    this.ids = new WeakMap(); // region or background -> a number of its own (a restored drawing has new regions)
    this.nextId = 1;
    this.base = null; // the picture under the regions (background, token grid, border), and its key
    this.baseKey = "";
    this.layer = null; // the frame without the pointer's marks (brush ring, dragged box, handles), and its key
    this.layerKey = "";
    this.stroke = null; // the smooth preview of the stroke being drawn: { raster, canvas }
  }

  // `scene`: { state, background, opacity, selected, snapToGrid, tool, drag, hover, brush, shapes } (the editor's fields);
  // scale: CSS pixels per image pixel. Two layers are kept while nothing in them changes: the picture under the
  // regions, and the frame without the pointer's marks and without the region a gesture is changing (drawn on top of
  // the others until the gesture ends, without its outline). A pointer move that only moves the brush ring costs one
  // copy; a brush stroke, one copy and the stroked region's overlay.
  paint(ctx, scale, scene) {
    const baseKey = this.#baseKey(ctx, scene);
    if (baseKey !== this.baseKey) {
      this.base = this.#paintBase(ctx, scale, scene);
      this.baseKey = baseKey;
    }
    const active = scene.drag?.region ?? null;
    const key = `${baseKey}|${this.#layerKey(scene, active)}`;
    if (key !== this.layerKey) {
      this.#paintLayer(ctx, scale, scene, active);
      this.layerKey = key;
    }
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.layer, 0, 0);
    ctx.restore();
    if (active && shown(active)) this.#paintOverlay(ctx, active, scene);
    if (scene.drag?.raster) this.#paintStroke(ctx, scene);
    const px = 1 / scale;
    paintGesture(ctx, px, scene);
    const box = scene.shapes.handlesBox();
    if (box) paintHandles(ctx, px, box);
  }

  #id(object) {
    if (!object) return 0;
    if (!this.ids.has(object)) this.ids.set(object, this.nextId++);
    return this.ids.get(object);
  }

  #baseKey(ctx, { state, background, snapToGrid }) {
    const t = ctx.getTransform();
    return [ctx.canvas.width, ctx.canvas.height, t.a, t.d, t.e, t.f, state.width, state.height, snapToGrid,
      this.#id(background)].join("|");
  }

  #layerKey({ state, opacity, selected }, active) {
    const regions = state.regions.map((r) => (r === active ? `active ${this.#id(r)}`
      : `${this.#id(r)}.${r.rev ?? 0}${r.color}${r.feather ?? 0}${shown(r) ? "" : "h"}${r.opacity ?? 1}`));
    return [regions.join(","), selected, opacity].join("|");
  }

  // A canvas of the frame's size with the frame's transform, cleared to the colour around the picture.
  #surface(canvas, ctx) {
    const surface = canvas ?? document.createElement("canvas");
    if (surface.width !== ctx.canvas.width) surface.width = ctx.canvas.width;
    if (surface.height !== ctx.canvas.height) surface.height = ctx.canvas.height;
    const sctx = surface.getContext("2d");
    sctx.setTransform(1, 0, 0, 1, 0, 0);
    sctx.fillStyle = "#161616";
    sctx.fillRect(0, 0, surface.width, surface.height);
    return [surface, sctx];
  }

  #paintBase(ctx, scale, scene) {
    const [base, bctx] = this.#surface(this.base, ctx);
    bctx.setTransform(ctx.getTransform());
    const { width, height } = scene.state;
    const px = 1 / scale; // one CSS pixel in image pixels
    bctx.fillStyle = "#3a3a3a";
    bctx.fillRect(0, 0, width, height);
    if (scene.background) paintBackground(bctx, scene.background, width, height);
    // The token grid only where its lines are far enough apart to read (no moiré), and only while snapping.
    if (scene.snapToGrid && TOKEN_GRID * scale >= 8) paintGrid(bctx, px, width, height);
    bctx.strokeStyle = "rgba(255,255,255,0.25)";
    bctx.lineWidth = px;
    bctx.strokeRect(0, 0, width, height);
    return base;
  }

  #paintLayer(ctx, scale, scene, active) {
    const [layer, lctx] = this.#surface(this.layer, ctx);
    this.layer = layer;
    lctx.drawImage(this.base, 0, 0);
    lctx.setTransform(ctx.getTransform());
    this.#paintRegions(lctx, 1 / scale, scene, active);
  }

  // One region's overlay (a dragged shape's where it is being dragged to).
  #paintOverlay(ctx, r, { state, opacity, drag }) {
    const { mw, mh } = maskDims(state.width, state.height);
    const overlay = this.#overlay(r, mw, mh);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = overlayAlpha(r, opacity);
    if (r === drag?.region && drag.to) drawMoved(ctx, overlay, drag.from, drag.to);
    else ctx.drawImage(overlay, 0, 0, mw * CELL, mh * CELL);
    ctx.globalAlpha = 1;
  }

  // Every region but `skip` (the one a gesture is changing: its outline waits for the end of the gesture).
  #paintRegions(ctx, px, { state, opacity, selected }, skip) {
    const { mw, mh } = maskDims(state.width, state.height);
    ctx.imageSmoothingEnabled = false;
    for (const r of state.regions) {
      if (!shown(r) || r === skip) continue;
      ctx.globalAlpha = overlayAlpha(r, opacity);
      ctx.drawImage(this.#overlay(r, mw, mh), 0, 0, mw * CELL, mh * CELL);
    }
    ctx.globalAlpha = 1;
    // Outlines in each region's colour over a dark edge: a region stays apart from image content of the same colour.
    state.regions.forEach((r, i) => {
      if (!shown(r) || r === skip) return;
      const path = this.#outline(r, mw, mh);
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 3 * px;
      ctx.setLineDash([]);
      ctx.stroke(path);
      ctx.strokeStyle = r.color;
      ctx.lineWidth = 1.5 * px;
      ctx.stroke(path);
      if (i === selected) {
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([4 * px, 4 * px]);
        ctx.stroke(path);
        ctx.setLineDash([]);
      }
    });
  }

  // The stroke being drawn, smooth (anti-aliased, soft with a soft brush) at its raster's resolution: in the region's
  // colour for the brush, dark for the eraser (the cells it takes follow when the stroke ends). Only the samples the
  // last pointer moves touched are written again.
  #paintStroke(ctx, { drag, tool, opacity }) {
    const raster = drag.raster;
    if (this.stroke?.raster !== raster) {
      const canvas = this.stroke?.canvas ?? document.createElement("canvas");
      canvas.width = raster.sw; // also clears it
      canvas.height = raster.sh;
      this.stroke = { raster, canvas };
    }
    const { canvas } = this.stroke;
    const rect = raster.takeDirty();
    if (rect && rect[2] > rect[0] && rect[3] > rect[1]) {
      const rgb = tool === "eraser" ? [20, 20, 20] : [1, 3, 5].map((j) => parseInt(drag.region.color.slice(j, j + 2), 16));
      const image = new ImageData(previewPixels(raster, rect, rgb), rect[2] - rect[0], rect[3] - rect[1]);
      canvas.getContext("2d").putImageData(image, rect[0], rect[1]);
    }
    ctx.imageSmoothingEnabled = true;
    ctx.globalAlpha = tool === "eraser" ? 0.7 : overlayAlpha(drag.region, opacity);
    ctx.drawImage(canvas, 0, 0, raster.mw * CELL, raster.mh * CELL);
    ctx.globalAlpha = 1;
  }

  #outline(r, mw, mh) {
    const key = `${r.rev ?? 0}|${mw}x${mh}`;
    const cached = this.outlines.get(r);
    if (cached?.key === key) return cached.path;
    const path = outlinePath(r.bits, mw, mh);
    this.outlines.set(r, { key, path });
    return path;
  }

  // One small canvas per region at mask resolution (1 px per cell); where only part of the region changed (a brush
  // stroke: the editor's touch(r, rect) says where), only that part is written again.
  #overlay(r, mw, mh) {
    const key = `${r.color}|${r.feather ?? 0}|${mw}x${mh}`;
    const cached = this.overlays.get(r);
    const rev = r.rev ?? 0;
    if (cached?.key === key && cached.rev === rev) return cached.canvas;
    const canvas = cached?.canvas ?? document.createElement("canvas");
    const partial = cached?.key === key && r.dirty && r.dirty !== "all" && !r.feather;
    if (!partial) {
      canvas.width = mw;
      canvas.height = mh;
    }
    const [x0, y0, x1, y1] = partial ? r.dirty : [0, 0, mw, mh];
    r.dirty = undefined;
    this.overlays.set(r, { key, rev, canvas });
    if (x1 <= x0 || y1 <= y0) return canvas; // a stroke wholly off the canvas
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(x1 - x0, y1 - y0);
    const soft = r.feather ? featherMask(r.bits, mw, mh, r.feather) : r.bits;
    const [cr, cg, cb] = [1, 3, 5].map((j) => parseInt(r.color.slice(j, j + 2), 16));
    const w = x1 - x0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const a = soft[y * mw + x];
        if (!a) continue;
        const i = 4 * ((y - y0) * w + (x - x0));
        image.data[i] = cr;
        image.data[i + 1] = cg;
        image.data[i + 2] = cb;
        image.data[i + 3] = Math.round(255 * a);
      }
    }
    ctx.putImageData(image, x0, y0);
    return canvas;
  }
}

// The cells of box `from` of an overlay drawn onto box `to` (cells, x1 and y1 exclusive), in image pixels.
function drawMoved(ctx, overlay, [fx0, fy0, fx1, fy1], [tx0, ty0, tx1, ty1]) {
  ctx.drawImage(overlay, fx0, fy0, fx1 - fx0, fy1 - fy0, tx0 * CELL, ty0 * CELL, (tx1 - tx0) * CELL, (ty1 - ty0) * CELL);
}

// The border of a region's cells as one path, neighbouring edges joined into one line.
function outlinePath(bits, mw, mh) {
  const path = new Path2D();
  const at = (x, y) => (x >= 0 && y >= 0 && x < mw && y < mh ? bits[y * mw + x] : 0);
  for (let y = 0; y <= mh; y++) {
    let start = -1;
    for (let x = 0; x <= mw; x++) {
      const edge = x < mw && at(x, y) !== at(x, y - 1);
      if (edge && start < 0) start = x;
      if (!edge && start >= 0) {
        path.moveTo(start * CELL, y * CELL);
        path.lineTo(x * CELL, y * CELL);
        start = -1;
      }
    }
  }
  for (let x = 0; x <= mw; x++) {
    let start = -1;
    for (let y = 0; y <= mh; y++) {
      const edge = y < mh && at(x, y) !== at(x - 1, y);
      if (edge && start < 0) start = y;
      if (!edge && start >= 0) {
        path.moveTo(x * CELL, start * CELL);
        path.lineTo(x * CELL, y * CELL);
        start = -1;
      }
    }
  }
  return path;
}

// Letterboxed: the image keeps its own shape inside the canvas.
function paintBackground(ctx, image, width, height) {
  const { naturalWidth: iw, naturalHeight: ih } = image;
  const s = Math.min(width / iw, height / ih);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(image, (width - iw * s) / 2, (height - ih * s) / 2, iw * s, ih * s);
}

function paintGrid(ctx, px, width, height) {
  ctx.strokeStyle = "rgba(255,255,255,0.07)";
  ctx.lineWidth = px;
  ctx.beginPath();
  for (let x = TOKEN_GRID; x < width; x += TOKEN_GRID) { ctx.moveTo(x, 0); ctx.lineTo(x, height); }
  for (let y = TOKEN_GRID; y < height; y += TOKEN_GRID) { ctx.moveTo(0, y); ctx.lineTo(width, y); }
  ctx.stroke();
}

// The rectangle being dragged, or the brush cursor at its real size in image pixels.
function paintGesture(ctx, px, { state, selected, snapToGrid, tool, drag, hover, brush, hardness }) {
  const color = state.regions[selected]?.color ?? "#fff";
  if (drag && !drag.pan && tool === "rect") {
    let [x0, y0] = drag.start;
    let [x1, y1] = drag.last;
    if (snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * px;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
  if (drag && !drag.pan && tool === "lasso" && drag.points.length > 1) {
    ctx.beginPath();
    drag.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.fillStyle = `${color}40`;
    ctx.fill();
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * px;
    ctx.setLineDash([6 * px, 4 * px]);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  if (hover && (tool === "brush" || tool === "eraser")) {
    ctx.beginPath();
    ctx.arc(hover[0], hover[1], brush / 2, 0, 2 * Math.PI);
    ctx.strokeStyle = "rgba(0,0,0,0.8)";
    ctx.lineWidth = 3 * px;
    ctx.stroke();
    ctx.strokeStyle = tool === "eraser" ? "#fff" : color;
    ctx.lineWidth = 1.5 * px;
    ctx.stroke();
    // A soft brush: where its full strength ends, dashed.
    if (hardness < 1 && !snapToGrid) {
      ctx.beginPath();
      ctx.arc(hover[0], hover[1], Math.max(px, (brush / 2) * hardness), 0, 2 * Math.PI);
      ctx.setLineDash([3 * px, 3 * px]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
}
