// Region canvas state: one versioned JSON string, masks as run-length bitmaps at 1/8 resolution.
// Pure logic, no DOM: the editor (region_canvas.js), the unit tests and the Python decoder
// (nodes/canvas_state.py) agree on this format. The cell operations (region_bits.js) and the PNG writer (region_png.js)
// are re-exported here.
import { CELL, fitBits, mapBits, maskDims, MAX_FEATHER } from "./region_bits.js";

export * from "./region_bits.js";
export * from "./region_png.js";

export const VERSION = 1;
export const MAX_REGIONS = 32;
export const MAX_PROMPT = 4000;
export const MAX_NAME = 64; // characters of a region's name
export const MAX_LORA_NAME = 255; // characters of a region LoRA's file name (relative to the loras folder)
export const LORA_STRENGTH = 10; // a region LoRA's strength lies in [-10, 10], as on the Region LoRA node
// Distinguishable on dark and on photographs: the first eight are far apart in hue and lightness.
export const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"];

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
      if (r.opacity !== undefined && r.opacity !== 1) out.opacity = r.opacity;
      // Only when one is chosen: a drawing without region LoRAs saves as it did before they existed.
      if (r.lora) out.lora = { name: r.lora.name, strength: r.lora.strength };
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
    // How strongly the editor shows the region (view only; 1, the default, is not saved).
    if (r.opacity !== undefined) {
      if (typeof r.opacity === "number" && r.opacity >= 0 && r.opacity <= 1) {
        if (r.opacity !== 1) region.opacity = r.opacity;
      } else {
        problems.push(`its opacity ${JSON.stringify(r.opacity)} was not a number between 0 and 1 and is now 1`);
      }
    }
    if (r.lora !== undefined) {
      const lora = loraChoice(r.lora);
      if (lora) region.lora = lora;
      else problems.push(`its LoRA ${JSON.stringify(r.lora)} was not a file name and a strength between -${LORA_STRENGTH} and `
        + `${LORA_STRENGTH} and is now none: choose it again with the region's LoRA button`);
    }
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

// A region's saved LoRA choice as { name, strength }, or null when it is not one: a name relative to the loras folder
// that cannot leave it (no absolute path, no "." or ".." part) and a strength in range. The Python decoder
// (nodes/canvas_state.py lora_choice) refuses the same values.
export function loraChoice(raw) {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return null;
  if (Object.keys(raw).some((k) => k !== "name" && k !== "strength")) return null;
  const { name } = raw;
  const strength = raw.strength ?? 1;
  if (typeof name !== "string" || !name.length || name.length > MAX_LORA_NAME || name.includes("\0")) return null;
  if (/^[\\/]/.test(name) || /^[A-Za-z]:/.test(name) || name.split(/[\\/]/).some((p) => p === "" || p === "." || p === "..")) return null;
  if (typeof strength !== "number" || !Number.isFinite(strength) || Math.abs(strength) > LORA_STRENGTH) return null;
  return { name, strength };
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
