// Region Canvas widget: draw region masks and prompts inside the JointAttentionRegionCanvas node.
// The widget value is one JSON string (see region_state.js); everything the user types is set
// through textContent / value, never as HTML.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  addRegion, bitsFromPixels, CELL, featherMask, fileSlug, rgbaPng, History, maskDims, MAX_FEATHER, MAX_PROMPT, MAX_REGIONS, paintRect,
  paintStroke, parseState, regionAt, regionPixels, resizeState, safeViewRef, serializeState, snap, stateProblems, TOKEN_GRID,
} from "./region_state.js";

const WIDGET = "JA_REGION_CANVAS";
const MIN_NODE = [420, 560]; // the default size too
const NOTICE_MS = 8000;
const ZOOM_STEP_LOG = Math.log(1.15); // one wheel event, one + or - press
const MIN_ZOOM = 0.25;
const MAX_ZOOM = 32;
// The tool, brush size, snapping and overlay a new editor starts with: the last ones chosen in this browser.
const PREFS_KEY = "joint_attention.region_canvas.prefs"; // an undo offer stays this long (longer while the pointer is on it); Ctrl+Z still undoes after
const NODE_TYPE = "JointAttentionRegionCanvas";
const HELP = [
  ["V", "select: click a region on the canvas (Alt+click with any tool, or a click without dragging with Rect)"],
  ["R", "rectangle"], ["B", "brush"], ["E", "eraser (tick “all” to erase every region)"],
  ["[ / ]", "brush size"], ["G", "snap rectangles and brush to the 16 px token grid"],
  ["Ctrl+Z", "undo"], ["Ctrl+Y / Ctrl+Shift+Z", "redo"], ["Del", "clear the selected region (undo offered)"],
  ["F / double-click", "full-window editor: wheel, + and - zoom (the level shows beside them), middle button or "
    + "Space+drag pans, 0 fits, Esc closes"],
];

// UI choices per node (tool, brush size, ...): they outlive the editor when ComfyUI rebuilds the node on a graph
// undo, and are not part of the saved value.
const uiPrefs = new Map();
// What a removed editor leaves for the editor ComfyUI builds in its place on a graph undo (same node id): its undo
// history. The restored value is a snapshot of that history, so undo and redo go on from it. The background is not
// handed over: loading another workflow (or the page restoring the last one) also rebuilds nodes under the same ids,
// and a background from another workflow would be shown as this one's; the node's properties and its next run
// (cached or not) bring the background back.
const leftBehind = new Map();
// Where a removed editor was mounted, by node id: with Vue node rendering a graph undo rebuilds the node under the
// same id and the node's component keeps its (now empty) widget container instead of mounting the new element.
const orphanSlots = new Map();

// Vue node rendering sizes nodes to their content; the classic canvas gives DOM widgets a fixed height.
function contentSizedNodes() {
  return app.ui?.settings?.getSettingValue?.("Comfy.VueNodes.Enabled") === true;
}

function loadStylesheet() {
  const href = new URL("./region_canvas.css", import.meta.url).href;
  if (!document.querySelector(`link[href="${href}"]`)) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }
}

function el(tag, className, props = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  Object.assign(node, props);
  return node;
}

function labelled(text, input, className = "ja-rc-field") {
  const label = el("label", className);
  label.append(el("span", "", { textContent: text }), input);
  return label;
}

export class RegionCanvasEditor {
  constructor(node, value) {
    this.node = node;
    this.#usePrefs(uiPrefs.get(node.id) ?? storedPrefs());
    this.selected = 0;
    this.unreadable = ""; // why the saved value could not be read at all; it is kept untouched meanwhile
    this.message = "";
    this.drag = null;
    this.hover = null;
    this.frame = 0;
    this.background = null;
    this.backgroundNote = "";
    this.listeners = [];
    this.overlays = new WeakMap();
    this.view = { zoom: 1, x: 0, y: 0 };
    this.full = null;
    this.spaceDown = false;
    this.history = new History();
    this.#load(value);
    this.#build();
    this.render(true);
    this.#adopt(40);
  }

