// The Region Canvas editor: region masks and prompts of one JointAttentionRegionCanvas node. The widget value is one
// JSON string (see region_state.js), the single source of truth; everything the user types is set through
// textContent / value, never as HTML. The editor composes the parts in the other region_*.js modules: the toolbar,
// the node view, the full-window editor, the region list, the notes and the mask offer.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { showBackground } from "./region_background.js";
import { button, el, takesText } from "./region_dom.js";
import { CanvasEditorBase } from "./region_editor_base.js";
import { FullWindow } from "./region_full_window.js";
import { readChoices } from "./region_handover.js";
import { MaskOffer } from "./region_mask_offer.js";
import { NodeView } from "./region_node_view.js";
import { RegionNotes } from "./region_notes.js";
import { RegionPainter } from "./region_painter.js";
import { RegionList } from "./region_list.js";
import { ShapeEditing } from "./region_shapes.js";
import { DrawingTools } from "./region_tools.js";
import { RegionToolbar } from "./region_toolbar.js";
import {
  addRegion, History, MAX_REGIONS, parseState, resizeState, serializeState, stateProblems,
} from "./region_state.js";

export class RegionCanvasEditor extends CanvasEditorBase {
  // node: the LiteGraph node; value: its saved widget value. host: what the editor needs of ComfyUI, { vueNodes(),
  // graphChanged(), viewURL(ref) }; handover: the page's NodeHandover (what outlives a rebuilt node's editor).
  constructor(node, value, { host, handover }) {
    super();
    this.node = node;
    this.host = host;
    this.handover = handover;
    Object.assign(this, readChoices(handover.choicesFor(node)));
    this.selected = 0;
    this.unreadable = ""; // why the saved value could not be read at all; it is kept untouched meanwhile
    this.message = "";
    this.cropWarning = ""; // what "Match width/height" would crop, while it waits for the user to confirm
    this.background = null;
    this.backgroundNote = "";
    this.painter = new RegionPainter();
    this.shapes = new ShapeEditing(this);
    this.tools = new DrawingTools(this);
    this.mountFrame = 0; // a pending mount into the container a removed editor left (adoptPrevious)
    this.history = new History();
    this.#load(value);
    this.#build();
    this.render(true);
  }

  // -- value -----------------------------------------------------------------
  // The node's width and height widgets.
  widgetSize() {
    return this.#size();
  }

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
    if (this.history.moveTo(this.value)) return;
    const previous = this.handover.takeHistoryHolding(this.node, this.value);
    if (previous) {
      this.history = previous;
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
    this.notes.clearNotice(); // an offer to undo belongs to the drawing it was made for
    this.render(true);
  }

  // Every edit is in the widget value at once (a queued prompt or a saved workflow sees it); `record` also puts it in
  // the editor's undo history and ComfyUI's change history; `structural` rebuilds the region list.
  commit({ structural = false, record = true } = {}) {
    this.cropWarning = ""; // counted for the drawing as it was
    this.value = serializeState(this.state);
    if (record) {
      this.history.record(this.value);
      this.host.graphChanged();
    }
    this.node.setDirtyCanvas?.(true, true);
    this.render(structural);
  }

  resize(source = null) {
    const [width, height] = this.#size();
    if (width === this.state.width && height === this.state.height) return;
    const before = `${this.state.width}×${this.state.height}`;
    const drawn = this.state.regions.some((r) => r.bits.some((b) => b));
    resizeState(this.state, width, height, source);
    if (drawn) this.notes.offerUndo(source ? `Canvas ${before} → ${width}×${height}: the canvas now has the background's shape; the drawing`
      + " follows the picture." : `Canvas ${before} → ${width}×${height}: the drawing was scaled to fit, not stretched.`);
    this.commit({ structural: true });
  }

