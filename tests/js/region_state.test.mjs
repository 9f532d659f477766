import { deflateSync, inflateSync } from "node:zlib";
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addRegion, bitsBounds, bitsFromPixels, decodeRLE, defaultName, emptyState, encodeRLE, featherMask, fileSlug, fitBits, rgbaPng, History, maskDims, MAX_PROMPT,
  paintRect, paintStroke, parseState, regionAt, regionPixels, resizeBits, safeViewRef, serializeState, snap, stateProblems,
  shown, transformBits,
} from "../../js/region_state.js";

test("run-length round trip, including empty and full masks", () => {
  for (const bits of [new Uint8Array(0), new Uint8Array(7), Uint8Array.from([1, 1, 0, 1]), new Uint8Array(50).fill(1)]) {
    assert.deepEqual(decodeRLE(encodeRLE(bits), bits.length), bits);
  }
  assert.equal(encodeRLE(Uint8Array.from([1, 1, 0])), "0.2.1");
  assert.throws(() => decodeRLE("0.5", 4), /exceed/);
  assert.throws(() => decodeRLE("0.2", 4), /covers 2 cells/);
  assert.throws(() => decodeRLE("<b>", 4), /run-length/);
});

test("rectangles fill the cells whose centres are inside, in any corner order", () => {
  const { mw, mh } = maskDims(64, 32);
  const bits = new Uint8Array(mw * mh);
  paintRect(bits, 64, 32, 32, 16, 0, 0);
  const on = [...bits].map((b, i) => (b ? [i % mw, Math.floor(i / mw)] : null)).filter(Boolean);
  assert.deepEqual(on, [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1], [1, 1], [2, 1], [3, 1]]);
});

test("snapping goes to the 16-pixel token grid", () => {
  assert.equal(snap(7), 0);
  assert.equal(snap(9), 16);
  assert.equal(snap(1016), 1024);
});

test("a brush stroke covers a band around its path and the eraser removes it", () => {
  const bits = new Uint8Array(maskDims(128, 64).mw * maskDims(128, 64).mh);
  paintStroke(bits, 128, 64, [[8, 32], [120, 32]], 8);
  const { mw } = maskDims(128, 64);
  assert.equal(bits[4 * mw + 0], 1);
  assert.equal(bits[4 * mw + 15], 1);
  assert.equal(bits[0 * mw + 5], 0);
  paintStroke(bits, 128, 64, [[8, 32], [120, 32]], 8, 0);
  assert.equal(bits.reduce((a, b) => a + b, 0), 0);
});

test("serialize / parse round trip keeps regions, order, prompts and masks", () => {
  const state = emptyState(96, 64);
  const a = addRegion(state);
  a.prompt = "a red <b>house</b>";
  paintRect(a.bits, 96, 64, 0, 0, 48, 64);
  const b = addRegion(state);
  b.strength = 1.5;
  b.hidden = true;
  paintStroke(b.bits, 96, 64, [[60, 10], [90, 50]], 6);
  const text = serializeState(state);
  const back = parseState(text, 96, 64);
  assert.equal(serializeState(back), text);
  assert.deepEqual(back.regions.map((r) => [r.id, r.prompt, r.strength, r.hidden]),
    [["r1", "a red <b>house</b>", 1, false], ["r2", "", 1.5, true]]);
  assert.notEqual(a.color, b.color);
});

test("parse rejects values that are not drawings with a clear message and accepts empty ones", () => {
  assert.deepEqual(parseState("", 32, 32), emptyState(32, 32));
  assert.throws(() => parseState("{nope", 32, 32), /not JSON/);
  assert.throws(() => parseState(JSON.stringify({ version: 9, width: 32, height: 32, regions: [] }), 32, 32), /version/);
  assert.throws(() => parseState(JSON.stringify({ version: 1, width: 3, height: 32, regions: [] }), 32, 32), /width/);
});

test("one bad field never costs the drawing: the region is kept and marked", () => {
  const good = encodeRLE(Uint8Array.from({ length: 16 }, (_, i) => (i < 8 ? 1 : 0)));
  const text = JSON.stringify({ version: 1, width: 32, height: 32, regions: [
    { id: "a", prompt: "fine", mask: good },
    { id: "b", prompt: "x".repeat(MAX_PROMPT + 5), mask: good },
    { id: "c", prompt: "bad mask", mask: "0.3" },
    { id: "d", prompt: "bad strength", mask: good, strength: 9 },
  ] });
  const state = parseState(text, 32, 32);
  assert.equal(state.regions.length, 4);
  assert.equal(state.regions[0].problem, undefined);
  assert.match(state.regions[1].problem, /Region 2: its prompt has 4005 characters/);
  assert.equal(state.regions[1].prompt.length, MAX_PROMPT + 5); // kept as saved, for the user to shorten
  assert.deepEqual([...state.regions[1].bits], [...state.regions[0].bits]);
  assert.match(state.regions[2].problem, /mask could not be read/);
  assert.equal(state.regions[2].prompt, "bad mask");
  assert.match(state.regions[3].problem, /strength 9/);
  assert.equal(state.regions[3].strength, 1);
  assert.deepEqual(stateProblems(state), ["Region 2's prompt has 4005 characters; the limit is 4000"]);
});

