// The smooth brush (js/region_raster.js), the lasso and the bucket fill (js/region_tools.js), each against a naive
// reference computed point by point, plus identities that need none; and the per-region opacity in the saved value.
import assert from "node:assert/strict";
import { test } from "node:test";

import { brushAlpha, previewPixels, samplesPerCell, StrokeRaster } from "../../js/region_raster.js";
import { fillArea, paintPolygon } from "../../js/region_tools.js";
import { addRegion, CELL, emptyState, maskDims, paintRect, parseState, serializeState } from "../../js/region_state.js";

function distanceToPolyline(x, y, points) {
  let best = Infinity;
  for (let i = 0; i < points.length; i++) {
    const [ax, ay] = points[Math.max(0, i - 1)];
    const [bx, by] = points[i];
    const [dx, dy] = [bx - ax, by - ay];
    const len2 = dx * dx + dy * dy;
    const t = len2 ? Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / len2)) : 0;
    best = Math.min(best, Math.hypot(x - ax - t * dx, y - ay - t * dy));
  }
  return best;
}

// Reference: each cell's mean coverage over its samples, each sample's coverage from its distance to the whole stroke.
function referenceStroke(mw, mh, samples, points, radius, hardness) {
  const step = CELL / samples;
  const bits = new Uint8Array(mw * mh);
  for (let cy = 0; cy < mh; cy++) {
    for (let cx = 0; cx < mw; cx++) {
      let sum = 0;
      for (let sy = 0; sy < samples; sy++) {
        for (let sx = 0; sx < samples; sx++) {
          const d = distanceToPolyline((cx * samples + sx + 0.5) * step, (cy * samples + sy + 0.5) * step, points);
          sum += Math.round(255 * brushAlpha(d, radius, hardness, step));
        }
      }
      bits[cy * mw + cx] = sum >= (255 * samples * samples) / 2 ? 1 : 0;
    }
  }
  return bits;
}

function drawStroke(mw, mh, points, radius, hardness, samples) {
  const raster = new StrokeRaster(mw, mh, samples);
  for (let i = 0; i < points.length; i++) raster.addSegment(points[Math.max(0, i - 1)], points[i], radius, hardness);
  const bits = new Uint8Array(mw * mh);
  raster.applyTo(bits, 1);
  return { raster, bits };
}

const count = (bits) => bits.reduce((n, b) => n + b, 0);

test("a stroke's cells are those its anti-aliased coverage covers at least half (naive reference)", () => {
  const points = [[13, 20], [47, 33], [90, 95], [91, 96], [30, 110]];
  for (const samples of [1, 2, 4]) {
    for (const [radius, hardness] of [[6, 1], [17.5, 1], [24, 0.5], [24, 0]]) {
      const { bits } = drawStroke(16, 16, points, radius, hardness, samples);
      assert.deepEqual(bits, referenceStroke(16, 16, samples, points, radius, hardness), `${samples} ${radius} ${hardness}`);
    }
  }
});

test("a hard dab covers about its disc; a softer brush takes a narrower band (the half-strength line)", () => {
  const { bits } = drawStroke(32, 32, [[128, 128]], 80, 1, 4);
  const area = count(bits) * CELL * CELL;
  assert.ok(Math.abs(area - Math.PI * 80 * 80) < 0.06 * Math.PI * 80 * 80, area);
  const rows = (hardness) => {
    const { bits: b } = drawStroke(32, 32, [[0, 128], [256, 128]], 64, hardness, 4);
    let n = 0;
    for (let y = 0; y < 32; y++) if (b[y * 32 + 16]) n++;
    return n;
  };
  // Half strength lies at radius × (1 + hardness) / 2 from the centre line: 64, 48 and 32 px, i.e. 16, 12 and 8 cells.
  assert.deepEqual([rows(1), rows(0.5), rows(0)], [16, 12, 8]);
});

test("a stroke changes only the cells it covers; the eraser clears the same cells", () => {
  const { raster, bits } = drawStroke(16, 16, [[20, 20], [100, 30]], 12, 1, 2);
  const full = new Uint8Array(256).fill(1);
  raster.applyTo(full, 0);
  for (let i = 0; i < 256; i++) assert.equal(full[i], 1 - bits[i]);
  assert.equal(new StrokeRaster(16, 16).applyTo(new Uint8Array(256)), null); // nothing drawn
  assert.equal(raster.addSegment([-100, -100], [-90, -90], 5), null); // off the canvas
});

test("the preview shows the coverage in the stroke's colour", () => {
  const { raster } = drawStroke(8, 8, [[10, 10], [50, 40]], 9, 0.5, 4);
  const rect = raster.takeDirty();
  const pixels = previewPixels(raster, rect, [230, 25, 75]);
  const w = rect[2] - rect[0];
  for (let y = rect[1]; y < rect[3]; y++) {
    for (let x = rect[0]; x < rect[2]; x++) {
      const i = 4 * ((y - rect[1]) * w + (x - rect[0]));
      assert.equal(pixels[i + 3], raster.cover[y * raster.sw + x]);
      if (pixels[i + 3]) assert.deepEqual([...pixels.subarray(i, i + 3)], [230, 25, 75]);
    }
  }
  assert.equal(raster.takeDirty(), null);
  assert.equal(samplesPerCell(128, 128), 4);
  assert.equal(samplesPerCell(1024, 1024), 2); // 8192²: the raster stays 2048 samples on its long side
});