  // -- value -----------------------------------------------------------------
  #size() {
    const get = (name, fallback) => Number(this.node.widgets?.find((w) => w.name === name)?.value ?? fallback);
    return [get("width", 1024), get("height", 1024)];
  }

  #load(value) {
    const [width, height] = this.#size();
    try {
      this.state = parseState(value, width, height);
      this.unreadable = "";
      this.value = serializeState(this.state);
    } catch (err) {
      // Nothing is replaced: the saved text stays the widget's value until the user chooses to start anew.
      this.unreadable = `${err.message}. The saved drawing is kept as it is (the backend will report it);`
        + " start a new drawing to replace it.";
      this.state = parseState("", width, height);
      this.value = typeof value === "string" ? value : JSON.stringify(value);
    }
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    // A value the history holds (ComfyUI's undo stepping through the drawing) moves along it, also the history the
    // removed editor of this node left (frontends set the value before or after the node's onConfigure); any other
    // value starts anew.
    if (this.history?.moveTo(this.value)) return;
    const previous = this.node.id === undefined ? null : leftBehind.get(this.#nodeKey());
    if (previous?.history?.moveTo(this.value)) {
      this.history = previous.history;
      previous.history = null;
      return;
    }
    this.history = new History();
    this.history.record(this.value);
  }

  getValue() {
    return this.value;
  }

  setValue(value) {
    if (value === this.value) return;
    this.#load(value);
    this.#clearNotice(); // an offer to undo belongs to the drawing it was made for
    this.render(true);
  }

  // Every edit is in the widget value at once (a queued prompt or a saved workflow sees it); `record` also puts it in
  // the editor's undo history and ComfyUI's change history; `structural` rebuilds the region list.
  commit({ structural = false, record = true } = {}) {
    this.value = serializeState(this.state);
    if (record) {
      this.history.record(this.value);
      this.#graphChanged();
    }
    this.node.setDirtyCanvas?.(true, true);
    this.render(structural);
  }

  // ComfyUI's change tracker takes a snapshot of the graph when LiteGraph says a change ended.
  #graphChanged() {
    const canvas = app.canvas;
    if (!canvas?.emitBeforeChange || !canvas?.emitAfterChange) return;
    canvas.emitBeforeChange();
    canvas.emitAfterChange();
  }

  #usePrefs(prefs) {
    this.tool = ["select", "rect", "brush", "eraser"].includes(prefs.tool) ? prefs.tool : "rect";
    this.brush = Number.isInteger(prefs.brush) && prefs.brush >= 8 && prefs.brush <= 256 ? prefs.brush : 48;
    this.snapToGrid = typeof prefs.snapToGrid === "boolean" ? prefs.snapToGrid : true;
    this.opacity = Number.isFinite(prefs.opacity) && prefs.opacity >= 0.1 && prefs.opacity <= 0.9 ? prefs.opacity : 0.45;
    this.eraseAll = prefs.eraseAll === true;
  }

  // The node id: a graph undo clears the graph (its id with it) and configures it again with the same node ids. A
  // history is taken only when it holds the restored value, so a node of another workflow with the same id never
  // takes one that is not about its drawing.
  #nodeKey() {
    return String(this.node.id);
  }

  // The node has its id only once the graph configures it (a graph undo rebuilds it that way): take what the
  // previous editor of this node left (choices, undo history), and show it.
  adoptPrevious() {
    const previous = leftBehind.get(this.#nodeKey());
    leftBehind.delete(this.#nodeKey());
    if (previous?.history?.moveTo(this.value)) this.history = previous.history;
    const prefs = uiPrefs.get(this.node.id);
    if (!prefs) return;
    this.#usePrefs(prefs);
    this.sizeInput.value = this.brush;
    this.snapBox.checked = this.snapToGrid;
    this.opacityInput.value = Math.round(this.opacity * 100);
    this.eraseAllBox.checked = this.eraseAll;
    this.render();
  }

  #savePrefs() {
    const prefs = { tool: this.tool, brush: this.brush, snapToGrid: this.snapToGrid, opacity: this.opacity,
      eraseAll: this.eraseAll };
    uiPrefs.set(this.node.id, prefs);
    try {
      localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
    } catch {
      // Storage off or full: the choices last for this page only.
    }
  }

  resize(source = null) {
    const [width, height] = this.#size();
    if (width === this.state.width && height === this.state.height) return;
    const before = `${this.state.width}×${this.state.height}`;
    const drawn = this.state.regions.some((r) => r.bits.some((b) => b));
    resizeState(this.state, width, height, source);
    if (drawn) this.#offerUndo(source ? `Canvas ${before} → ${width}×${height}: the canvas now has the background's shape; the drawing`
      + " follows the picture." : `Canvas ${before} → ${width}×${height}: the drawing was scaled to fit, not stretched.`);
    this.commit({ structural: true });
  }

  // -- DOM -------------------------------------------------------------------
  #on(target, type, handler, options) {
    target.addEventListener(type, handler, options);
    this.listeners.push([target, type, handler, options]);
  }

  #button(label, title, fn, className = "ja-rc-action") {
    const b = el("button", className, { type: "button", textContent: label, title });
    this.#on(b, "click", fn);
    return b;
  }

  #build() {
    this.root = el("div", "ja-rc");
    // Keyboard focus of the drawing: a read-only text field, so the frontend treats the canvas like the text
    // inputs that have their own undo (its graph undo leaves them alone) and shortcuts typed here stay here.
    this.keys = el("textarea", "ja-rc-keys", { readOnly: true, tabIndex: 0, rows: 1 });
    this.keys.setAttribute("aria-label", "Region canvas (keyboard shortcuts: see ?)");
    const bar = el("div", "ja-rc-toolbar");
    this.toolButtons = {};
    for (const [tool, label, key] of [["select", "⬚ Select", "V"], ["rect", "▭ Rect", "R"], ["brush", "✎ Brush", "B"],
      ["eraser", "⌫ Eraser", "E"]]) {
      const b = this.#button(label, `${label.slice(2)} (${key})`, () => this.setTool(tool), "ja-rc-tool");
      b.dataset.tool = tool;
      this.toolButtons[tool] = b;
      bar.appendChild(b);
    }
    this.eraseAllBox = el("input", "ja-rc-erase-all", { type: "checkbox", checked: this.eraseAll,
      title: "The eraser removes every region under it, not only the selected one" });
    this.#on(this.eraseAllBox, "change", () => { this.eraseAll = this.eraseAllBox.checked; this.#savePrefs(); });
    this.sizeInput = el("input", "ja-rc-size", { type: "range", min: 8, max: 256, step: 8, value: this.brush,
      title: "Brush size in image pixels ([ and ])" });
    this.sizeOut = el("output", "ja-rc-size-value");
    this.#on(this.sizeInput, "input", () => this.setBrush(Number(this.sizeInput.value)));
    this.snapBox = el("input", "ja-rc-snap-box", { type: "checkbox", checked: this.snapToGrid,
      title: "Snap rectangles and the brush to the 16 px token grid (G)" });
    this.#on(this.snapBox, "change", () => { this.snapToGrid = this.snapBox.checked; this.#savePrefs(); this.render(); });
    this.opacityInput = el("input", "ja-rc-opacity", { type: "range", min: 10, max: 90, step: 5,
      value: Math.round(this.opacity * 100), title: "How strongly the regions cover the background" });
    this.opacityOut = el("output", "ja-rc-opacity-value");
    this.#on(this.opacityInput, "input", () => {
      this.opacity = Number(this.opacityInput.value) / 100;
      this.#savePrefs();
      this.render();
    });
    this.importFile = el("input", "ja-rc-import-file", { type: "file", accept: "image/*", hidden: true });
    this.#on(this.importFile, "change", () => {
      const file = this.importFile.files?.[0];
      this.importFile.value = "";
      if (file) this.importImage(file);
    });
    this.importButton = this.#button("Import…", "Add a region from a mask image, read as Load Image reads a mask: transparent = inside where it has transparency, white = inside otherwise",
      () => this.importFile.click());
    this.fullButton = this.#button("⤢", "Full-window editor (F, or double-click the canvas)", () => (this.full ? this.closeFull() : this.openFull()));
    this.helpButton = this.#button("?", "Show the shortcuts", () => { this.help.hidden = !this.help.hidden; });
    // The zoom of the full-window editor: out, the level (click: fit), in.
    this.zoomBox = el("span", "ja-rc-zoom");
    this.zoomOut = el("button", "ja-rc-small ja-rc-zoom-value", { type: "button", title: "Fit the picture to the window (0)" });
    this.#on(this.zoomOut, "click", () => this.zoomBy(0));
    this.zoomBox.append(this.#button("−", "Zoom out (-)", () => this.zoomBy(-1), "ja-rc-small"), this.zoomOut,
      this.#button("+", "Zoom in (+)", () => this.zoomBy(1), "ja-rc-small"));
    const size = el("label", "ja-rc-check ja-rc-size-field", { title: this.sizeInput.title });
    size.append(el("span", "", { textContent: "size" }), this.sizeInput, this.sizeOut);
    bar.append(labelled("erase all", this.eraseAllBox, "ja-rc-check"), size, labelled("snap", this.snapBox, "ja-rc-check"),
      labelled("overlay", this.opacityInput, "ja-rc-check"), this.opacityOut,
      this.#button("Fill", "Fill the selected region (Undo is offered)", () => {
        this.fill(1);
        this.#offerUndo(`Filled region ${this.selected + 1}.`);
      }),
      this.#button("Clear", "Clear the selected region (Del); Undo is offered", () => this.clearSelected()),
      this.#button("↶", "Undo (Ctrl+Z)", () => this.undo()), this.#button("↷", "Redo (Ctrl+Y)", () => this.redo()),
      this.importButton, this.importFile, this.zoomBox, this.fullButton, this.helpButton);
    this.help = el("div", "ja-rc-help", { hidden: true });
    for (const [key, text] of HELP) {
      const row = el("div");
      row.append(el("kbd", "", { textContent: key }), document.createTextNode(` ${text}`));
      this.help.appendChild(row);
    }
    this.errorBox = el("div", "ja-rc-error");
    this.errorText = el("span");
    this.errorBox.append(this.errorText, this.#button("Start a new drawing", "Replace the unreadable value with an empty drawing",
      () => this.startOver()));
    this.bgBox = el("div", "ja-rc-note ja-rc-bg-note");
    this.bgText = el("span");
    this.matchButton = this.#button("Match width/height to it", "Set the canvas width and height to the background's shape",
      () => this.matchBackground());
    this.bgBox.append(this.bgText, this.matchButton, this.#button("✕", "Dismiss", () => {
      this.bgDismissed = this.bgText.textContent;
      this.render();
    }, "ja-rc-small"));
    // Masks that reached the `import_masks` input in the last run, offered as regions (one by one or all).
    this.maskBox = el("div", "ja-rc-note ja-rc-mask-offer", { hidden: true });
    this.maskText = el("span");
    this.maskThumbs = el("span", "ja-rc-mask-thumbs");
    this.maskAllButton = this.#button("Import all", "Add every mask not imported yet as a new region (Undo is offered)",
      () => this.importOffered());
    this.maskBox.append(this.maskText, this.maskThumbs, this.maskAllButton,
      this.#button("✕", "Dismiss (the same masks are not offered again)", () => this.dismissOffer(), "ja-rc-small"));
    this.notice = el("div", "ja-rc-note ja-rc-notice", { hidden: true });
    this.noticeText = el("span");
    this.notice.append(this.noticeText, this.#button("Undo", "Undo this change", () => { this.undo(); this.#clearNotice(); }),
      this.#button("✕", "Dismiss", () => this.#clearNotice(), "ja-rc-small"));
    this.stage = el("div", "ja-rc-stage");
    this.canvas = el("canvas", "ja-rc-canvas");
    this.ctx = this.canvas.getContext("2d");
    // Notes float over the drawing's lower edge instead of taking its height; the undo offer goes by itself.
    this.notes = el("div", "ja-rc-notes");
    this.notes.append(this.bgBox, this.maskBox, this.notice);
    this.#on(this.notice, "pointerenter", () => clearTimeout(this.noticeTimer));
    this.#on(this.notice, "pointerleave", () => this.#dismissNoticeLater());
    this.stage.append(this.canvas, this.keys, this.notes);
    this.status = el("div", "ja-rc-status");
    this.list = el("div", "ja-rc-list");
    this.addButton = this.#button("+ Add region", "Add a region (it becomes the selected one)", () => this.addRegion(), "ja-rc-add");
    // "+ Add region" right under the drawing, before the list that scrolls: always inside the node.
    const footer = el("div", "ja-rc-footer");
    footer.append(this.status, this.addButton);
    this.root.append(bar, this.help, this.errorBox, this.stage, footer, this.list);
    this.#on(this.canvas, "pointerdown", (e) => this.#pointerDown(e));
    this.#on(this.canvas, "pointermove", (e) => this.#pointerMove(e));
    this.#on(this.canvas, "pointerup", (e) => this.#pointerUp(e));
    this.#on(this.canvas, "pointercancel", (e) => this.#pointerUp(e));
    this.#on(this.canvas, "pointerleave", () => { this.hover = null; this.render(); });
    this.#on(this.canvas, "dblclick", (e) => { e.preventDefault(); e.stopPropagation(); if (!this.full) this.openFull(); });
    this.#on(this.canvas, "wheel", (e) => this.#wheel(e), { passive: false });
    // Pointer presses on the editor's controls are the editor's: the node around it must not start a node drag
    // (Vue nodes drag from anywhere in their body).
    this.#on(this.root, "pointerdown", (e) => {
      if (e.target instanceof HTMLButtonElement || e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement
        || e.target instanceof HTMLCanvasElement || e.target.closest?.(".ja-rc-region")) e.stopPropagation();
    });
    this.#on(this.root, "keydown", (e) => this.#key(e));
    // The keyboard stays with the editor: a click on anything but a text field gives it back to the drawing. Left on
    // the page, the editor's keys stopped working and ComfyUI acted on them (Del deleted the selected node, Ctrl+Z
    // ran the graph's undo); ComfyUI leaves keys typed into text fields alone, and the drawing's focus is one.
    this.#on(this.root, "click", (e) => { if (!takesText(e.target)) this.focusDrawing(); });
    this.#on(this.root, "keyup", (e) => { if (e.key === " ") this.spaceDown = false; });
    this.resizeObserver = new ResizeObserver(() => this.render());
    this.resizeObserver.observe(this.stage);
  }

  // With Vue node rendering, a node rebuilt under the same id (graph undo) keeps the old editor's container and
  // never mounts the new element: take the container the old editor left empty.
  #adopt(tries) {
    if (this.destroyed || this.root.isConnected) return;
    const slot = orphanSlots.get(this.node.id);
    if (slot?.isConnected && !slot.firstElementChild) {
      orphanSlots.delete(this.node.id);
      slot.appendChild(this.root);
      this.render(true);
      return;
    }
    if (tries > 0) setTimeout(() => this.#adopt(tries - 1), 100);
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.noticeTimer);
    this.closeFull();
    cancelAnimationFrame(this.frame);
    this.resizeObserver?.disconnect();
    for (const [target, type, handler, options] of this.listeners) target.removeEventListener(type, handler, options);
    this.listeners = [];
    const slot = this.root.parentElement;
    if (slot && this.node.id !== undefined) orphanSlots.set(this.node.id, slot);
    if (this.node.id !== undefined) {
      leftBehind.delete(this.#nodeKey());
      leftBehind.set(this.#nodeKey(), { history: this.history });
      // Only the last few removed editors matter (a graph undo rebuilds its nodes at once).
      while (leftBehind.size > 32) leftBehind.delete(leftBehind.keys().next().value);
    }
    this.root.remove();
  }

  // -- editing -----------------------------------------------------------------
  setTool(tool) {
    this.tool = tool;
    this.#savePrefs();
    this.render();
  }

  setBrush(size) {
    this.brush = Math.max(8, Math.min(256, Math.round(size / 8) * 8));
    this.sizeInput.value = this.brush;
    this.#savePrefs();
    this.render();
  }

  current() {
    if (!this.state.regions.length) {
      addRegion(this.state);
      this.selected = 0;
      this.#renderList();
    }
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    return this.state.regions[this.selected];
  }

  select(i) {
    if (i < 0 || i >= this.state.regions.length) return;
    this.selected = i;
    [...this.list.children].forEach((row, j) => row.classList.toggle("selected", j === i));
    this.render();
  }

  addRegion() {
    if (this.state.regions.length >= MAX_REGIONS) {
      this.message = `A canvas holds at most ${MAX_REGIONS} regions.`;
      this.render();
      return;
    }
    addRegion(this.state);
    this.selected = this.state.regions.length - 1;
    this.commit({ structural: true });
  }

  startOver() {
    const [width, height] = this.#size();
    this.unreadable = "";
    this.state = parseState("", width, height);
    this.commit({ structural: true });
  }

  #touch(r) {
    r.rev = (r.rev ?? 0) + 1;
  }

  fill(value) {
    const r = this.current();
    r.bits.fill(value);
    this.#touch(r);
    this.commit();
  }

  clearSelected() {
    if (!this.state.regions.length) return;
    const i = this.selected;
    this.fill(0);
    this.#offerUndo(`Cleared region ${i + 1}.`);
  }

  #offerUndo(text) {
    this.noticeText.textContent = text;
    this.notice.hidden = false;
    this.#dismissNoticeLater();
  }

  #dismissNoticeLater() {
    clearTimeout(this.noticeTimer);
    if (!this.notice.hidden) this.noticeTimer = setTimeout(() => this.#clearNotice(), NOTICE_MS);
  }

  #clearNotice() {
    clearTimeout(this.noticeTimer);
    this.notice.hidden = true;
  }

  undo() {
    const snapshot = this.history.undo();
    if (snapshot !== null) this.#restore(snapshot);
  }

  redo() {
    const snapshot = this.history.redo();
    if (snapshot !== null) this.#restore(snapshot);
  }

  #restore(snapshot) {
    const [width, height] = this.#size();
    this.state = parseState(snapshot, width, height);
    this.value = snapshot;
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    this.#graphChanged();
    this.node.setDirtyCanvas?.(true, true);
    this.render(true);
  }

  // A mask image becomes a new region: stretched over the canvas (masks are made at the image's size), alpha where the
  // picture has transparency, brightness otherwise; a cell is inside where the average is at least one half.
  async importImage(file) {
    if (!this.#roomForImport()) return;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (err) {
      this.message = `${file.name} could not be read as an image.`;
      this.render();
      return;
    }
    this.#regionFromBitmap(bitmap);
    this.#offerUndo(`Imported ${file.name} as region ${this.selected + 1}.`);
    this.commit({ structural: true });
  }

  #roomForImport() {
    if (this.unreadable) return false;
    if (this.state.regions.length < MAX_REGIONS) return true;
    this.message = `A canvas holds at most ${MAX_REGIONS} regions.`;
    this.render();
    return false;
  }

  // Adds the region (not yet committed) and selects it.
  #regionFromBitmap(bitmap) {
    const { mw, mh } = maskDims(this.state.width, this.state.height);
    const off = document.createElement("canvas");
    off.width = mw;
    off.height = mh;
    const ctx = off.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, mw, mh);
    bitmap.close?.();
    const region = addRegion(this.state);
    region.bits = bitsFromPixels(ctx.getImageData(0, 0, mw, mh).data, mw * mh);
    this.selected = this.state.regions.length - 1;
    return region;
  }

  // -- masks from the `import_masks` input --------------------------------------------
  // `offer`: {batch, total, images} from the node's last run. A mask counts as imported while its region is in the
  // drawing (an Undo offers it again); a batch all imported or dismissed is remembered in the node's properties (saved
  // with the workflow) and not offered again when the node runs again.
  offerMasks(offer) {
    const images = (Array.isArray(offer?.images) ? offer.images : []).map(safeViewRef);
    const batch = typeof offer?.batch === "string" ? offer.batch.slice(0, 64) : "";
    if (!images.length || images.some((ref) => !ref) || !batch) return;
    if (this.node.properties?.ja_masks_done === batch || this.offer?.batch === batch) return;
    this.offer = { batch, total: Math.max(images.length, Number(offer.total) || 0), images, regionIds: new Map(), dismissed: false };
    this.maskThumbs.replaceChildren();
    images.forEach((ref, k) => {
      const thumb = el("button", "ja-rc-mask-thumb", { type: "button", title: `Import mask ${k + 1} as a new region` });
      thumb.dataset.index = String(k);
      const img = el("img", "", { alt: `mask ${k + 1}`, src: viewURL(ref) });
      thumb.append(img, el("span", "", { textContent: String(k + 1) }));
      this.#listen(thumb, "click", () => this.importOffered([k]));
      this.maskThumbs.appendChild(thumb);
    });
    this.render();
  }

  async importOffered(which = null) {
    const offer = this.offer;
    if (!offer) return;
    const wanted = (which ?? offer.images.map((_, k) => k)).filter((k) => !this.#imported(k));
    const added = [];
    for (const k of wanted) {
      if (!this.#roomForImport()) break;
      let bitmap;
      try {
        const response = await fetch(viewURL(offer.images[k]));
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        bitmap = await createImageBitmap(await response.blob());
      } catch (err) {
        this.message = `Mask ${k + 1} is no longer on the server; run the workflow again to offer it.`;
        this.render();
        break;
      }
      if (this.offer !== offer) return; // a newer run replaced the offer meanwhile
      offer.regionIds.set(k, this.#regionFromBitmap(bitmap).id);
      added.push(this.selected + 1);
    }
    if (!added.length) return;
    const list = added.length === 1 ? `region ${added[0]}` : `regions ${added[0]}-${added[added.length - 1]}`;
    this.#offerUndo(`Imported ${added.length === 1 ? "a mask" : `${added.length} masks`} from import_masks as ${list}.`);
    this.commit({ structural: true });
  }

  dismissOffer() {
    if (!this.offer) return;
    this.offer.dismissed = true;
    this.render();
  }

  #imported(k) {
    const id = this.offer?.regionIds.get(k);
    return id !== undefined && this.state.regions.some((r) => r.id === id);
  }

  #renderMaskOffer() {
    const offer = this.offer;
    const n = offer?.images.length ?? 0;
    const used = offer ? offer.images.filter((_, k) => this.#imported(k)).length : 0;
    const open = !!offer && !offer.dismissed && used < n;
    this.maskBox.hidden = !open;
    if (offer && !open && this.node.properties?.ja_masks_done !== offer.batch) {
      this.node.properties = this.node.properties ?? {};
      this.node.properties.ja_masks_done = offer.batch;
    }
    if (!open) return;
    const more = offer.total > n ? ` (the first ${n} of ${offer.total})` : "";
    this.maskText.textContent = `${n === 1 ? "A mask" : `${n} masks`} on import_masks${more}: click one to add it as a region.`;
    for (const thumb of this.maskThumbs.children) {
      const done = this.#imported(Number(thumb.dataset.index));
      thumb.disabled = done;
      thumb.classList.toggle("ja-rc-used", done);
    }
    this.maskAllButton.textContent = used ? `Import the other ${n - used}` : `Import all ${n}`;
  }

  // -- export: a region's mask as a PNG --------------------------------------------------
  // At the node's width x height, soft where feathered: the same picture as that region's mask in the `masks` output.
  // White inside and transparent inside (alpha = 1 - mask), so Load Image (as Mask) reads the region with its default
  // channel "alpha" (mask = 1 - alpha) and with "red", Load Image's MASK is the region, and brightness-reading tools
  // see white on black.
  async exportRegion(i) {
    const r = this.state.regions[i];
    if (!r) return;
    const { width, height } = this.state;
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
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // -- view: image pixels <-> canvas CSS pixels ----------------------------------
  #layout() {
    const cw = this.canvas.clientWidth || 1;
    const ch = this.canvas.clientHeight || 1;
    const fit = Math.min(cw / this.state.width, ch / this.state.height);
    const scale = fit * this.view.zoom;
    return { cw, ch, scale, tx: (cw - this.state.width * scale) / 2 + this.view.x, ty: (ch - this.state.height * scale) / 2 + this.view.y };
  }

  #toImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    const { scale, tx, ty, cw } = this.#layout();
    // The node can be drawn scaled (graph zoom): client pixels -> the canvas's own CSS pixels first.
    const k = cw / (rect.width || 1);
    return [((e.clientX - rect.left) * k - tx) / scale, ((e.clientY - rect.top) * k - ty) / scale];
  }

  #wheel(e) {
    if (!this.full) return; // inside the node the wheel belongs to the graph
    e.preventDefault();
    e.stopPropagation();
    const rect = this.canvas.getBoundingClientRect();
    const before = this.#layout();
    const px = e.clientX - rect.left;
    const py = e.clientY - rect.top;
    const ix = (px - before.tx) / before.scale;
    const iy = (py - before.ty) / before.scale;
    // At most 1.15x per wheel event whatever the device reports (a mouse's line steps came as 1.4x).
    const step = Math.max(-ZOOM_STEP_LOG, Math.min(ZOOM_STEP_LOG, -e.deltaY * 0.0015));
    this.view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, this.view.zoom * Math.exp(step)));
    const after = this.#layout();
    // Keep the image point under the pointer where it was.
    this.view.x += px - (after.tx + ix * after.scale);
    this.view.y += py - (after.ty + iy * after.scale);
    this.render();
  }

  #pointerDown(e) {
    if (this.unreadable) return;
    const pan = this.full && (e.button === 1 || (e.button === 0 && this.spaceDown));
    if (e.button !== 0 && !pan) return;
    e.preventDefault();
    e.stopPropagation();
    this.canvas.setPointerCapture(e.pointerId);
    this.keys.focus({ preventScroll: true });
    if (pan) {
      this.drag = { pan: true, x: e.clientX, y: e.clientY };
      return;
    }
    const p = this.#toImage(e);
    if (this.tool === "select" || e.altKey) {
      const i = regionAt(this.state, p[0], p[1]);
      if (i >= 0) this.select(i);
      return;
    }
    this.drag = { start: p, last: p, points: [p], x: e.clientX, y: e.clientY, moved: false };
    if (this.tool !== "rect") this.#stroke([p]);
    this.render();
  }

  #pointerMove(e) {
    const p = this.#toImage(e);
    this.hover = p;
    if (!this.drag) {
      if (this.tool === "brush" || this.tool === "eraser") this.render();
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    if (this.drag.pan) {
      this.view.x += e.clientX - this.drag.x;
      this.view.y += e.clientY - this.drag.y;
      this.drag.x = e.clientX;
      this.drag.y = e.clientY;
      this.render();
      return;
    }
    if (Math.hypot(e.clientX - this.drag.x, e.clientY - this.drag.y) > 3) this.drag.moved = true;
    if (this.tool === "rect") {
      this.drag.last = p;
    } else {
      this.#stroke([this.drag.points[this.drag.points.length - 1], p]);
      this.drag.points.push(p);
    }
    this.render();
  }

  #pointerUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    const drag = this.drag;
    this.drag = null;
    if (drag.pan) return;
    if (this.tool === "rect") {
      if (!drag.moved) {
        // A click without dragging selects the region under the pointer.
        const i = regionAt(this.state, drag.start[0], drag.start[1]);
        if (i >= 0) this.select(i);
        this.render();
        return;
      }
      let [x0, y0] = drag.start;
      let [x1, y1] = this.#toImage(e);
      if (this.snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
      const r = this.current();
      paintRect(r.bits, this.state.width, this.state.height, x0, y0, x1, y1, 1);
      this.#touch(r);
    }
    this.commit();
  }

  #stroke(points) {
    const targets = this.tool === "eraser" && this.eraseAll ? this.state.regions : [this.current()];
    const value = this.tool === "eraser" ? 0 : 1;
    for (const r of targets) {
      paintStroke(r.bits, this.state.width, this.state.height, points, this.brush / 2, value, this.snapToGrid ? TOKEN_GRID : 0);
      this.#touch(r);
    }
  }

  #key(e) {
    const t = e.target;
    if (t !== this.keys && (t instanceof HTMLTextAreaElement || t instanceof HTMLInputElement)) return; // native editing
    const key = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    let handled;
    if (mod && !e.altKey) {
      handled = { z: () => (e.shiftKey ? this.redo() : this.undo()), y: () => this.redo() }[key];
    } else if (!mod && !e.altKey) {
      handled = { v: () => this.setTool("select"), r: () => this.setTool("rect"), b: () => this.setTool("brush"),
        e: () => this.setTool("eraser"), "[": () => this.setBrush(this.brush - 8), "]": () => this.setBrush(this.brush + 8),
        g: () => { this.snapToGrid = !this.snapToGrid; this.snapBox.checked = this.snapToGrid; this.#savePrefs(); this.render(); },
        delete: () => this.clearSelected(), backspace: () => this.clearSelected(),
        f: () => (this.full ? this.closeFull() : this.openFull()),
        escape: this.full ? () => this.closeFull() : undefined,
        0: this.full ? () => this.zoomBy(0) : undefined,
        "+": this.full ? () => this.zoomBy(1) : undefined, "=": this.full ? () => this.zoomBy(1) : undefined,
        "-": this.full ? () => this.zoomBy(-1) : undefined,
        " ": this.full ? () => { this.spaceDown = true; } : undefined }[key];
    }
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
      handled();
    }
  }

  // One step in (+1) or out (-1) around the view's centre; 0 fits the picture to the window.
  zoomBy(direction) {
    if (!direction) {
      this.view = { zoom: 1, x: 0, y: 0 };
    } else {
      const before = this.view.zoom;
      this.view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, before * Math.exp(direction * ZOOM_STEP_LOG)));
      const k = this.view.zoom / before;
      this.view.x *= k;
      this.view.y *= k;
    }
    this.render();
  }

  focusDrawing() {
    if (!this.destroyed && this.root.isConnected) this.keys.focus({ preventScroll: true });
  }

  // -- full-window editor: the same editor (state, undo history) moved into an overlay -------------------
  openFull() {
    if (this.full) return;
    const overlay = el("div", "ja-rc-overlay");
    // While it is open the focus never leaves it for the page (a click on the backdrop, a row, a removed button).
    overlay.addEventListener("pointerdown", (e) => {
      if (e.target === overlay) {
        e.preventDefault();
        this.focusDrawing();
      }
    });
    overlay.addEventListener("focusout", (e) => {
      if (overlay.contains(e.relatedTarget)) return;
      queueMicrotask(() => { if (this.full?.overlay === overlay && !overlay.contains(document.activeElement)) this.focusDrawing(); });
    });
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "Region Canvas editor");
    this.full = { overlay, parent: this.root.parentElement, next: this.root.nextSibling };
    document.body.appendChild(overlay);
    overlay.appendChild(this.root);
    this.root.classList.add("ja-rc-full");
    this.view = { zoom: 1, x: 0, y: 0 };
    this.fullButton.textContent = "✕ Close";
    this.fullButton.title = "Back to the node (Esc)";
    this.keys.focus({ preventScroll: true });
    this.render(true);
  }

  closeFull() {
    if (!this.full) return;
    const { overlay, parent, next } = this.full;
    this.full = null;
    this.root.classList.remove("ja-rc-full");
    if (parent?.isConnected) parent.insertBefore(this.root, next?.parentElement === parent ? next : null);
    else this.root.remove();
    overlay.remove();
    this.view = { zoom: 1, x: 0, y: 0 };
    this.fullButton.textContent = "⤢";
    this.fullButton.title = "Full-window editor (F, or double-click the canvas)";
    if (!this.destroyed) this.keys.focus({ preventScroll: true });
    this.render(true);
  }

  // -- background ---------------------------------------------------------------
  setBackground(ref) {
    ref = safeViewRef(ref);
    if (!ref) return;
    this.backgroundRef = ref;
    const url = viewURL(ref);
    const img = new Image();
    img.onload = () => {
      this.background = img;
      this.backgroundNote = "";
      this.render();
    };
    img.onerror = () => {
      this.background = null;
      this.backgroundNote = "The background of the last run is no longer on the server; run the workflow to show it again.";
      this.render();
    };
    img.src = url;
  }

  matchBackground() {
    const img = this.background;
    if (!img) return;
    const [width, height] = this.#size();
    const long = Math.max(width, height);
    const aspect = img.naturalWidth / img.naturalHeight;
    const round16 = (v) => Math.max(16, Math.min(8192, Math.round(v / 16) * 16));
    const [w, h] = aspect >= 1 ? [round16(long), round16(long / aspect)] : [round16(long * aspect), round16(long)];
    // The drawing was made over the letterboxed picture: the picture's rectangle becomes the new canvas.
    const s = Math.min(width / img.naturalWidth, height / img.naturalHeight);
    const [pw, ph] = [img.naturalWidth * s, img.naturalHeight * s];
    const source = [(width - pw) / 2, (height - ph) / 2, pw, ph];
    for (const [name, v] of [["width", w], ["height", h]]) {
      const widget = this.node.widgets?.find((x) => x.name === name);
      if (widget) widget.value = v;
    }
    this.resize(source);
  }

  // -- drawing -------------------------------------------------------------------
  render(structural = false) {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.#draw());
    if (structural) this.#renderList();
    this.errorText.textContent = this.unreadable;
    this.errorBox.hidden = !this.unreadable;
    this.#renderStatus();
    this.#renderBackgroundNote();
    this.#renderMaskOffer();
    this.sizeOut.value = `${this.brush} px`;
    this.zoomBox.hidden = !this.full;
    this.zoomOut.textContent = `${Math.round(this.view.zoom * 100)}%`;
    this.opacityOut.value = `${Math.round(this.opacity * 100)}%`;
    for (const [tool, button] of Object.entries(this.toolButtons)) button.classList.toggle("active", tool === this.tool);
    this.root.classList.toggle("ja-rc-unreadable", !!this.unreadable);
  }

  #renderStatus() {
    const n = this.state.regions.length;
    const parts = [`${n} / ${MAX_REGIONS} regions`];
    const problems = stateProblems(this.state);
    if (problems.length) parts.push(`cannot be queued yet: ${problems.join("; ")}`);
    if (this.message) parts.push(this.message);
    this.status.textContent = parts.join(" · ");
    this.status.classList.toggle("ja-rc-bad", problems.length > 0);
  }

  #renderBackgroundNote() {
    let text = this.backgroundNote;
    let offer = false;
    if (this.background) {
      const { naturalWidth: iw, naturalHeight: ih } = this.background;
      const { width, height } = this.state;
      if (Math.abs(iw / ih - width / height) > 0.01 * (width / height)) {
        text = `The background is ${iw}×${ih}, the canvas ${width}×${height}: it is shown letterboxed, not stretched.`;
        offer = true;
      }
    }
    this.bgText.textContent = text;
    this.matchButton.hidden = !offer;
    this.bgBox.hidden = !text || text === this.bgDismissed;
  }

  #stageSize() {
    if (this.full) {
      this.stage.style.height = "";
      Object.assign(this.canvas.style, { width: "100%", height: "100%", left: "0", top: "0" });
      return;
    }
    const { width, height } = this.state;
    const sw = Math.max(32, this.stage.clientWidth);
    // The stage asks for the node's width in the image's shape; classic nodes (a fixed widget height) shrink it to
    // leave the region list its rows, Vue nodes grow with their content. Adding regions never resizes the canvas.
    const content = contentSizedNodes();
    this.root.classList.toggle("ja-rc-content-sized", content);
    const want = Math.round(Math.min(sw * (height / width), 2 * sw));
    if (this.stage.style.height !== `${want}px`) this.stage.style.height = `${want}px`;
    this.stage.style.flex = "";
    const sh = content ? want : Math.min(want, this.stage.clientHeight || want);
    const s = Math.min(sw / width, Math.max(16, sh) / height);
    const w = Math.max(16, Math.floor(width * s));
    const h = Math.max(16, Math.floor(height * s));
    Object.assign(this.canvas.style, { width: `${w}px`, height: `${h}px`, left: `${Math.floor((sw - w) / 2)}px`, top: "0" });
  }

  #overlay(r) {
    // One small canvas per region at mask resolution (1 px per cell), redrawn only when the region changed.
    const { mw, mh } = maskDims(this.state.width, this.state.height);
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

  #outline(ctx, r, mw, mh) {
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

  #draw() {
    this.#stageSize();
    const { width, height } = this.state;
    const ratio = window.devicePixelRatio || 1;
    const { cw, ch, scale, tx, ty } = this.#layout();
    this.canvas.width = Math.max(1, Math.round(cw * ratio));
    this.canvas.height = Math.max(1, Math.round(ch * ratio));
    const ctx = this.ctx;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#161616";
    ctx.fillRect(0, 0, cw, ch);
    ctx.setTransform(ratio * scale, 0, 0, ratio * scale, ratio * tx, ratio * ty);
    const px = 1 / scale; // one CSS pixel in image pixels
    ctx.fillStyle = "#3a3a3a";
    ctx.fillRect(0, 0, width, height);
    if (this.background) {
      // Letterboxed: the image keeps its own shape inside the canvas.
      const { naturalWidth: iw, naturalHeight: ih } = this.background;
      const s = Math.min(width / iw, height / ih);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(this.background, (width - iw * s) / 2, (height - ih * s) / 2, iw * s, ih * s);
    }
    const { mw, mh } = maskDims(width, height);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = this.opacity;
    for (const r of this.state.regions) if (!r.hidden) ctx.drawImage(this.#overlay(r), 0, 0, mw * CELL, mh * CELL);
    ctx.globalAlpha = 1;
    // Outlines in each region's colour over a dark edge: a region stays apart from image content of the same colour.
    this.state.regions.forEach((r, i) => {
      if (r.hidden) return;
      this.#outline(ctx, r, mw, mh);
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 3 * px;
      ctx.setLineDash([]);
      ctx.stroke();
      ctx.strokeStyle = r.color;
      ctx.lineWidth = 1.5 * px;
      ctx.stroke();
      if (i === this.selected) {
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([4 * px, 4 * px]);
        ctx.stroke();
        ctx.setLineDash([]);
      }
    });
    // The token grid only where its lines are far enough apart to read (no moiré), and only while snapping.
    if (this.snapToGrid && TOKEN_GRID * scale >= 8) {
      ctx.strokeStyle = "rgba(255,255,255,0.07)";
      ctx.lineWidth = px;
      ctx.beginPath();
      for (let x = TOKEN_GRID; x < width; x += TOKEN_GRID) { ctx.moveTo(x, 0); ctx.lineTo(x, height); }
      for (let y = TOKEN_GRID; y < height; y += TOKEN_GRID) { ctx.moveTo(0, y); ctx.lineTo(width, y); }
      ctx.stroke();
    }
    if (this.drag && !this.drag.pan && this.tool === "rect") {
      let [x0, y0] = this.drag.start;
      let [x1, y1] = this.drag.last;
      if (this.snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
      ctx.strokeStyle = this.state.regions[this.selected]?.color ?? "#fff";
      ctx.lineWidth = 2 * px;
      ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    }
    if (this.hover && (this.tool === "brush" || this.tool === "eraser")) {
      // The brush cursor: its real size in image pixels.
      ctx.beginPath();
      ctx.arc(this.hover[0], this.hover[1], this.brush / 2, 0, 2 * Math.PI);
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.lineWidth = 3 * px;
      ctx.stroke();
      ctx.strokeStyle = this.tool === "eraser" ? "#fff" : (this.state.regions[this.selected]?.color ?? "#fff");
      ctx.lineWidth = 1.5 * px;
      ctx.stroke();
    }
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = px;
    ctx.strokeRect(0, 0, width, height);
  }

  #renderList() {
    this.list.replaceChildren();
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    this.state.regions.forEach((r, i) => this.list.appendChild(this.#row(r, i)));
    this.list.classList.toggle("empty", !this.state.regions.length);
  }

  #row(r, i) {
    const row = el("div", `ja-rc-region${i === this.selected ? " selected" : ""}`);
    row.style.setProperty("--ja-region-color", r.color);
    const head = el("div", "ja-rc-region-head");
    const swatch = el("input", "ja-rc-color", { type: "color", value: r.color, title: "Colour of this region" });
    this.#listen(swatch, "input", () => { r.color = swatch.value; row.style.setProperty("--ja-region-color", r.color); this.commit({ record: false }); });
    this.#listen(swatch, "change", () => { r.color = swatch.value; this.commit(); });
    const visible = el("input", "ja-rc-visible", { type: "checkbox", checked: !r.hidden, title: "Visible (hidden regions are not used)" });
    this.#listen(visible, "change", () => { r.hidden = !visible.checked; this.commit(); });
    const name = el("span", "ja-rc-name", { textContent: `Region ${i + 1}` });
    const strength = el("input", "ja-rc-strength", { type: "number", min: 0, max: 4, step: 0.05, value: r.strength });
    const feather = el("input", "ja-rc-feather", { type: "number", min: 0, max: MAX_FEATHER, step: 8, value: r.feather ?? 0 });
    const note = el("div", "ja-rc-row-note", { hidden: true });
    const numberField = (input, label, lo, hi, integer, apply) => {
      const check = () => {
        const v = Number(input.value);
        const ok = input.value.trim() !== "" && Number.isFinite(v) && v >= lo && v <= hi && (!integer || Number.isInteger(v));
        input.classList.toggle("invalid", !ok);
        note.hidden = ok;
        note.textContent = ok ? "" : `${label} must be ${integer ? "a whole number " : ""}between ${lo} and ${hi}; ${input.value || "empty"} is not used.`;
        return ok ? v : null;
      };
      this.#listen(input, "input", () => { const v = check(); if (v !== null) { apply(v); this.commit({ record: false }); } });
      this.#listen(input, "change", () => { if (check() !== null) this.commit(); });
      this.#listen(input, "blur", () => {
        if (check() === null) {
          // Not silently clamped: the row says what was wrong, the field shows the value in use.
          input.value = label === "strength" ? r.strength : (r.feather ?? 0);
          input.classList.remove("invalid");
        }
      });
    };
    numberField(strength, "strength", 0, 4, false, (v) => { r.strength = v; });
    numberField(feather, "feather", 0, MAX_FEATHER, true, (v) => { r.feather = v; this.#touch(r); });
    const buttons = [["⤓", "Save this region's mask as a PNG (width × height, soft where feathered; white and transparent inside, so "
      + "Load Image (as Mask) reads it with its default channel): the same as its mask in the masks output", () => this.exportRegion(i)],
    ["▲", "Move up", () => this.#move(i, -1)], ["▼", "Move down", () => this.#move(i, 1)],
      ["✕", "Remove this region (Undo is offered)", () => this.#remove(i)]].map(([label, title, fn]) => {
      const b = el("button", "ja-rc-small", { type: "button", textContent: label, title });
      this.#listen(b, "click", fn);
      return b;
    });
    head.append(swatch, visible, name, labelled("strength", strength), labelled("feather", feather), ...buttons);
    feather.title = `Soft edge in pixels (0-${MAX_FEATHER}): the mask fades over this distance on each side of its border`;
    strength.title = "How strongly the region's prompt holds inside its mask (0-4)";
    const prompt = el("textarea", "ja-rc-prompt comfy-multiline-input", { value: r.prompt, placeholder: `Region ${i + 1} prompt`,
      rows: 2, maxLength: MAX_PROMPT });
    prompt.setAttribute("aria-label", `Region ${i + 1} prompt`);
    const counter = el("div", "ja-rc-counter");
    const showCount = () => {
      counter.textContent = `${r.prompt.length} / ${MAX_PROMPT}`;
      counter.classList.toggle("ja-rc-bad", r.prompt.length > MAX_PROMPT);
      counter.classList.toggle("ja-rc-near", r.prompt.length > 0.9 * MAX_PROMPT);
    };
    showCount();
    // Committed on every keystroke (Ctrl+Enter queues what is in the box); one history step per edit session.
    this.#listen(prompt, "input", () => {
      let text = prompt.value;
      if (text.length > MAX_PROMPT && text.length > r.prompt.length) {
        text = text.slice(0, Math.max(MAX_PROMPT, r.prompt.length));
        prompt.value = text;
      }
      r.prompt = text;
      showCount();
      this.commit({ record: false });
    });
    this.#listen(prompt, "change", () => this.commit());
    this.#listen(prompt, "focus", () => this.select(i));
    this.#listen(row, "pointerdown", () => this.select(i));
    const wrap = el("div", "ja-rc-prompt-wrap");
    wrap.append(prompt, counter);
    row.append(head, wrap, note);
    if (r.problem) {
      const problem = el("div", "ja-rc-problem", { textContent: r.problem });
      const dismiss = el("button", "ja-rc-small", { type: "button", textContent: "✕", title: "Dismiss" });
      this.#listen(dismiss, "click", () => { delete r.problem; problem.remove(); row.classList.remove("ja-rc-bad-row"); });
      problem.appendChild(dismiss);
      row.append(problem);
      row.classList.add("ja-rc-bad-row");
    }
    return row;
  }

  // Listeners on list rows die with the rows (replaceChildren); no bookkeeping needed.
  #listen(target, type, handler) {
    target.addEventListener(type, handler);
  }

  #move(i, delta) {
    const j = i + delta;
    if (j < 0 || j >= this.state.regions.length) return;
    const regions = this.state.regions;
    [regions[i], regions[j]] = [regions[j], regions[i]];
    this.selected = j;
    this.commit({ structural: true });
  }

  #remove(i) {
    const [r] = this.state.regions.splice(i, 1);
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    const what = r.prompt ? ` (“${r.prompt.length > 40 ? `${r.prompt.slice(0, 40)}…` : r.prompt}”)` : "";
    this.#offerUndo(`Removed region ${i + 1}${what}.`);
    this.commit({ structural: true });
  }
}