test("feather is an optional field: absent values stay byte-identical, set ones round-trip", () => {
  const state = emptyState(128, 64);
  const r = addRegion(state);
  paintRect(r.bits, 128, 64, 0, 0, 64, 64);
  const plain = serializeState(state);
  assert.ok(!plain.includes("feather"));
  assert.equal(serializeState(parseState(plain, 128, 64)), plain);
  r.feather = 32;
  const soft = serializeState(state);
  assert.equal(parseState(soft, 128, 64).regions[0].feather, 32);
  const { mw, mh } = maskDims(128, 64);
  const m = featherMask(r.bits, mw, mh, 32);
  assert.equal(m[0], 1); // the canvas border is not softened
  assert.ok(m[7] > 0.5 && m[7] < 1 && m[8] > 0 && m[8] < 0.5 && m[12] === 0, [...m.slice(0, 16)].join(","));
  assert.deepEqual([...featherMask(r.bits, mw, mh, 8)], [...r.bits]); // under 16 px: no blur
});

test("the brush snaps to the 16 px grid when asked, and a click finds the region on top", () => {
  const { mw, mh } = maskDims(64, 64);
  const bits = new Uint8Array(mw * mh);
  paintStroke(bits, 64, 64, [[20, 20]], 6, 1, 16);
  const on = [...bits].map((b, i) => (b ? [i % mw, Math.floor(i / mw)] : null)).filter(Boolean);
  assert.deepEqual(on, [[2, 2], [3, 2], [2, 3], [3, 3]]); // the whole 16 px square around (20, 20)
  const state = emptyState(64, 64);
  paintRect(addRegion(state).bits, 64, 64, 0, 0, 64, 64);
  paintRect(addRegion(state).bits, 64, 64, 0, 0, 32, 32);
  assert.equal(regionAt(state, 8, 8), 1);
  assert.equal(regionAt(state, 48, 48), 0);
  state.regions[1].hidden = true;
  assert.equal(regionAt(state, 8, 8), 0);
});

test("a saved drawing follows a new width/height without being stretched", () => {
  const state = emptyState(64, 64);
  const r = addRegion(state);
  paintRect(r.bits, 64, 64, 0, 0, 32, 64);
  const bigger = parseState(serializeState(state), 128, 128); // same shape: scaled
  const { mw, mh } = maskDims(128, 128);
  assert.equal(bigger.regions[0].bits.length, mw * mh);
  assert.equal(bigger.regions[0].bits[0], 1);
  assert.equal(bigger.regions[0].bits[mw / 2 - 1], 1);
  assert.equal(bigger.regions[0].bits[mw / 2], 0);
  // 2x2 -> 4x2: fitted and centred, empty bands at the sides instead of a stretch.
  assert.deepEqual(fitBits(Uint8Array.from([1, 0, 1, 0]), 2, 2, 4, 2), Uint8Array.from([0, 1, 0, 0, 0, 1, 0, 0]));
  assert.deepEqual(resizeBits(Uint8Array.from([1, 0]), 2, 1, 4, 1), Uint8Array.from([1, 1, 0, 0]));
});

test("undo / redo walk the snapshots and a new edit drops the redo branch", () => {
  const h = new History();
  h.record("a");
  h.record("b");
  h.record("c");
  assert.equal(h.undo(), "b");
  assert.equal(h.undo(), "a");
  assert.equal(h.undo(), null);
  assert.equal(h.redo(), "b");
  h.record("d");
  assert.equal(h.canRedo, false);
  assert.equal(h.undo(), "b");
});

test("moveTo steps to a snapshot the history holds (a graph undo restored it) and refuses any other", () => {
  const h = new History();
  for (const s of ["a", "b", "c", "d"]) h.record(s);
  assert.equal(h.moveTo("b"), true);
  assert.equal(h.undo(), "a");
  assert.equal(h.moveTo("c"), true);
  assert.equal(h.redo(), "d");
  assert.equal(h.moveTo("x"), false);
  assert.equal(h.undo(), "c");
  assert.equal(h.redo(), "d");
});

