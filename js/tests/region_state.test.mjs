import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addRegion, decodeRLE, emptyState, encodeRLE, History, maskDims, paintRect, paintStroke, parseState, resizeBits,
  serializeState, snap,
} from "../region_state.js";

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

test("parse rejects malformed values with a clear message and accepts empty ones", () => {
  assert.deepEqual(parseState("", 32, 32), emptyState(32, 32));
  assert.throws(() => parseState("{nope", 32, 32), /not JSON/);
  assert.throws(() => parseState(JSON.stringify({ version: 9, width: 32, height: 32, regions: [] }), 32, 32), /version/);
  assert.throws(() => parseState(JSON.stringify({ version: 1, width: 32, height: 32, regions: [{ mask: "0.3" }] }), 32, 32),
    /region 1: mask covers 3 cells/);
  assert.throws(() => parseState(JSON.stringify({ version: 1, width: 32, height: 32, regions: [{ mask: "0.10", strength: 9 }] }), 32, 32),
    /strength/);
});

test("a saved drawing follows a new width/height", () => {
  const state = emptyState(64, 64);
  const r = addRegion(state);
  paintRect(r.bits, 64, 64, 0, 0, 32, 64);
  const bigger = parseState(serializeState(state), 128, 64);
  const { mw, mh } = maskDims(128, 64);
  assert.equal(bigger.regions[0].bits.length, mw * mh);
  assert.equal(bigger.regions[0].bits[0], 1);
  assert.equal(bigger.regions[0].bits[mw - 1], 0);
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
