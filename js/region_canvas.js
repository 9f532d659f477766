// Region Canvas widget: draw region masks and prompts inside the JointAttentionRegionCanvas node.
// The widget value is one JSON string (see region_state.js); everything the user types is set
// through textContent / value, never as HTML.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  addRegion, History, maskDims, paintRect, paintStroke, parseState, resizeState, serializeState, snap, CELL, TOKEN_GRID,
} from "./region_state.js";

const WIDGET = "JA_REGION_CANVAS";
const NODE_TYPE = "JointAttentionRegionCanvas";
const SHORTCUTS = "R rectangle · B brush · E eraser · G snap to 16 px grid · Ctrl+Z undo · Ctrl+Y / Ctrl+Shift+Z redo · Del clear region";

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

export class RegionCanvasEditor {
  constructor(node, value) {
    this.node = node;
    this.tool = "rect";
    this.brush = 48;
    this.snapToGrid = true;
    this.selected = 0;
    this.error = "";
    this.drag = null;
    this.frame = 0;
    this.background = null;
    this.listeners = [];
    this.history = new History();
    this.state = this.#parse(value);
    this.value = serializeState(this.state);
    this.history.record(this.value);
    this.#build();
    this.render(true);
  }

  // -- value -----------------------------------------------------------------
  #size() {
    const get = (name, fallback) => Number(this.node.widgets?.find((w) => w.name === name)?.value ?? fallback);
    return [get("width", 1024), get("height", 1024)];
  }

  #parse(value) {
    const [width, height] = this.#size();
    try {
      this.error = "";
      return parseState(value, width, height);
    } catch (err) {
      this.error = `${err.message}. The saved drawing was not loaded; drawing now replaces it.`;
      return parseState("", width, height);
    }
  }

  getValue() {
    return this.value;
  }

  setValue(value) {
    if (value === this.value) return;
    this.state = this.#parse(value);
    this.value = serializeState(this.state);
    this.history = new History();
    this.history.record(this.value);
    this.render(true);
  }

  // `structural`: regions were added, removed, reordered or replaced, so the list is rebuilt;
  // plain edits keep the list (and the focus of the field being typed in).
  commit(structural = false) {
    this.value = serializeState(this.state);
    this.history.record(this.value);
    this.node.setDirtyCanvas?.(true, true);
    this.render(structural);
  }

  resize() {
    const [width, height] = this.#size();
    resizeState(this.state, width, height);
    this.commit(true);
  }

  // -- DOM -------------------------------------------------------------------
  #on(target, type, handler, options) {
    target.addEventListener(type, handler, options);
    this.listeners.push([target, type, handler, options]);
  }

  #build() {
    this.root = el("div", "ja-rc", { tabIndex: 0 });
    const bar = el("div", "ja-rc-toolbar");
    this.toolButtons = {};
    for (const [tool, label] of [["rect", "▭ Rect"], ["brush", "✎ Brush"], ["eraser", "⌫ Eraser"]]) {
      const b = el("button", "ja-rc-tool", { textContent: label, title: `${label.slice(2)} (${tool[0].toUpperCase()})` });
      b.dataset.tool = tool;
      this.#on(b, "click", () => this.setTool(tool));
      this.toolButtons[tool] = b;
      bar.appendChild(b);
    }
    this.sizeInput = el("input", "ja-rc-size", { type: "range", min: 8, max: 256, value: this.brush, title: "Brush size" });
    this.#on(this.sizeInput, "input", () => { this.brush = Number(this.sizeInput.value); });
    this.snapBox = el("input", "", { type: "checkbox", checked: this.snapToGrid, title: "Snap to the 16 px token grid (G)" });
    this.#on(this.snapBox, "change", () => { this.snapToGrid = this.snapBox.checked; this.render(); });
    const snapLabel = el("label", "ja-rc-snap", { textContent: "snap" });
    snapLabel.prepend(this.snapBox);
    const actions = [
      ["Fill", "Fill the selected region", () => this.fill(1)],
      ["Clear", "Clear the selected region (Del)", () => this.fill(0)],
      ["↶", "Undo (Ctrl+Z)", () => this.undo()],
      ["↷", "Redo (Ctrl+Y)", () => this.redo()],
    ];
    bar.append(this.sizeInput, snapLabel);
    for (const [label, title, fn] of actions) {
      const b = el("button", "ja-rc-action", { textContent: label, title });
      this.#on(b, "click", fn);
      bar.appendChild(b);
    }
    bar.appendChild(el("span", "ja-rc-help", { textContent: "?", title: SHORTCUTS }));
    this.canvas = el("canvas", "ja-rc-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.errorBox = el("div", "ja-rc-error");
    this.list = el("div", "ja-rc-list");
    const add = el("button", "ja-rc-add", { textContent: "+ Add region" });
    this.#on(add, "click", () => this.addRegion());
    this.root.append(bar, this.errorBox, this.canvas, this.list, add);
    this.#on(this.canvas, "pointerdown", (e) => this.#pointerDown(e));
    this.#on(this.canvas, "pointermove", (e) => this.#pointerMove(e));
    this.#on(this.canvas, "pointerup", (e) => this.#pointerUp(e));
    this.#on(this.canvas, "pointercancel", (e) => this.#pointerUp(e));
    this.#on(this.root, "keydown", (e) => this.#key(e));
    this.resizeObserver = new ResizeObserver(() => this.render());
    this.resizeObserver.observe(this.root);
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resizeObserver?.disconnect();
    for (const [target, type, handler, options] of this.listeners) target.removeEventListener(type, handler, options);
    this.listeners = [];
    this.root.remove();
  }

  // -- editing -----------------------------------------------------------------
  setTool(tool) {
    this.tool = tool;
    this.render();
  }

  current() {
    if (!this.state.regions.length) {
      addRegion(this.state);
      this.#renderList();
    }
    this.selected = Math.min(this.selected, this.state.regions.length - 1);
    return this.state.regions[this.selected];
  }

  select(i) {
    this.selected = i;
    [...this.list.children].forEach((row, j) => row.classList.toggle("selected", j === i));
  }

  addRegion() {
    try {
      addRegion(this.state);
      this.selected = this.state.regions.length - 1;
      this.commit(true);
    } catch (err) {
      this.error = err.message;
      this.render(true);
    }
  }

  fill(value) {
    this.current().bits.fill(value);
    this.commit();
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
    this.node.setDirtyCanvas?.(true, true);
    this.render(true);
  }

  #toImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [((e.clientX - rect.left) / rect.width) * this.state.width, ((e.clientY - rect.top) / rect.height) * this.state.height];
  }

  #pointerDown(e) {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    this.canvas.setPointerCapture(e.pointerId);
    this.root.focus({ preventScroll: true });
    const p = this.#toImage(e);
    this.drag = { start: p, last: p, points: [p] };
    if (this.tool !== "rect") this.#stroke([p]);
  }

  #pointerMove(e) {
    if (!this.drag) return;
    e.preventDefault();
    const p = this.#toImage(e);
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
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (this.tool === "rect") {
      let [x0, y0] = this.drag.start;
      let [x1, y1] = this.#toImage(e);
      if (this.snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
      paintRect(this.current().bits, this.state.width, this.state.height, x0, y0, x1, y1, 1);
    }
    this.drag = null;
    this.commit();
  }

  #stroke(points) {
    const value = this.tool === "eraser" ? 0 : 1;
    paintStroke(this.current().bits, this.state.width, this.state.height, points, this.brush / 2, value);
  }

  #key(e) {
    if (e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement) return;
    const key = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    const handled = mod ? { z: () => (e.shiftKey ? this.redo() : this.undo()), y: () => this.redo() }[key]
      : { r: () => this.setTool("rect"), b: () => this.setTool("brush"), e: () => this.setTool("eraser"),
        g: () => { this.snapToGrid = !this.snapToGrid; this.snapBox.checked = this.snapToGrid; this.render(); },
        delete: () => this.fill(0) }[key];
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
      handled();
    }
  }

  setBackground(url) {
    const img = new Image();
    img.onload = () => { this.background = img; this.render(); };
    img.src = url;
  }

  // -- drawing -------------------------------------------------------------------
  render(structural = false) {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.#draw());
    if (structural) this.#renderList();
    this.errorBox.textContent = this.error;
    this.errorBox.hidden = !this.error;
  }

  #draw() {
    const { width, height } = this.state;
    // CSS sizes the canvas (full width, the image's aspect); only the pixel buffer follows it, so
    // the canvas never pushes its container wider (Vue nodes size to content).
    this.canvas.style.aspectRatio = `${width} / ${height}`;
    const cssWidth = Math.max(32, this.canvas.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(cssWidth * ratio);
    this.canvas.height = Math.round(((cssWidth * height) / width) * ratio);
    const ctx = this.ctx;
    const scale = this.canvas.width / width;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#2a2a2a";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.background) ctx.drawImage(this.background, 0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    const { mw, mh } = maskDims(width, height);
    const covered = new Uint8Array(mw * mh);
    ctx.globalAlpha = 0.45;
    this.state.regions.forEach((r, i) => {
      if (r.hidden) return;
      ctx.fillStyle = r.color;
      for (let idx = 0; idx < r.bits.length; idx++) {
        if (!r.bits[idx]) continue;
        covered[idx] = 1;
        ctx.fillRect((idx % mw) * CELL, Math.floor(idx / mw) * CELL, CELL, CELL);
      }
    });
    // Uncovered background: hatched, so holes between regions are seen at a glance.
    ctx.globalAlpha = 0.25;
    ctx.fillStyle = "#000";
    for (let idx = 0; idx < covered.length; idx++) {
      if (!covered[idx] && ((idx % mw) + Math.floor(idx / mw)) % 2 === 0) {
        ctx.fillRect((idx % mw) * CELL, Math.floor(idx / mw) * CELL, CELL, CELL);
      }
    }
    ctx.globalAlpha = 1;
    if (this.snapToGrid) {
      ctx.strokeStyle = "rgba(255,255,255,0.08)";
      ctx.lineWidth = 1 / scale;
      ctx.beginPath();
      for (let x = TOKEN_GRID; x < width; x += TOKEN_GRID) { ctx.moveTo(x, 0); ctx.lineTo(x, height); }
      for (let y = TOKEN_GRID; y < height; y += TOKEN_GRID) { ctx.moveTo(0, y); ctx.lineTo(width, y); }
      ctx.stroke();
    }
    if (this.drag && this.tool === "rect") {
      let [x0, y0] = this.drag.start;
      let [x1, y1] = this.drag.last;
      if (this.snapToGrid) [x0, y0, x1, y1] = [x0, y0, x1, y1].map((v) => snap(v));
      ctx.strokeStyle = this.current().color;
      ctx.lineWidth = 2 / scale;
      ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    }
    for (const [tool, button] of Object.entries(this.toolButtons)) button.classList.toggle("active", tool === this.tool);
  }

  #renderList() {
    this.list.replaceChildren();
    this.state.regions.forEach((r, i) => {
      const row = el("div", `ja-rc-region${i === this.selected ? " selected" : ""}`);
      const swatch = el("input", "ja-rc-color", { type: "color", value: r.color, title: "Colour" });
      this.#listen(swatch, "change", () => { r.color = swatch.value; this.commit(); });
      const visible = el("input", "", { type: "checkbox", checked: !r.hidden, title: "Visible (hidden regions are not used)" });
      this.#listen(visible, "change", () => { r.hidden = !visible.checked; this.commit(); });
      const prompt = el("textarea", "ja-rc-prompt", { value: r.prompt, placeholder: `Region ${i + 1} prompt`, rows: 2 });
      this.#listen(prompt, "change", () => { r.prompt = prompt.value; this.commit(); });
      this.#listen(prompt, "focus", () => this.select(i));
      const strength = el("input", "ja-rc-strength", { type: "number", min: 0, max: 4, step: 0.05, value: r.strength, title: "Strength" });
      this.#listen(strength, "change", () => {
        const v = Math.min(4, Math.max(0, Number(strength.value) || 0));
        r.strength = v;
        strength.value = v;
        this.commit();
      });
      const buttons = [["▲", "Move up", () => this.#move(i, -1)], ["▼", "Move down", () => this.#move(i, 1)],
        ["✕", "Remove", () => this.#remove(i)]].map(([label, title, fn]) => {
        const b = el("button", "ja-rc-small", { textContent: label, title });
        this.#listen(b, "click", fn);
        return b;
      });
      this.#listen(row, "pointerdown", () => this.select(i));
      row.append(swatch, visible, prompt, strength, ...buttons);
      this.list.appendChild(row);
    });
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
    this.commit(true);
  }

  #remove(i) {
    this.state.regions.splice(i, 1);
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    this.commit(true);
  }
}

function chain(object, name, fn) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    fn.apply(this, args);
    return result;
  };
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
          getMinHeight: () => 380,
          socketless: true,
          hideOnZoom: false,
        });
        node.jaRegionEditor = editor;
        return { widget, minWidth: 360, minHeight: 420 };
      },
    };
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      for (const name of ["width", "height"]) {
        const w = this.widgets?.find((x) => x.name === name);
        if (w) chain(w, "callback", () => this.jaRegionEditor?.resize());
      }
    });
    chain(nodeType.prototype, "onExecuted", function (message) {
      const bg = message?.ja_background?.[0];
      if (bg && this.jaRegionEditor) {
        const query = new URLSearchParams({ filename: bg.filename, subfolder: bg.subfolder ?? "", type: bg.type ?? "temp" });
        this.jaRegionEditor.setBackground(api.apiURL(`/view?${query}`));
      }
    });
    chain(nodeType.prototype, "onRemoved", function () {
      this.jaRegionEditor?.destroy();
    });
  },
});