test("a mask picture becomes cells as Load Image reads a mask: brightness, or 1 - alpha where it has transparency", () => {
  const rgba = (pixels) => Uint8ClampedArray.from(pixels.flat());
  assert.deepEqual(bitsFromPixels(rgba([[255, 255, 255, 255], [0, 0, 0, 255], [128, 128, 128, 255], [127, 127, 127, 255]]), 4),
    Uint8Array.from([1, 0, 1, 0]));
  assert.deepEqual(bitsFromPixels(rgba([[0, 0, 0, 255], [255, 255, 255, 0], [0, 0, 0, 200], [0, 0, 0, 100]]), 4),
    Uint8Array.from([0, 1, 0, 1]));
});

test("rgbaPng writes a valid RGBA PNG that decodes to the given pixels", async () => {
  const width = 2;
  const height = 2;
  const rgba = Uint8Array.from([255, 255, 255, 0, 0, 0, 0, 255, 128, 128, 128, 127, 1, 2, 3, 4]);
  const png = await rgbaPng(rgba, width, height, async (b) => new Uint8Array(deflateSync(b)));
  assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
  const view = new DataView(png.buffer, png.byteOffset);
  const chunks = {};
  for (let at = 8; at < png.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    chunks[type] = png.subarray(at + 8, at + 8 + length);
    assert.equal(view.getUint32(at + 8 + length), crc32(png.subarray(at + 4, at + 8 + length)), type);
    at += 12 + length;
  }
  assert.deepEqual(Object.keys(chunks), ["IHDR", "IDAT", "IEND"]);
  assert.deepEqual([...chunks.IHDR], [0, 0, 0, 2, 0, 0, 0, 2, 8, 6, 0, 0, 0]);
  assert.deepEqual([...inflateSync(chunks.IDAT)], [0, ...rgba.subarray(0, 8), 0, ...rgba.subarray(8)]);
});

// An independent CRC-32 (bitwise, no table) to check the chunks against.
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}

test("an exported region is the backend's masks output: nearest-exact stretch of the cells, soft where feathered", () => {
  // 20 x 12 pixels: 3 x 2 cells (the last column and row of cells are partly outside the image).
  const region = { bits: Uint8Array.from([1, 0, 1, 0, 1, 0]), feather: 0 };
  const grey = regionPixels(region, 20, 12);
  assert.equal(grey.length, 240);
  // Column x comes from cell floor((x + 0.5) * 3 / 20) (torch's nearest_index(20, 3) in nodes/canvas_state.py:
  // 7 pixels of cell 0, 6 of cell 1, 7 of cell 2).
  const row0 = [...grey.slice(0, 20)].map((v) => (v ? 1 : 0));
  assert.deepEqual(row0, [...Array(7).fill(1), ...Array(6).fill(0), ...Array(7).fill(1)]);
  assert.deepEqual([...grey.slice(11 * 20, 11 * 20 + 20)].map((v) => (v ? 1 : 0)), [...Array(7).fill(0), ...Array(6).fill(1), ...Array(7).fill(0)]);
  assert.ok(grey.every((v) => v === 0 || v === 255));
  const { mw, mh } = maskDims(128, 128);
  const soft = { bits: new Uint8Array(mw * mh), feather: 32 };
  soft.bits.fill(1, 0, mw * 8);
  const out = regionPixels(soft, 128, 128);
  const column = [...Array(128).keys()].map((y) => out[y * 128 + 64]);
  assert.equal(column[0], 255);
  assert.equal(column[127], 0);
  assert.ok(column.some((v) => v > 0 && v < 255));  // a soft edge
});

test("view references from outputs or saved workflows: plain names in ComfyUI's folders only", () => {
  assert.deepEqual(safeViewRef({ filename: "ja_canvas_mask_ab12_0.png", type: "temp" }),
    { filename: "ja_canvas_mask_ab12_0.png", subfolder: "", type: "temp" });
  assert.deepEqual(safeViewRef({ filename: "a.png", subfolder: "maps/run 1", type: "output" }),
    { filename: "a.png", subfolder: "maps/run 1", type: "output" });
  for (const bad of [null, "a.png", { filename: "../x.png" }, { filename: "a/b.png" }, { filename: ".env" },
    { filename: "a.png", subfolder: "../.." }, { filename: "a.png", subfolder: "/etc" }, { filename: "a.png", type: "models" },
    { filename: "<img src=x onerror=alert(1)>.png" }, { filename: 5 }]) {
    assert.equal(safeViewRef(bad), null, JSON.stringify(bad));
  }
});

test("download names from prompts keep letters, digits and dashes", () => {
  assert.equal(fileSlug("A red <b>house</b> / ../etc"), "a-red-b-house-b-etc");
  assert.equal(fileSlug(""), "");
  assert.equal(fileSlug("x".repeat(80)).length, 40);
});

