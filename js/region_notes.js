// What the Region Canvas tells the user beside the drawing: why a saved value could not be read (above the drawing),
// and, floating over the drawing's lower edge instead of taking its height, the background's shape, the masks offered
// from import_masks and the offer to undo the last change (it goes by itself).
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { matchBackground } from "./region_background.js";
import { button, el } from "./region_dom.js";

// An undo offer stays this long (longer while the pointer is on it); Ctrl+Z still undoes after.
const NOTICE_MS = 8000;

export class RegionNotes {
  // `editor`: the RegionCanvasEditor (its state, background, undo and start over); `maskOffer`: its MaskOffer.
  constructor(editor, maskOffer) {
    this.editor = editor;
    this.timer = 0;
    this.dismissedBackground = ""; // the background note the user dismissed
    const listen = (target, type, handler) => editor.on(target, type, handler);
    this.errorBox = el("div", "ja-rc-error");
    this.errorText = el("span");
    this.errorBox.append(this.errorText, button(listen, "Start a new drawing", "Replace the unreadable value with an empty drawing",
      () => editor.startOver()));
    this.bgBox = el("div", "ja-rc-note ja-rc-bg-note");
    this.bgText = el("span");
    this.matchButton = button(listen, "Match width/height to it", "Set the canvas width and height to the background's shape",
      () => matchBackground(editor, false));
    // Matching that would crop the drawing asks first.
    this.cropButton = button(listen, "Crop and resize", "Match width/height to the background and lose the parts of the drawing outside it",
      () => matchBackground(editor, true), "ja-rc-action ja-rc-crop");
    this.cancelButton = button(listen, "Cancel", "Keep the canvas size and the whole drawing", () => {
      editor.cropWarning = "";
      editor.render();
    });
    this.bgBox.append(this.bgText, this.matchButton, this.cropButton, this.cancelButton, button(listen, "✕", "Dismiss", () => {
      this.dismissedBackground = this.bgText.textContent;
      editor.render();
    }, "ja-rc-small"));
    this.notice = el("div", "ja-rc-note ja-rc-notice", { hidden: true });
    this.noticeText = el("span");
    this.notice.append(this.noticeText, button(listen, "Undo", "Undo this change", () => { editor.undo(); this.clearNotice(); }),
      button(listen, "✕", "Dismiss", () => this.clearNotice(), "ja-rc-small"));
    editor.on(this.notice, "pointerenter", () => clearTimeout(this.timer));
    editor.on(this.notice, "pointerleave", () => this.#dismissLater());
    this.floating = el("div", "ja-rc-notes");
    this.floating.append(this.bgBox, maskOffer.element, this.notice);
  }

  offerUndo(text) {
    this.noticeText.textContent = text;
    this.notice.hidden = false;
    this.#dismissLater();
  }

  #dismissLater() {
    clearTimeout(this.timer);
    if (!this.notice.hidden) this.timer = setTimeout(() => this.clearNotice(), NOTICE_MS);
  }

  destroy() {
    clearTimeout(this.timer);
  }

  clearNotice() {
    clearTimeout(this.timer);
    this.notice.hidden = true;
  }

  sync() {
    const editor = this.editor;
    this.errorText.textContent = editor.unreadable;
    this.errorBox.hidden = !editor.unreadable;
    let text = editor.backgroundNote;
    let offer = false;
    if (editor.background) {
      const { naturalWidth: iw, naturalHeight: ih } = editor.background;
      const { width, height } = editor.state;
      if (Math.abs(iw / ih - width / height) > 0.01 * (width / height)) {
        text = `The background is ${iw}×${ih}, the canvas ${width}×${height}: it is shown letterboxed, not stretched.`;
        offer = true;
      }
    }
    const asking = offer && !!editor.cropWarning;
    if (asking) text = editor.cropWarning;
    this.bgText.textContent = text;
    this.matchButton.hidden = !offer || asking;
    this.cropButton.hidden = this.cancelButton.hidden = !asking;
    this.bgBox.hidden = !text || text === this.dismissedBackground;
  }
}
