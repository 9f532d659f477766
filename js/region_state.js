// Region canvas state: one versioned JSON string, masks as run-length bitmaps at 1/8 resolution.
// Pure logic, no DOM: the editor (region_canvas.js), the unit tests and the Python decoder
// (nodes/canvas_state.py) agree on this format.

export const VERSION = 1;
export const CELL = 8; // pixels per mask cell
export const TOKEN_GRID = 16; // pixels per image token (VAE /8, patch 2)
export const MAX_REGIONS = 32;
export const MAX_PROMPT = 4000;
export const MAX_FEATHER = 256; // pixels of soft edge on each side of a region's border
export const MAX_NAME = 64; // characters of a region's name
// Distinguishable on dark and on photographs: the first eight are far apart in hue and lightness.
export const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"];

export function maskDims(width, height) {
  return { mw: Math.ceil(width / CELL), mh: Math.ceil(height / CELL) };
}

export function emptyState(width, height) {
  return { version: VERSION, width, height, regions: [] };
}

// Runs alternate 0,1,0,... starting with zeros; base-36 numbers joined by ".".
export function encodeRLE(bits) {
  const runs = [];
  let current = 0;
  let count = 0;
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i] ? 1 : 0;
    if (b === current) {
      count++;
    } else {
      runs.push(count);
      current = b;
      count = 1;
    }
  }
  runs.push(count);
  return runs.map((n) => n.toString(36)).join(".");
}

export function decodeRLE(text, length) {
  const bits = new Uint8Array(length);
  if (typeof text !== "string" || !/^[0-9a-z]+(\.[0-9a-z]+)*$/.test(text)) {
    throw new Error("mask is not a run-length string");
  }
  let pos = 0;
  let value = 0;
  for (const part of text.split(".")) {
    const n = parseInt(part, 36);
    if (pos + n > length) throw new Error("mask runs exceed the canvas size");
    if (value) bits.fill(1, pos, pos + n);
    pos += n;
    value ^= 1;
  }
  if (pos !== length) throw new Error(`mask covers ${pos} cells, the canvas has ${length}`);
  return bits;
}

export function nextColor(regions) {
  const used = new Set(regions.map((r) => r.color));
  return PALETTE.find((c) => !used.has(c)) ?? PALETTE[regions.length % PALETTE.length];
}

// "Region N" with the smallest N no region of the list is named after: a name stays with its region when the list
// is reordered, and a new region never takes a name in use.
export function defaultName(regions) {
  const names = new Set(regions.map((r) => r.name));
  let n = regions.length + 1;
  for (let k = 1; k <= regions.length + 1; k++) if (!names.has(`Region ${k}`)) { n = k; break; }
  return `Region ${n}`;
}

