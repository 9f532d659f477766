// The full-window editor: the same editor (drawing, undo history, list) moved out of the node into an overlay over
// the page, with zoom (wheel, + and -, 0 fits) and pan (middle button or Space+drag); Esc puts it back.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { el } from "./region_dom.js";

const ZOOM_STEP_LOG = Math.log(1.15); // one wheel event, one + or - press
const MIN_ZOOM = 0.25;
const MAX_ZOOM = 32;

export class FullWindow {
  // `editor`: the RegionCanvasEditor it shows (its root element, canvas, view and keyboard focus).
  constructor(editor) {
    this.editor = editor;
    this.opened = null; // while open: { overlay, parent, next }, where the editor goes back to
    this.spaceDown = false; // Space held: a drag pans
  }

  get isOpen() {
    return this.opened !== null;
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
  }

  open() {
    const editor = this.editor;
    if (this.isOpen) return;
    const overlay = el("div", "ja-rc-overlay");
    // While it is open the focus never leaves it for the page (a click on the backdrop, a row, a removed button).
    // These listeners go with the overlay.
    overlay.addEventListener("pointerdown", (e) => {
      if (e.target === overlay) {
        e.preventDefault();
        editor.focusDrawing();
      }
    });
    overlay.addEventListener("focusout", (e) => {
      if (overlay.contains(e.relatedTarget)) return;
      queueMicrotask(() => { if (this.opened?.overlay === overlay && !overlay.contains(document.activeElement)) editor.focusDrawing(); });
    });
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "Region Canvas editor");
    this.opened = { overlay, parent: editor.root.parentElement, next: editor.root.nextSibling };
    document.body.appendChild(overlay);
    overlay.appendChild(editor.root);
    editor.root.classList.add("ja-rc-full");
    editor.view = { zoom: 1, x: 0, y: 0 };
    editor.toolbar.showFullWindow(true);
    editor.keys.focus({ preventScroll: true });
    editor.render(true);
  }

  close() {
    const editor = this.editor;
    if (!this.isOpen) return;
    const { overlay, parent, next } = this.opened;
    this.opened = null;
    editor.root.classList.remove("ja-rc-full");
    if (parent?.isConnected) parent.insertBefore(editor.root, next?.parentElement === parent ? next : null);
    else editor.root.remove();
    overlay.remove();
    editor.view = { zoom: 1, x: 0, y: 0 };
    editor.toolbar.showFullWindow(false);
    if (!editor.destroyed) editor.keys.focus({ preventScroll: true });
    editor.render(true);
  }

  // The drawing takes the window's room (the stylesheet gives the stage what the toolbar and list leave).
  fitStage() {
    this.editor.stage.style.height = "";
    Object.assign(this.editor.canvas.style, { width: "100%", height: "100%", left: "0", top: "0" });
  }

  pans(e) {
    return this.isOpen && (e.button === 1 || (e.button === 0 && this.spaceDown));
  }

  wheel(e) {
    if (!this.isOpen) return; // inside the node the wheel belongs to the graph
    e.preventDefault();
    e.stopPropagation();
    const editor = this.editor;
    const rect = editor.canvas.getBoundingClientRect();
    const before = editor.layout();
    const px = e.clientX - rect.left;
    const py = e.clientY - rect.top;
    const ix = (px - before.tx) / before.scale;
    const iy = (py - before.ty) / before.scale;
    // At most 1.15x per wheel event whatever the device reports (a mouse's line steps came as 1.4x).
    const step = Math.max(-ZOOM_STEP_LOG, Math.min(ZOOM_STEP_LOG, -e.deltaY * 0.0015));
    editor.view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, editor.view.zoom * Math.exp(step)));
    const after = editor.layout();
    // Keep the image point under the pointer where it was.
    editor.view.x += px - (after.tx + ix * after.scale);
    editor.view.y += py - (after.ty + iy * after.scale);
    editor.render();
  }

  // One step in (+1) or out (-1) around the view's centre; 0 fits the picture to the window.
  zoomBy(direction) {
    const editor = this.editor;
    if (!direction) {
      editor.view = { zoom: 1, x: 0, y: 0 };
    } else {
      const before = editor.view.zoom;
      editor.view.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, before * Math.exp(direction * ZOOM_STEP_LOG)));
      const k = editor.view.zoom / before;
      editor.view.x *= k;
      editor.view.y *= k;
    }
    editor.render();
  }
}