function insidePolygon(x, y, points) {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi <= y) !== (yj <= y) && x < xi + ((y - yi) * (xj - xi)) / (yj - yi)) inside = !inside;
  }
  return inside;
}

test("a lasso takes the cells its polygon covers at least half (point-in-polygon reference)", () => {
  const shapes = [[[10, 10], [110, 20], [60, 120]], [[5, 5], [120, 5], [120, 120], [64, 40], [5, 120]],
    [[10, 60], [120, 10], [120, 110], [10, 30]]]; // the last crosses itself
  for (const points of shapes) {
    const bits = new Uint8Array(256);
    paintPolygon(bits, 128, 128, points, 1, 4);
    const expected = new Uint8Array(256);
    for (let cy = 0; cy < 16; cy++) {
      for (let cx = 0; cx < 16; cx++) {
        let n = 0;
        for (let sy = 0; sy < 4; sy++) for (let sx = 0; sx < 4; sx++) if (insidePolygon(cx * 8 + (sx + 0.5) * 2, cy * 8 + (sy + 0.5) * 2, points)) n++;
        expected[cy * 16 + cx] = n >= 8 ? 1 : 0;
      }
    }
    assert.deepEqual(bits, expected, JSON.stringify(points));
  }
  // A lasso along cell borders is the rectangle's cells.
  const lasso = new Uint8Array(256);
  const rect = new Uint8Array(256);
  paintPolygon(lasso, 128, 128, [[16, 24], [80, 24], [80, 96], [16, 96]]);
  paintRect(rect, 128, 128, 16, 24, 80, 96);
  assert.deepEqual(lasso, rect);
  assert.equal(count(lasso), 8 * 9);
  assert.equal(paintPolygon(new Uint8Array(256), 128, 128, [[0, 0], [50, 50]]), 0); // a line encloses nothing
});

test("the fill takes the connected area that looks alike, up to outlines, other regions and the edge", () => {
  const state = emptyState(128, 128);
  const { mw } = maskDims(128, 128);
  const ring = addRegion(state);
  for (let y = 2; y <= 10; y++) for (let x = 2; x <= 10; x++) if (y === 2 || y === 10 || x === 2 || x === 10) ring.bits[y * mw + x] = 1;
  const other = addRegion(state);
  paintRect(other.bits, 128, 128, 96, 0, 128, 128); // the right quarter
  const fill = addRegion(state);
  // Inside the ring: its 7 x 7 hole only.
  assert.equal(fillArea(state, 2, 6, 6), 49);
  assert.ok(fill.bits[6 * mw + 6] && !fill.bits[2 * mw + 2] && !fill.bits[0]);
  // Already in the region: nothing to do.
  assert.equal(fillArea(state, 2, 6, 6), 0);
  // Outside: the empty cells left of the other region, around the ring.
  const before = count(fill.bits);
  assert.equal(fillArea(state, 2, 0, 0), 12 * 16 - 81);
  assert.equal(count(fill.bits) - before, 12 * 16 - 81);
  for (let y = 0; y < 16; y++) for (let x = 12; x < 16; x++) assert.equal(fill.bits[y * mw + x], 0);
  // On the other region: its own area, which is in no other shown region.
  const third = addRegion(state);
  assert.equal(fillArea(state, 3, 14, 3), 4 * 16);
  // A region hidden from view does not bound the fill (the user cannot see it).
  third.bits.fill(0);
  fill.bits.fill(0);
  ring.viewHidden = true;
  assert.equal(fillArea(state, 3, 0, 0), 12 * 16);
  assert.equal(fillArea(state, 3, 99, 0), 0); // off the canvas
});

test("a region's opacity is saved only when it is not 1; a drawing saved without it stays byte-identical", () => {
  const state = emptyState(64, 64);
  addRegion(state);
  addRegion(state);
  const plain = serializeState(state);
  assert.ok(!plain.includes("opacity"));
  assert.equal(serializeState(parseState(plain, 64, 64)), plain);
  state.regions[1].opacity = 0.35;
  const faded = parseState(serializeState(state), 64, 64);
  assert.deepEqual(faded.regions.map((r) => r.opacity), [undefined, 0.35]);
  state.regions[1].opacity = 1;
  assert.equal(serializeState(state), plain);
  const raw = JSON.parse(plain);
  raw.regions[0].opacity = 3;
  const bad = parseState(JSON.stringify(raw), 64, 64).regions[0];
  assert.equal(bad.opacity, undefined);
  assert.match(bad.problem, /opacity 3 was not a number between 0 and 1/);
});