export function addRegion(state) {
  if (state.regions.length >= MAX_REGIONS) throw new Error(`at most ${MAX_REGIONS} regions`);
  const { mw, mh } = maskDims(state.width, state.height);
  let n = state.regions.length + 1;
  const ids = new Set(state.regions.map((r) => r.id));
  while (ids.has(`r${n}`)) n++;
  const region = { id: `r${n}`, name: defaultName(state.regions), prompt: "", strength: 1.0, color: nextColor(state.regions),
    hidden: false, feather: 0, bits: new Uint8Array(mw * mh) };
  state.regions.push(region);
  return region;
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

function segmentDistance(px, py, ax, ay, bx, by) {
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

// Whether the editor shows a region: not "off" (hidden: left out of the output too) and not hidden from view only
// (viewHidden: still in the output).
export function shown(r) {
  return !r.hidden && !r.viewHidden;
}

// Index of the topmost visible region (the last in the list is drawn on top) covering image pixel (x, y), or -1.
export function regionAt(state, x, y) {
  const { mw, mh } = maskDims(state.width, state.height);
  const cx = Math.floor(x / CELL);
  const cy = Math.floor(y / CELL);
  if (cx < 0 || cy < 0 || cx >= mw || cy >= mh) return -1;
  for (let i = state.regions.length - 1; i >= 0; i--) {
    const r = state.regions[i];
    if (shown(r) && r.bits[cy * mw + cx]) return i;
  }
  return -1;
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

// `source`: the rectangle of the old canvas, in image pixels, that becomes the new canvas (default: the whole old
// canvas, fitted without stretching).
export function resizeState(state, width, height, source = null) {
  if (state.width === width && state.height === height && !source) return state;
  const old = maskDims(state.width, state.height);
  const next = maskDims(width, height);
  for (const r of state.regions) {
    r.bits = source ? mapBits(r.bits, old.mw, old.mh, next.mw, next.mh, source.map((v) => v / CELL))
      : fitBits(r.bits, old.mw, old.mh, next.mw, next.mh);
  }
  state.width = width;
  state.height = height;
  return state;
}

export function serializeState(state) {
  return JSON.stringify({
    version: VERSION,
    width: state.width,
    height: state.height,
    regions: state.regions.map((r, i) => {
      const out = { id: r.id };
      // A name is saved unless it is the one its place gives (what a drawing saved before names reads as): a workflow
      // saved before regions had names opens and saves unchanged.
      if (r.name !== `Region ${i + 1}`) out.name = r.name;
      Object.assign(out, { prompt: r.prompt, strength: r.strength, color: r.color, hidden: !!r.hidden, mask: encodeRLE(r.bits) });
      if (r.feather) out.feather = r.feather;
      if (r.viewHidden) out.viewHidden = true;
      return out;
    }),
  });
}

// Parse a saved value. A value that is not a drawing at all (not JSON, another version, a bad size) throws an
// Error whose message says what is wrong. Anything wrong inside one region never costs the others: that region
// is loaded with what can be read and carries `problem` (a sentence for the user); the prompt is kept as saved.
export function parseState(text, width, height) {
  if (text === undefined || text === null || text === "" || text === "{}") return emptyState(width, height);
  let raw;
  try {
    raw = typeof text === "string" ? JSON.parse(text) : text;
  } catch (err) {
    throw new Error(`region canvas value is not JSON (${err.message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error("region canvas value must be an object");
  if (raw.version !== VERSION) throw new Error(`unsupported region canvas version ${JSON.stringify(raw.version)} (expected ${VERSION})`);
  const w = Number(raw.width);
  const h = Number(raw.height);
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 16 || h < 16 || w > 8192 || h > 8192) {
    throw new Error("region canvas width/height must be integers between 16 and 8192");
  }
  if (!Array.isArray(raw.regions)) throw new Error("region canvas value has no list of regions");
  const { mw, mh } = maskDims(w, h);
  const state = { version: VERSION, width: w, height: h, regions: [] };
  raw.regions.forEach((r, i) => {
    const problems = [];
    if (typeof r !== "object" || r === null) {
      problems.push("it was not a region object");
      r = {};
    }
    if (i >= MAX_REGIONS) problems.push(`a canvas holds at most ${MAX_REGIONS} regions; remove this one or another`);
    let prompt = r.prompt ?? "";
    if (typeof prompt !== "string") {
      problems.push("its prompt was not text and was emptied");
      prompt = "";
    }
    if (prompt.length > MAX_PROMPT) {
      problems.push(`its prompt has ${prompt.length} characters, the limit is ${MAX_PROMPT}: shorten it`);
    }
    let strength = r.strength ?? 1;
    if (typeof strength !== "number" || !(strength >= 0 && strength <= 4)) {
      problems.push(`its strength ${JSON.stringify(strength)} was not between 0 and 4 and is now 1`);
      strength = 1;
    }
    let feather = r.feather ?? 0;
    if (typeof feather !== "number" || !Number.isInteger(feather) || feather < 0 || feather > MAX_FEATHER) {
      problems.push(`its feather ${JSON.stringify(feather)} was not a whole number of pixels 0-${MAX_FEATHER} and is now 0`);
      feather = 0;
    }
    const color = /^#[0-9a-fA-F]{6}$/.test(r.color ?? "") ? r.color : PALETTE[i % PALETTE.length];
    const id = /^[A-Za-z0-9_-]{1,32}$/.test(r.id ?? "") ? r.id : `r${i + 1}`;
    // Drawings saved before regions had names: each is named by its place in the saved list, once.
    let name = r.name ?? `Region ${i + 1}`;
    if (typeof name !== "string" || name.length > MAX_NAME) {
      problems.push(`its name was not text of at most ${MAX_NAME} characters and is now “Region ${i + 1}”`);
      name = `Region ${i + 1}`;
    }
    let bits;
    try {
      bits = decodeRLE(r.mask, mw * mh);
    } catch (err) {
      problems.push(`its mask could not be read (${err.message}) and is empty now: draw it again`);
      bits = new Uint8Array(mw * mh);
    }
    const region = { id, name, prompt, strength, color, hidden: !!r.hidden, feather, bits };
    if (r.viewHidden === true) region.viewHidden = true;
    if (problems.length) region.problem = `${name}: ${problems.join("; ")}.`;
    state.regions.push(region);
  });
  const ids = new Set();
  for (const [i, r] of state.regions.entries()) {
    if (ids.has(r.id)) r.id = `r${i + 1}x${ids.size}`;
    ids.add(r.id);
  }
  return resizeState(state, width ?? w, height ?? h);
}

// What keeps a state from being queued: over-long prompts, too many regions.
export function stateProblems(state) {
  const out = [];
  if (state.regions.length > MAX_REGIONS) out.push(`${state.regions.length} regions; the limit is ${MAX_REGIONS}`);
  state.regions.forEach((r, i) => {
    if (r.prompt.length > MAX_PROMPT) out.push(`${r.name ?? `region ${i + 1}`}'s prompt has ${r.prompt.length} characters; the limit is ${MAX_PROMPT}`);
  });
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

// A file the server shows through /view (a background, a mask offered for import), as it comes from a node's output
// or a saved workflow: a plain file name, a plain relative subfolder, one of ComfyUI's folders. Anything else is
// refused (null), so a shared workflow cannot point the editor elsewhere.
const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,199}$/;
export function safeViewRef(ref) {
  if (!ref || typeof ref !== "object") return null;
  const { filename, subfolder = "", type = "temp" } = ref;
  if (typeof filename !== "string" || !PLAIN_NAME.test(filename) || filename.includes("..")) return null;
  if (typeof subfolder !== "string" || subfolder.length > 200) return null;
  if (subfolder && !subfolder.split("/").every((part) => PLAIN_NAME.test(part) && !part.includes(".."))) return null;
  if (!["temp", "output", "input"].includes(type)) return null;
  return { filename, subfolder, type };
}

// A download file name part from free text (a prompt): lower-case letters, digits and dashes, at most `max` long.
export function fileSlug(text, max = 40) {
  return String(text ?? "").toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "")
    .slice(0, max).replace(/-+$/, "");
}

// Undo/redo over serialized snapshots.
export class History {
  constructor(limit = 100) {
    this.limit = limit;
    this.past = [];
    this.future = [];
  }

  record(snapshot) {
    if (this.past[this.past.length - 1] === snapshot) return;
    this.past.push(snapshot);
    if (this.past.length > this.limit) this.past.shift();
    this.future = [];
  }

  get canUndo() {
    return this.past.length > 1;
  }

  get canRedo() {
    return this.future.length > 0;
  }

  undo() {
    if (!this.canUndo) return null;
    this.future.push(this.past.pop());
    return this.past[this.past.length - 1];
  }

  redo() {
    if (!this.canRedo) return null;
    const snapshot = this.future.pop();
    this.past.push(snapshot);
    return snapshot;
  }

  // Steps back or forward to a snapshot this history holds (ComfyUI's graph undo restored it), so undo and redo go on
  // from there; false, and nothing changed, when the snapshot is not in it.
  moveTo(snapshot) {
    if (this.past.includes(snapshot)) {
      while (this.past[this.past.length - 1] !== snapshot) this.future.push(this.past.pop());
      return true;
    }
    if (this.future.includes(snapshot)) {
      while (this.past[this.past.length - 1] !== snapshot) this.past.push(this.future.pop());
      return true;
    }
    return false;
  }
}

// A PNG of RGBA pixels (8 bits each), written here rather than through a canvas: a canvas stores colour premultiplied
// by alpha and would lose the white of fully transparent pixels. (RGBA rather than grey + alpha: ComfyUI 0.33 decodes
// grey + alpha PNGs through floats, 255 coming back as 0.996.) `deflate` turns bytes into a zlib stream
// (CompressionStream("deflate") in the browser).
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set([...type].map((ch) => ch.charCodeAt(0)), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export async function rgbaPng(rgba, width, height, deflate) {
  const stride = 4 * width;
  const raw = new Uint8Array(height * (1 + stride));
  for (let y = 0; y < height; y++) raw.set(rgba.subarray(y * stride, (y + 1) * stride), y * (1 + stride) + 1); // filter 0
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 6, 0, 0, 0], 8); // 8 bits, RGBA, deflate, adaptive filtering, no interlace
  const parts = [Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk("IHDR", header),
    pngChunk("IDAT", await deflate(raw)), pngChunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
