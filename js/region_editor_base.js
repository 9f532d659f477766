// The editor base: a canvas element showing a picture of imageSize() pixels, its pointer events (captured while a
// gesture lasts), the two coordinate spaces (client pixels on screen <-> image pixels, the space masks are drawn in),
// redraws batched to one per animation frame, and destroy(), which removes every listener and observer added through
// on() and observeResize(). Subclasses implement the hooks named in the class comment.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { el } from "./region_dom.js";

/* Hooks a subclass implements:
 *   imageSize() -> [width, height]        the picture, in image pixels
 *   fitStage()                            size the canvas element before a frame is drawn
 *   drawImageSpace(ctx, scale)            draw one frame; ctx is in image pixels, scale: CSS pixels per image pixel
 *   pans(e) / draws(e) -> boolean         whether a pointer press starts a pan or a drawing gesture
 *   gestureStarting()                     a press was taken (the canvas holds the pointer now)
 *   beginGesture(e, p) / continueGesture(e, p) / endGesture(e, drag)   p: the pointer in image pixels
 *   hovered(p)                            the pointer moved over the canvas with no gesture going on
 *   render()                              everything the editor shows is brought up to date (default: a redraw)
 */
export class CanvasEditorBase {
  constructor() {
    this.listeners = [];
    this.observers = [];
    this.frame = 0;
    this.destroyed = false;
    this.view = { zoom: 1, x: 0, y: 0 }; // zoom and pan over the picture fitted to the canvas
    this.drag = null; // the gesture in progress: { pan, x, y } or what beginGesture put there
    this.hover = null; // the pointer over the canvas, in image pixels
    this.canvas = el("canvas", "ja-rc-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.on(this.canvas, "pointerdown", (e) => this.#pointerDown(e));
    this.on(this.canvas, "pointermove", (e) => this.#pointerMove(e));
    this.on(this.canvas, "pointerup", (e) => this.#pointerUp(e));
    this.on(this.canvas, "pointercancel", (e) => this.#pointerUp(e));
    this.on(this.canvas, "pointerleave", () => { this.hover = null; this.render(); });
  }

  // -- listeners and observers, all undone by destroy() -----------------------------------
  on(target, type, handler, options) {
    target.addEventListener(type, handler, options);
    this.listeners.push([target, type, handler, options]);
  }

  observeResize(element, callback) {
    const observer = new ResizeObserver(callback);
    observer.observe(element);
    this.observers.push(observer);
  }

  destroy() {
    this.destroyed = true;
    cancelAnimationFrame(this.frame);
    for (const observer of this.observers) observer.disconnect();
    this.observers = [];
    for (const [target, type, handler, options] of this.listeners) target.removeEventListener(type, handler, options);
    this.listeners = [];
  }

  // -- coordinate spaces: image pixels <-> the canvas's CSS pixels <-> client pixels ------------------
  // The picture fitted into the canvas, then zoomed and panned by `view`; tx, ty: where image pixel (0, 0) lies.
  layout() {
    const [width, height] = this.imageSize();
    const cw = this.canvas.clientWidth || 1;
    const ch = this.canvas.clientHeight || 1;
    const scale = Math.min(cw / width, ch / height) * this.view.zoom;
    return { cw, ch, scale, tx: (cw - width * scale) / 2 + this.view.x, ty: (ch - height * scale) / 2 + this.view.y };
  }

  toImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    const { scale, tx, ty, cw } = this.layout();
    // The node can be drawn scaled (graph zoom): client pixels -> the canvas's own CSS pixels first.
    const k = cw / (rect.width || 1);
    return [((e.clientX - rect.left) * k - tx) / scale, ((e.clientY - rect.top) * k - ty) / scale];
  }

  // -- redraw: at most one frame per animation frame ---------------------------------------------
  render() {
    this.requestDraw();
  }

  requestDraw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.#drawFrame());
  }

  #drawFrame() {
    this.fitStage();
    const ratio = window.devicePixelRatio || 1;
    const { cw, ch, scale, tx, ty } = this.layout();
    // Set only when it changes: setting it clears and reallocates the canvas.
    const [w, h] = [Math.max(1, Math.round(cw * ratio)), Math.max(1, Math.round(ch * ratio))];
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    const ctx = this.ctx;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#161616";
    ctx.fillRect(0, 0, cw, ch);
    ctx.setTransform(ratio * scale, 0, 0, ratio * scale, ratio * tx, ratio * ty);
    this.drawImageSpace(ctx, scale);
  }

  // -- pointer: a press starts a pan or a gesture, which holds the pointer until it is released ------------
  #pointerDown(e) {
    const pan = this.pans(e);
    if (!pan && !this.draws(e)) return;
    e.preventDefault();
    e.stopPropagation();
    this.canvas.setPointerCapture(e.pointerId);
    this.gestureStarting();
    if (pan) this.drag = { pan: true, x: e.clientX, y: e.clientY };
    else this.beginGesture(e, this.toImage(e));
  }

  #pointerMove(e) {
    const p = this.toImage(e);
    this.hover = p;
    if (!this.drag) {
      this.hovered(p);
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    if (!this.drag.pan) {
      this.continueGesture(e, p);
      return;
    }
    this.view.x += e.clientX - this.drag.x;
    this.view.y += e.clientY - this.drag.y;
    this.drag.x = e.clientX;
    this.drag.y = e.clientY;
    this.render();
  }

  #pointerUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    const drag = this.drag;
    this.drag = null;
    if (!drag.pan) this.endGesture(e, drag);
  }
}