  // -- lifecycle ----------------------------------------------------------------
  // The node has its id once the graph configures it (a graph undo rebuilds it that way): take what the previous editor
  // of this node left (undo history, the Vue node's widget container) and the node's choices, and show them.
  adoptPrevious() {
    const previous = this.handover.takeLeft(this.node);
    if (previous?.history?.moveTo(this.value)) this.history = previous.history;
    // Mounted on the next animation frame, once the frontend has drawn the rebuilt node, not during the configure: a Vue
    // node takes its position from the page when its size changes, and mounted at once (the node's size never changing
    // after the rebuild) a graph undo left the node about 30 px off its restored position.
    if (previous?.slot) this.mountFrame = requestAnimationFrame(() => this.#mountIn(previous.slot));
    const prefs = this.handover.nodeChoices(this.node);
    if (!prefs) return;
    Object.assign(this, readChoices(prefs));
    this.toolbar.showChoices();
    this.render();
  }

  // With Vue node rendering, a node rebuilt under the same id keeps its component, and with it the widget container
  // the removed editor left empty; the component mounts a widget's element only when it is created, so the new editor
  // goes into that container itself. (The classic canvas mounts every new widget's element.)
  #mountIn(slot) {
    if (this.destroyed || this.root.isConnected || !slot.isConnected || slot.firstElementChild || !this.host.vueNodes()) return;
    slot.appendChild(this.root);
    this.render(true);
  }

  savePrefs() {
    this.handover.keepChoices(this.node, { tool: this.tool, brush: this.brush, hardness: this.hardness, snapToGrid: this.snapToGrid,
      opacity: this.opacity, eraseAll: this.eraseAll, addToSelected: this.addToSelected });
  }

  destroy() {
    this.destroyed = true;
    this.notes.destroy();
    this.fullWindow.close();
    cancelAnimationFrame(this.mountFrame);
    super.destroy();
    this.handover.leave(this.node, this.history, this.root.parentElement);
    this.root.remove();
  }

