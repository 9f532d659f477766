// What the Region Canvas draws, in image pixels: the background letterboxed, each region's mask as a tinted overlay
// with its outline, the token grid while snapping, the rectangle being dragged and the brush cursor.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { paintHandles } from "./region_shapes.js";
import { CELL, featherMask, maskDims, snap, TOKEN_GRID } from "./region_state.js";

export class RegionPainter {
  constructor() {
    this.overlays = new WeakMap(); // region -> { key, canvas }: its overlay, redrawn only when the region changed
  }

  // `scene`: { state, background, opacity, selected, snapToGrid, tool, drag, hover, brush, shapes } (the editor's fields);
  // scale: CSS pixels per image pixel.
  paint(ctx, scale, scene) {
    const { width, height } = scene.state;
    const px = 1 / scale; // one CSS pixel in image pixels
    ctx.fillStyle = "#3a3a3a";
    ctx.fillRect(0, 0, width, height);
    if (scene.background) paintBackground(ctx, scene.background, width, height);
    this.#paintRegions(ctx, px, scene);
    // The token grid only where its lines are far enough apart to read (no moiré), and only while snapping.
    if (scene.snapToGrid && TOKEN_GRID * scale >= 8) paintGrid(ctx, px, width, height);
    paintGesture(ctx, px, scene);
    const box = scene.shapes.handlesBox();
    if (box) paintHandles(ctx, px, box);
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = px;
    ctx.strokeRect(0, 0, width, height);
  }

  #paintRegions(ctx, px, { state, opacity, selected }) {
    const { mw, mh } = maskDims(state.width, state.height);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = opacity;
    for (const r of state.regions) if (!r.hidden) ctx.drawImage(this.#overlay(r, mw, mh), 0, 0, mw * CELL, mh * CELL);
    ctx.globalAlpha = 1;
    // Outlines in each region's colour over a dark edge: a region stays apart from image content of the same colour.
    state.regions.forEach((r, i) => {
      if (r.hidden) return;
      outline(ctx, r, mw, mh);
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 3 * px;
      ctx.setLineDash([]);
      ctx.stroke();
      ctx.strokeStyle = r.color;
      ctx.lineWidth = 1.5 * px;
      ctx.stroke();
      if (i === selected) {
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([4 * px, 4 * px]);
        ctx.stroke();
        ctx.setLineDash([]);
      }
    });
  }

  // One small canvas per region at mask resolution (1 px per cell).
  #overlay(r, mw, mh) {
    const key = `${r.rev ?? 0}|${r.color}|${r.feather ?? 0}|${mw}x${mh}`;
    const cached = this.overlays.get(r);
    if (cached?.key === key) return cached.canvas;
    const canvas = cached?.canvas ?? document.createElement("canvas");
    canvas.width = mw;
    canvas.height = mh;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(mw, mh);
    const soft = r.feather ? featherMask(r.bits, mw, mh, r.feather) : r.bits;
    const [cr, cg, cb] = [1, 3, 5].map((j) => parseInt(r.color.slice(j, j + 2), 16));
    for (let i = 0; i < soft.length; i++) {
      const a = soft[i];
      if (!a) continue;
      image.data[4 * i] = cr;
      image.data[4 * i + 1] = cg;
      image.data[4 * i + 2] = cb;
      image.data[4 * i + 3] = Math.round(255 * a);
    }
    ctx.putImageData(image, 0, 0);
    this.overlays.set(r, { key, canvas });
    return canvas;
  }
}

// Letterboxed: the image keeps its own shape inside the canvas.
function paintBackground(ctx, image, width, height) {
  const { naturalWidth: iw, naturalHeight: ih } = image;
  const s = Math.min(width / iw, height / ih);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(image, (width - iw * s) / 2, (height - ih * s) / 2, iw * s, ih * s);
}

// The border of a region's cells as one path.
function outline(ctx, r, mw, mh) {
  ctx.beginPath();
  const on = (x, y) => x >= 0 && y >= 0 && x < mw && y < mh && r.bits[y * mw + x];
  for (let y = 0; y < mh; y++) {
    for (let x = 0; x < mw; x++) {
      if (!r.bits[y * mw + x]) continue;
      const [px, py] = [x * CELL, y * CELL];
      if (!on(x, y - 1)) { ctx.moveTo(px, py); ctx.lineTo(px + CELL, py); }
      if (!on(x, y + 1)) { ctx.moveTo(px, py + CELL); ctx.lineTo(px + CELL, py + CELL); }
      if (!on(x - 1, y)) { ctx.moveTo(px, py); ctx.lineTo(px, py + CELL); }
      if (!on(x + 1, y)) { ctx.moveTo(px + CELL, py); ctx.lineTo(px + CELL, py + CELL); }
    }
  }
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
function paintGesture(ctx, px, { state, selected, snapToGrid, tool, drag, hover, brush }) {
  const color = state.regions[selected]?.color ?? "#fff";
  if (drag && !drag.pan && tool === "rect") {
    let [x0, y0] = drag.start;
    let [x1, y1] = drag.last;
    if (snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * px;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
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
  }
}
