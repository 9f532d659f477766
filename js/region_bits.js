// Operations on a region's cells (its mask at 1/8 resolution): painting, moving, feathering, resampling, reading a
// mask picture and writing one. Pure logic, no DOM; region_state.js re-exports them with the saved format.

export const CELL = 8; // pixels per mask cell
export const TOKEN_GRID = 16; // pixels per image token (VAE /8, patch 2)
export const MAX_FEATHER = 256; // pixels of soft edge on each side of a region's border

export function maskDims(width, height) {
  return { mw: Math.ceil(width / CELL), mh: Math.ceil(height / CELL) };
}

export function snap(value, grid = TOKEN_GRID) {
  return Math.round(value / grid) * grid;
}

// Fill the cells whose centres lie inside the pixel rectangle (corners in any order).
export function paintRect(bits, width, height, x0, y0, x1, y1, value = 1) {
  const { mw, mh } = maskDims(width, height);
  const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)];
  const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)];
  for (let cy = 0; cy < mh; cy++) {
    const py = (cy + 0.5) * CELL;
    if (py < top || py > bottom) continue;
    for (let cx = 0; cx < mw; cx++) {
      const px = (cx + 0.5) * CELL;
      if (px >= left && px <= right) bits[cy * mw + cx] = value;
    }
  }
}