  // -- DOM -------------------------------------------------------------------
  #build() {
    this.root = el("div", "ja-rc");
    // Keyboard focus of the drawing: a read-only text field, so the frontend treats the canvas like the text
    // inputs that have their own undo (its graph undo leaves them alone) and shortcuts typed here stay here.
    this.keys = el("textarea", "ja-rc-keys", { readOnly: true, tabIndex: 0, rows: 1 });
    this.keys.setAttribute("aria-label", "Region canvas (keyboard shortcuts: see ?)");
    this.fullWindow = new FullWindow(this);
    this.toolbar = new RegionToolbar(this);
    this.maskOffer = new MaskOffer(this);
    this.notes = new RegionNotes(this, this.maskOffer);
    this.nodeView = new NodeView(this, this.notes.floating);
    this.stage = this.nodeView.stage;
    this.regionList = new RegionList(this);
    this.list = this.regionList.element;
    this.status = el("div", "ja-rc-status");
    // "+ Add region" right under the drawing, before the list that scrolls: always inside the node.
    const footer = el("div", "ja-rc-footer");
    footer.append(this.status, button((t, type, h) => this.on(t, type, h), "+ Add region", "Add a region (it becomes the selected one)",
      () => this.addRegion(), "ja-rc-add"));
    this.root.append(this.toolbar.element, this.toolbar.help, this.notes.errorBox, this.stage, footer, this.list);
    this.on(this.canvas, "wheel", (e) => this.fullWindow.wheel(e), { passive: false });
    // Pointer presses on the editor's controls are the editor's: the node around it must not start a node drag
    // (Vue nodes drag from anywhere in their body).
    this.on(this.root, "pointerdown", (e) => {
      if (e.target instanceof HTMLButtonElement || e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement
        || e.target instanceof HTMLCanvasElement || e.target.closest?.(".ja-rc-region")) e.stopPropagation();
    });
    this.on(this.root, "keydown", (e) => this.toolbar.shortcut(e));
    // The keyboard stays with the editor: a click on anything but a text field gives it back to the drawing. Left on
    // the page, the editor's keys stopped working and ComfyUI acted on them (Del deleted the selected node, Ctrl+Z
    // ran the graph's undo); ComfyUI leaves keys typed into text fields alone, and the drawing's focus is one.
    this.on(this.root, "click", (e) => { if (!takesText(e.target)) this.focusDrawing(); });
    this.on(this.root, "keyup", (e) => { if (e.key === " ") this.fullWindow.spaceDown = false; });
  }

  focusDrawing() {
    if (!this.destroyed && this.root.isConnected) this.keys.focus({ preventScroll: true });
  }

  // -- choices -------------------------------------------------------------------
  setTool(tool) {
    this.#choose({ tool });
  }

  setBrush(size) {
    this.#choose({ brush: Math.max(8, Math.min(256, Math.round(size / 8) * 8)) });
  }

  setHardness(hardness) {
    this.#choose({ hardness: Math.max(0, Math.min(1, Math.round(hardness * 20) / 20)) });
  }

  setAddToSelected(on) {
    this.#choose({ addToSelected: on });
  }

  setSnap(on) {
    this.#choose({ snapToGrid: on });
  }

  // A choice that outlives the editor: the toolbar shows it and the browser remembers it.
  #choose(choices) {
    Object.assign(this, choices);
    this.toolbar.showChoices();
    this.savePrefs();
    this.render();
  }

  // -- editing -----------------------------------------------------------------
  current() {
    if (!this.state.regions.length) {
      addRegion(this.state);
      this.selected = 0;
      this.regionList.render();
    }
    this.selected = Math.max(0, Math.min(this.selected, this.state.regions.length - 1));
    return this.state.regions[this.selected];
  }

  select(i) {
    if (i < 0 || i >= this.state.regions.length) return;
    this.selected = i;
    this.regionList.markSelected(i);
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

  // A region's pixels changed: its overlay is drawn again, only within `rect` (cells [x0, y0, x1, y1]) when given.
  touch(r, rect = null) {
    r.rev = (r.rev ?? 0) + 1;
    if (!rect || r.dirty === "all") r.dirty = "all";
    else r.dirty = r.dirty ? [Math.min(r.dirty[0], rect[0]), Math.min(r.dirty[1], rect[1]), Math.max(r.dirty[2], rect[2]),
      Math.max(r.dirty[3], rect[3])] : rect;
  }

  fill(value) {
    const r = this.current();
    r.bits.fill(value);
    this.touch(r);
    this.commit();
  }

  invertSelected() {
    const r = this.current();
    for (let i = 0; i < r.bits.length; i++) r.bits[i] ^= 1;
    this.touch(r);
    this.commit();
    this.notes.offerUndo(`Inverted ${r.name}.`);
  }

  clearSelected() {
    if (!this.state.regions.length) return;
    const { name } = this.current();
    this.fill(0);
    this.notes.offerUndo(`Cleared ${name}.`);
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
    this.host.graphChanged();
    this.node.setDirtyCanvas?.(true, true);
    this.render(true);
  }

  // -- gestures on the canvas (CanvasEditorBase hooks) --------------------------------------
  pans(e) {
    return !this.unreadable && this.fullWindow.pans(e);
  }

  draws(e) {
    return !this.unreadable && e.button === 0;
  }

  gestureStarting() {
    this.keys.focus({ preventScroll: true });
  }

  beginGesture(e, p) {
    this.drag = this.tools.begin(e, p);
    this.render();
  }

  hovered(p) {
    if (this.tool === "select") this.canvas.style.cursor = this.shapes.cursor(p, this.layout().scale);
    if (this.tool === "brush" || this.tool === "eraser") this.render(); // the brush cursor follows
  }

  continueGesture(e, p) {
    if (this.drag.shape) this.shapes.follow(this.drag, p);
    else this.tools.follow(e, this.drag, p);
    this.render();
  }

  endGesture(e, drag) {
    const changed = drag.shape ? this.shapes.finish(drag) : this.tools.end(e, drag);
    if (changed) this.commit({ structural: !!drag.structural });
    else this.render();
  }

  // -- masks in and out, background (region_mask_files.js, region_background.js) -----------------------
  // `offer`: the masks on the node's import_masks input in its last run (see MaskOffer.show).
  offerMasks(offer) {
    this.maskOffer.show(offer);
  }

  setBackground(ref) {
    showBackground(this, ref);
  }

  // -- showing -------------------------------------------------------------------
  // A redraw on the next animation frame, and the controls around the drawing brought up to date; `structural`
  // rebuilds the region list.
  render(structural = false) {
    this.requestDraw();
    if (structural) this.regionList.render();
    this.notes.sync();
    this.#renderStatus();
    this.maskOffer.sync();
    this.toolbar.sync();
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

  // CanvasEditorBase hooks: the picture's size, the canvas element's size, one frame.
  imageSize() {
    return [this.state.width, this.state.height];
  }

  fitStage() {
    if (this.fullWindow.isOpen) this.fullWindow.fitStage();
    else this.nodeView.fitStage();
  }

  drawImageSpace(ctx, scale) {
    this.painter.paint(ctx, scale, this);
  }
}

