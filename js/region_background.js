// The Region Canvas background chosen in the editor: a picture from a file or dropped on the drawing (stored on the
// server and remembered in the node like the background of a run), and "Match width/height to it", which asks before
// it crops the drawing.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares functions.
import { CELL, maskDims, safeViewRef } from "./region_state.js";

// Stored in the input folder and remembered in the node's properties like the background of a run, so it is saved
// with the workflow; a later run with an image on `background` replaces it.
export async function loadBackgroundFile(editor, file) {
  if (!file?.type?.startsWith("image/")) {
    editor.message = `${file?.name ?? "That"} is not a picture.`;
    editor.render();
    return;
  }
  let ref;
  try {
    ref = safeViewRef(await editor.host.uploadBackground(file, backgroundFileName(file)));
    if (!ref) throw new Error("the server stored it under a name the editor does not show");
  } catch (err) {
    editor.message = `${file.name} could not be stored as the background (${err.message}).`;
    editor.render();
    return;
  }
  editor.node.properties = editor.node.properties ?? {};
  editor.node.properties.ja_background = ref;
  editor.message = "";
  editor.setBackground(ref);
  editor.host.graphChanged();
}

// Shows the picture `ref` (on the server) under the drawing; a picture no longer there says how to bring it back.
export function showBackground(editor, ref) {
  ref = safeViewRef(ref);
  if (!ref) return;
  editor.backgroundRef = ref;
  const img = new Image();
  img.onload = () => {
    editor.background = img;
    editor.backgroundNote = "";
    editor.render();
  };
  img.onerror = () => {
    editor.background = null;
    editor.backgroundNote = "The background of the last run is no longer on the server; run the workflow to show it again.";
    editor.render();
  };
  img.src = editor.host.viewURL(ref);
}

// Gives the canvas the background's shape; the drawing follows the picture. Where that would crop the drawing (parts
// drawn on the letterbox bands), the editor's note says so and waits for `confirmed` ("Crop and resize").
export function matchBackground(editor, confirmed) {
  const img = editor.background;
  if (!img) return;
  const [width, height] = editor.widgetSize();
  const long = Math.max(width, height);
  const aspect = img.naturalWidth / img.naturalHeight;
  const round16 = (v) => Math.max(16, Math.min(8192, Math.round(v / 16) * 16));
  const [w, h] = aspect >= 1 ? [round16(long), round16(long / aspect)] : [round16(long * aspect), round16(long)];
  // The drawing was made over the letterboxed picture: the picture's rectangle becomes the new canvas.
  const s = Math.min(width / img.naturalWidth, height / img.naturalHeight);
  const [pw, ph] = [img.naturalWidth * s, img.naturalHeight * s];
  const source = [(width - pw) / 2, (height - ph) / 2, pw, ph];
  const lost = cellsOutside(editor.state, source);
  if (lost && !confirmed) {
    editor.cropWarning = `Matching the background's shape crops the drawing: ${lost} of its 8 px cells lie outside the picture `
      + "and would be lost.";
    editor.render();
    return;
  }
  editor.cropWarning = "";
  for (const [name, v] of [["width", w], ["height", h]]) {
    const widget = editor.node.widgets?.find((x) => x.name === name);
    if (widget) widget.value = v;
  }
  editor.resize(source);
}

// How many drawn cells of all regions have their centre outside the image-pixel rectangle [x, y, w, h].
function cellsOutside(state, [x, y, w, h]) {
  const { mw, mh } = maskDims(state.width, state.height);
  let lost = 0;
  for (let cy = 0; cy < mh; cy++) {
    const py = (cy + 0.5) * CELL;
    const rowOut = py < y || py > y + h;
    for (let cx = 0; cx < mw; cx++) {
      const px = (cx + 0.5) * CELL;
      if (!rowOut && px >= x && px <= x + w) continue;
      for (const r of state.regions) lost += r.bits[cy * mw + cx];
    }
  }
  return lost;
}

// A file name of its own for an uploaded background (no two uploads share one): letters and digits of the original
// name, a time and random stamp, the picture's extension.
function backgroundFileName(file) {
  const ext = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif" }[file.type] ?? "png";
  const stem = String(file.name ?? "").replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 40) || "picture";
  return `background_${stem}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.${ext}`;
}