// Distance from point p to the segment a-b (the brush's reach; the smooth brush's raster uses it too).
export function segmentDistance(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

// Paint a polyline of pixel points with a round brush of `radius` pixels. With `grid` (pixels, a multiple of
// CELL), whole grid squares are painted: those whose centre the brush reaches (brush snapping).
export function paintStroke(bits, width, height, points, radius, value = 1, grid = 0) {
  const { mw, mh } = maskDims(width, height);
  const step = grid > CELL ? Math.round(grid / CELL) : 1; // cells per grid square
  const size = step * CELL;
  const gw = Math.ceil(mw / step);
  const gh = Math.ceil(mh / step);
  for (let i = 0; i < points.length; i++) {
    const a = points[Math.max(0, i - 1)];
    const b = points[i];
    const minX = Math.max(0, Math.floor((Math.min(a[0], b[0]) - radius) / size));
    const maxX = Math.min(gw - 1, Math.floor((Math.max(a[0], b[0]) + radius) / size));
    const minY = Math.max(0, Math.floor((Math.min(a[1], b[1]) - radius) / size));
    const maxY = Math.min(gh - 1, Math.floor((Math.max(a[1], b[1]) + radius) / size));
    for (let gy = minY; gy <= maxY; gy++) {
      for (let gx = minX; gx <= maxX; gx++) {
        if (segmentDistance((gx + 0.5) * size, (gy + 0.5) * size, a[0], a[1], b[0], b[1]) > radius) continue;
        for (let cy = gy * step; cy < Math.min(mh, (gy + 1) * step); cy++) {
          for (let cx = gx * step; cx < Math.min(mw, (gx + 1) * step); cx++) bits[cy * mw + cx] = value;
        }
      }
    }
  }
}

// The smallest rectangle of cells holding every set cell: [x0, y0, x1, y1] (x1, y1 exclusive), or null when none is set.
export function bitsBounds(bits, mw, mh) {
  let [x0, y0, x1, y1] = [mw, mh, -1, -1];
  for (let y = 0; y < mh; y++) {
    const row = y * mw;
    for (let x = 0; x < mw; x++) {
      if (!bits[row + x]) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      y1 = y;
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
}

// The cells inside rectangle `from` moved and stretched (nearest) onto rectangle `to` (both in cells, x1 and y1
// exclusive): a shape moved or resized by its handles. Cells outside `from` stay; what lands off the canvas is dropped.
export function transformBits(bits, mw, mh, from, to) {
  const out = Uint8Array.from(bits);
  const [fx0, fy0, fx1, fy1] = from;
  const [tx0, ty0, tx1, ty1] = to;
  for (let y = fy0; y < fy1; y++) out.fill(0, y * mw + fx0, y * mw + fx1);
  const [fw, fh, tw, th] = [fx1 - fx0, fy1 - fy0, tx1 - tx0, ty1 - ty0];
  for (let y = Math.max(0, ty0); y < Math.min(mh, ty1); y++) {
    const sy = fy0 + Math.min(fh - 1, Math.floor(((y - ty0 + 0.5) * fh) / th));
    for (let x = Math.max(0, tx0); x < Math.min(mw, tx1); x++) {
      const sx = fx0 + Math.min(fw - 1, Math.floor(((x - tx0 + 0.5) * fw) / tw));
      if (bits[sy * mw + sx]) out[y * mw + x] = 1;
    }
  }
  return out;
}
// Soft mask of a region with `feather` pixels of soft edge: two passes of a (2k+1)-cell box blur, k = floor(feather / 16),
// edges replicated (a region touching the border stays solid there). nodes/canvas_state.py does the same.
export function featherRadiusCells(feather) {
  return Math.floor(Math.max(0, Math.min(MAX_FEATHER, Number(feather) || 0)) / (2 * CELL));
}

export function featherMask(bits, mw, mh, feather) {
  let a = Float32Array.from(bits);
  const k = featherRadiusCells(feather);
  if (!k) return a;
  const n = 2 * k + 1;
  const clamp = (v, hi) => (v < 0 ? 0 : v > hi ? hi : v);
  for (let pass = 0; pass < 2; pass++) {
    const h = new Float32Array(mw * mh);
    for (let y = 0; y < mh; y++) {
      for (let x = 0; x < mw; x++) {
        let sum = 0;
        for (let d = -k; d <= k; d++) sum += a[y * mw + clamp(x + d, mw - 1)];
        h[y * mw + x] = sum / n;
      }
    }
    const v = new Float32Array(mw * mh);
    for (let y = 0; y < mh; y++) {
      for (let x = 0; x < mw; x++) {
        let sum = 0;
        for (let d = -k; d <= k; d++) sum += h[clamp(y + d, mh - 1) * mw + x];
        v[y * mw + x] = sum / n;
      }
    }
    a = v;
  }
  return a;
}

// Nearest-neighbour resample, used when width/height change under an existing drawing.
export function resizeBits(bits, mw, mh, nmw, nmh) {
  const out = new Uint8Array(nmw * nmh);
  for (let y = 0; y < nmh; y++) {
    const sy = Math.min(mh - 1, Math.floor(((y + 0.5) * mh) / nmh));
    for (let x = 0; x < nmw; x++) {
      const sx = Math.min(mw - 1, Math.floor(((x + 0.5) * mw) / nmw));
      out[y * nmw + x] = bits[sy * mw + sx];
    }
  }
  return out;
}

// The drawing under a new width/height keeps its shape: scaled uniformly to fit the new canvas and centred
// (a change of size alone scales it, a change of aspect adds empty bands instead of stretching it).
export function fitBits(bits, mw, mh, nmw, nmh) {
  const scale = Math.min(nmw / mw, nmh / mh);
  // The old canvas seen from the new one: centred, uniformly scaled.
  return mapBits(bits, mw, mh, nmw, nmh, [-(nmw / scale - mw) / 2, -(nmh / scale - mh) / 2, nmw / scale, nmh / scale]);
}

// Resample so that the source rectangle [x, y, w, h] (in old cells) fills the new mask; cells outside the old mask
// are empty. Used to follow a letterboxed background when the canvas takes the background's shape.
export function mapBits(bits, mw, mh, nmw, nmh, [x, y, w, h]) {
  const out = new Uint8Array(nmw * nmh);
  for (let ny = 0; ny < nmh; ny++) {
    const sy = Math.floor(y + ((ny + 0.5) * h) / nmh);
    if (sy < 0 || sy >= mh) continue;
    for (let nx = 0; nx < nmw; nx++) {
      const sx = Math.floor(x + ((nx + 0.5) * w) / nmw);
      if (sx >= 0 && sx < mw) out[ny * nmw + nx] = bits[sy * mw + sx];
    }
  }
  return out;
}

// Region cells from a mask picture drawn at the mask's size (RGBA pixels, `count` cells), read as ComfyUI's Load Image
// reads a mask: 1 - alpha where the picture has transparency (transparent = inside, as the editor's own export and
// core's mask editor write it), brightness otherwise; a cell is inside where that is at least one half.
export function bitsFromPixels(data, count) {
  let transparent = false;
  for (let i = 3; i < 4 * count; i += 4) if (data[i] < 255) { transparent = true; break; }
  const bits = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const v = transparent ? 255 - data[4 * i + 3] : 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
    bits[i] = v >= 127.5 ? 1 : 0;
  }
  return bits;
}

// Source index of each of `sizeOut` pixels in a nearest-exact stretch of `sizeIn` (nodes/canvas_state.py nearest_index).
function nearestIndex(sizeOut, sizeIn) {
  const ratio = sizeIn / sizeOut;
  return Int32Array.from({ length: sizeOut }, (_, i) => Math.min(sizeIn - 1, Math.floor((i + 0.5) * ratio)));
}

// A region's mask at width x height as 8-bit grey (255 inside, soft where feathered): its cells stretched as the
// backend's `masks` output stretches them, so an exported PNG is that output rounded to 8 bits.
export function regionPixels(region, width, height) {
  const { mw, mh } = maskDims(width, height);
  const soft = featherMask(region.bits, mw, mh, region.feather ?? 0);
  const cols = nearestIndex(width, mw);
  const rows = nearestIndex(height, mh);
  const out = new Uint8ClampedArray(width * height);
  for (let y = 0; y < height; y++) {
    const src = rows[y] * mw;
    const dst = y * width;
    for (let x = 0; x < width; x++) out[dst + x] = Math.round(255 * soft[src + cols[x]]);
  }
  return out;
}
