// Smooth brush and eraser strokes. A stroke is drawn onto a grid of samples finer than the mask (several samples per
// 8 px cell side, about one screen pixel each at the node's and the full-window editor's usual zoom) with an
// anti-aliased edge, soft inside when the brush's hardness is below 1; when the stroke ends it is rasterised into the
// mask's cells: a cell is taken when at least half of it is covered. The mask keeps its resolution rule (1/8); the
// stroke shows smooth while it is drawn. Pure logic, no DOM: the painter shows `cover` (see previewPixels).
import { CELL, segmentDistance } from "./region_bits.js";

export const MAX_SAMPLES = 4; // samples per cell side: 2 px each
const SAMPLE_BUDGET = 2048; // samples along the long side of the canvas (an 8192² canvas gets 2 per cell side)

export function samplesPerCell(mw, mh) {
  return Math.max(1, Math.min(MAX_SAMPLES, Math.floor(SAMPLE_BUDGET / Math.max(mw, mh))));
}

// How much of the brush's paint lies at distance `d` from its centre line: 1 inside, falling linearly to 0 at the
// brush's `radius` over the soft edge (radius × (1 - hardness), at least one sample wide: the anti-aliased edge).
export function brushAlpha(d, radius, hardness, sample) {
  const ramp = Math.max(radius * (1 - hardness), sample);
  return Math.max(0, Math.min(1, (radius - d) / ramp));
}

export class StrokeRaster {
  // mw x mh: the mask's cells; `samples`: samples per cell side.
  constructor(mw, mh, samples = samplesPerCell(mw, mh)) {
    this.mw = mw;
    this.mh = mh;
    this.samples = samples;
    this.sample = CELL / samples; // image pixels per sample
    this.sw = mw * samples;
    this.sh = mh * samples;
    this.cover = new Uint8Array(this.sw * this.sh); // 0-255 per sample; overlapping paint keeps the larger
    this.bounds = null; // samples touched so far: [x0, y0, x1, y1], x1 and y1 exclusive
    this.dirty = null; // samples touched since the last takeDirty()
  }

  // The segment from a to b (image pixels; a === b for a dab) painted with a round brush of `radius` image pixels.
  // Returns the cells it can have changed, [x0, y0, x1, y1], or null when it lies off the canvas.
  addSegment(a, b, radius, hardness = 1) {
    const s = this.sample;
    const lo = (v) => Math.max(0, Math.floor((v - radius) / s));
    const hi = (v, n) => Math.min(n, Math.ceil((v + radius) / s));
    const [x0, y0] = [lo(Math.min(a[0], b[0])), lo(Math.min(a[1], b[1]))];
    const [x1, y1] = [hi(Math.max(a[0], b[0]), this.sw), hi(Math.max(a[1], b[1]), this.sh)];
    if (x1 <= x0 || y1 <= y0) return null;
    for (let y = y0; y < y1; y++) {
      const py = (y + 0.5) * s;
      const row = y * this.sw;
      for (let x = x0; x < x1; x++) {
        const alpha = brushAlpha(segmentDistance((x + 0.5) * s, py, a[0], a[1], b[0], b[1]), radius, hardness, s);
        if (!alpha) continue;
        const v = Math.round(255 * alpha);
        if (v > this.cover[row + x]) this.cover[row + x] = v;
      }
    }
    const rect = [x0, y0, x1, y1];
    this.bounds = grow(this.bounds, rect);
    this.dirty = grow(this.dirty, rect);
    const n = this.samples;
    return [Math.floor(x0 / n), Math.floor(y0 / n), Math.ceil(x1 / n), Math.ceil(y1 / n)];
  }

  // The samples changed since the last call (null when none), for the preview to redraw only those.
  takeDirty() {
    const rect = this.dirty;
    this.dirty = null;
    return rect;
  }

  // Mean coverage of cell (cx, cy), 0-1.
  cellCoverage(cx, cy) {
    const n = this.samples;
    let sum = 0;
    for (let y = cy * n; y < (cy + 1) * n; y++) for (let x = cx * n; x < (cx + 1) * n; x++) sum += this.cover[y * this.sw + x];
    return sum / (255 * n * n);
  }

  // The stroke rasterised into `bits` (the region's cells): every cell at least half covered is set to `value`.
  // Returns the cells it looked at, [x0, y0, x1, y1], or null for a stroke that never reached the canvas.
  applyTo(bits, value = 1) {
    if (!this.bounds) return null;
    const n = this.samples;
    const [x0, y0, x1, y1] = [Math.floor(this.bounds[0] / n), Math.floor(this.bounds[1] / n), Math.ceil(this.bounds[2] / n),
      Math.ceil(this.bounds[3] / n)];
    const half = (255 * n * n) / 2;
    for (let cy = y0; cy < y1; cy++) {
      for (let cx = x0; cx < x1; cx++) {
        let sum = 0;
        for (let y = cy * n; y < (cy + 1) * n; y++) {
          const row = y * this.sw;
          for (let x = cx * n; x < (cx + 1) * n; x++) sum += this.cover[row + x];
        }
        if (sum >= half) bits[cy * this.mw + cx] = value;
      }
    }
    return [x0, y0, x1, y1];
  }
}

function grow(rect, add) {
  return rect ? [Math.min(rect[0], add[0]), Math.min(rect[1], add[1]), Math.max(rect[2], add[2]), Math.max(rect[3], add[3])] : add;
}

// The stroke's samples inside `rect` as RGBA pixels of colour [r, g, b], alpha = coverage: the smooth preview.
export function previewPixels(raster, [x0, y0, x1, y1], [r, g, b]) {
  const w = x1 - x0;
  const out = new Uint8ClampedArray(4 * w * (y1 - y0));
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const a = raster.cover[y * raster.sw + x];
      if (!a) continue;
      const i = 4 * ((y - y0) * w + (x - x0));
      out[i] = r;
      out[i + 1] = g;
      out[i + 2] = b;
      out[i + 3] = a;
    }
  }
  return out;
}