function storedPrefs() {
  try {
    const prefs = JSON.parse(localStorage.getItem(PREFS_KEY) ?? "{}");
    return prefs && typeof prefs === "object" ? prefs : {};
  } catch {
    return {};
  }
}

// Elements that keep the keyboard for typing (the drawing's own focus is a read-only text area of its own).
function takesText(target) {
  if (target instanceof HTMLTextAreaElement) return !target.readOnly;
  if (target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && ["text", "number", "search", "color", "file"].includes(target.type);
}

function chain(object, name, fn) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    fn.apply(this, args);
    return result;
  };
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function viewURL(ref) {
  const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "temp" });
  return api.apiURL(`/view?${query}`);
}

app.registerExtension({
  name: "joint_attention.region_canvas",
  getCustomWidgets() {
    return {
      [WIDGET](node, inputName, inputData) {
        loadStylesheet();
        const editor = new RegionCanvasEditor(node, inputData?.[1]?.default ?? "");
        const widget = node.addDOMWidget(inputName, WIDGET, editor.root, {
          getValue: () => editor.getValue(),
          setValue: (v) => editor.setValue(v),
          getMinHeight: () => 420,
          socketless: true,
          hideOnZoom: false,
        });
        node.jaRegionEditor = editor;
        return { widget, minWidth: MIN_NODE[0], minHeight: MIN_NODE[1] };
      },
    };
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    // The smallest node that shows every control: LiteGraph lets a resize go down to computeSize, which left the
    // classic node 210 px wide (the widget's minWidth is not part of it).
    chain(nodeType.prototype, "onResize", function () {
      if (!this.size) return;
      if (this.size[0] < MIN_NODE[0]) this.size[0] = MIN_NODE[0];
      if (this.size[1] < MIN_NODE[1]) this.size[1] = MIN_NODE[1];
    });
    chain(nodeType.prototype, "onNodeCreated", function () {
      for (const name of ["width", "height"]) {
        const w = this.widgets?.find((x) => x.name === name);
        if (w) chain(w, "callback", () => this.jaRegionEditor?.resize());
      }
    });
    // The background of the last run is remembered in the node's properties (saved with the workflow) and shown
    // again after a reload while the server still has the file.
    chain(nodeType.prototype, "onConfigure", function () {
      this.jaRegionEditor?.adoptPrevious();
      const ref = safeViewRef(this.properties?.ja_background);
      if (ref && this.jaRegionEditor) this.jaRegionEditor.setBackground(ref);
    });
    chain(nodeType.prototype, "onExecuted", function (message) {
      const ref = safeViewRef(message?.ja_background?.[0]);
      if (ref && this.jaRegionEditor) {
        this.properties = this.properties ?? {};
        this.properties.ja_background = ref;
        this.jaRegionEditor.setBackground(ref);
      }
      const offer = message?.ja_import_masks?.[0];
      if (offer) this.jaRegionEditor?.offerMasks(offer);
    });
    chain(nodeType.prototype, "onRemoved", function () {
      this.jaRegionEditor?.destroy();
    });
  },
});
