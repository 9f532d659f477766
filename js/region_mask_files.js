// Region masks to and from pictures: a picture read as a new region, a region saved as a PNG download.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this module only declares functions.
import { addRegion, bitsFromPixels, fileSlug, maskDims, MAX_REGIONS, regionPixels, rgbaPng } from "./region_state.js";
import { el } from "./region_dom.js";

// A mask picture file chosen with "Import…" added as a new region, with an undo offer.
export async function importMaskFile(editor, file) {
  if (!roomForImport(editor)) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    editor.message = `${file.name} could not be read as an image.`;
    editor.render();
    return;
  }
  addRegionFromBitmap(editor, bitmap);
  editor.notes.offerUndo(`Imported ${file.name} as ${editor.current().name}.`);
  editor.commit({ structural: true });
}

// Whether the editor can take one more region (else it says why).
export function roomForImport(editor) {
  if (editor.unreadable) return false;
  if (editor.state.regions.length < MAX_REGIONS) return true;
  editor.message = `A canvas holds at most ${MAX_REGIONS} regions.`;
  editor.render();
  return false;
}

// Adds the region (not yet committed) and selects it.
export function addRegionFromBitmap(editor, bitmap) {
  const region = regionFromBitmap(editor.state, bitmap);
  editor.selected = editor.state.regions.length - 1;
  return region;
}

// A new region (added to `state`, returned) from a mask picture stretched over the canvas (masks are made at the
// image's size): 1 - alpha where the picture has transparency, brightness otherwise; a cell is inside where the average
// is at least one half. The bitmap is closed.
export function regionFromBitmap(state, bitmap) {
  const { mw, mh } = maskDims(state.width, state.height);
  const off = document.createElement("canvas");
  off.width = mw;
  off.height = mh;
  const ctx = off.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, mw, mh);
  bitmap.close?.();
  const region = addRegion(state);
  region.bits = bitsFromPixels(ctx.getImageData(0, 0, mw, mh).data, mw * mh);
  return region;
}

// Region i's mask downloaded as a PNG at the canvas's width x height, soft where feathered: the same picture as that
// region's mask in the `masks` output. White inside and transparent inside (alpha = 1 - mask), so Load Image (as Mask)
// reads the region with its default channel "alpha" (mask = 1 - alpha) and with "red", Load Image's MASK is the
// region, and brightness-reading tools see white on black.
export async function downloadRegionMask(state, i) {
  const r = state.regions[i];
  if (!r) return;
  const { width, height } = state;
  const grey = regionPixels(r, width, height);
  const rgba = new Uint8Array(4 * grey.length);
  for (let p = 0; p < grey.length; p++) {
    rgba[4 * p] = rgba[4 * p + 1] = rgba[4 * p + 2] = grey[p];
    rgba[4 * p + 3] = 255 - grey[p];
  }
  const png = await rgbaPng(rgba, width, height, deflate);
  const slug = fileSlug(r.prompt);
  const name = `region_${i + 1}${slug ? `_${slug}` : ""}_mask.png`;
  const link = el("a", "", { href: URL.createObjectURL(new Blob([png], { type: "image/png" })), download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The download reads the object URL after the click returns; freed a while later.
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