test("regions are named once and keep their names through reorder, save and load; old drawings get their list names", () => {
  const state = emptyState(64, 64);
  const [a, b, c] = [addRegion(state), addRegion(state), addRegion(state)];
  assert.deepEqual([a.name, b.name, c.name], ["Region 1", "Region 2", "Region 3"]);
  b.name = "sky";
  state.regions.reverse();
  const back = parseState(serializeState(state), 64, 64);
  assert.deepEqual(back.regions.map((r) => r.name), ["Region 3", "sky", "Region 1"]);
  back.regions.splice(2, 1); // "Region 1" removed: a new region takes the free name, never one in use
  assert.equal(defaultName(back.regions), "Region 1");
  assert.equal(addRegion(back).name, "Region 1");
  assert.equal(addRegion(back).name, "Region 2"); // renamed "sky": its old name is free
  const old = JSON.parse(serializeState(state));
  for (const r of old.regions) delete r.name;
  assert.deepEqual(parseState(JSON.stringify(old), 64, 64).regions.map((r) => r.name), ["Region 1", "Region 2", "Region 3"]);
  old.regions[1].name = 7;
  assert.match(parseState(JSON.stringify(old), 64, 64).regions[1].problem, /name was not text/);
});

test("a shape's box, moved and resized by its handles, in whole cells", () => {
  const [mw, mh] = [8, 8];
  const bits = new Uint8Array(mw * mh);
  for (const [x, y] of [[1, 1], [2, 1], [1, 2], [2, 2], [2, 3]]) bits[y * mw + x] = 1;
  assert.deepEqual(bitsBounds(bits, mw, mh), [1, 1, 3, 4]);
  assert.equal(bitsBounds(new Uint8Array(4), 2, 2), null);
  const moved = transformBits(bits, mw, mh, [1, 1, 3, 4], [4, 2, 6, 5]);
  assert.deepEqual(bitsBounds(moved, mw, mh), [4, 2, 6, 5]);
  assert.equal(moved.reduce((s, v) => s + v, 0), 5);
  const doubled = transformBits(bits, mw, mh, [1, 1, 3, 4], [0, 0, 4, 6]);
  assert.deepEqual(bitsBounds(doubled, mw, mh), [0, 0, 4, 6]);
  assert.equal(doubled.reduce((s, v) => s + v, 0), 20); // each cell became 2 x 2
  const off = transformBits(bits, mw, mh, [1, 1, 3, 4], [7, 6, 9, 9]); // dragged past the edge: the rest is dropped
  assert.deepEqual(bitsBounds(off, mw, mh), [7, 6, 8, 8]);
});

test("hidden from view only is saved apart from off: the editor leaves it out, the value keeps it in use", () => {
  const state = emptyState(32, 32);
  const [a, b] = [addRegion(state), addRegion(state)];
  a.bits.fill(1);
  b.bits.fill(1);
  b.viewHidden = true;
  const raw = JSON.parse(serializeState(state));
  assert.equal(raw.regions[0].viewHidden, undefined); // absent when not set: older values stay byte-identical
  assert.deepEqual([raw.regions[1].viewHidden, raw.regions[1].hidden], [true, false]);
  const back = parseState(JSON.stringify(raw), 32, 32);
  assert.deepEqual(back.regions.map(shown), [true, false]);
  assert.equal(regionAt(back, 4, 4), 0); // the region on top is hidden from view: the one under it is found
});

test("a region's LoRA is saved only when chosen (a drawing without one stays byte-identical) and read back checked", () => {
  const state = emptyState(64, 64);
  addRegion(state);
  addRegion(state);
  const plain = serializeState(state);
  assert.ok(!plain.includes("lora"));
  state.regions[1].lora = { name: "sub/fox.safetensors", strength: -0.5 };
  const saved = serializeState(state);
  assert.deepEqual(JSON.parse(saved).regions[1].lora, { name: "sub/fox.safetensors", strength: -0.5 });
  const read = parseState(saved, 64, 64);
  assert.deepEqual(read.regions.map((r) => r.lora), [undefined, { name: "sub/fox.safetensors", strength: -0.5 }]);
  assert.equal(serializeState(read), saved);
  delete state.regions[1].lora;
  assert.equal(serializeState(state), plain);
  // The values nodes/canvas_state.py refuses: each loads without its LoRA and says so in the row.
  for (const lora of ["fox.safetensors", { name: "../fox.safetensors", strength: 1 }, { name: "a\\..\\b", strength: 1 },
    { name: "/etc/fox", strength: 1 }, { name: "C:fox", strength: 1 }, { name: "", strength: 1 }, { name: "x".repeat(256) },
    { name: "fox.safetensors", strength: 11 }, { name: "fox.safetensors", strength: "1" }, { name: "f", strength: 1, path: "/" }]) {
    const raw = JSON.parse(plain);
    raw.regions[0].lora = lora;
    const bad = parseState(JSON.stringify(raw), 64, 64).regions[0];
    assert.equal(bad.lora, undefined, JSON.stringify(lora));
    assert.match(bad.problem, /its LoRA .* is now none: choose it again with the region's LoRA button/);
  }
});
