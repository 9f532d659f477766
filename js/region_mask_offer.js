// Masks that reached the node's `import_masks` input in the last run, offered as regions (one by one or all), in a
// note floating over the drawing.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { button, el } from "./region_dom.js";
import { addRegionFromBitmap, roomForImport } from "./region_mask_files.js";
import { safeViewRef } from "./region_state.js";

export class MaskOffer {
  // `editor`: the RegionCanvasEditor that gets the regions (its node, state, host, import and undo offer).
  constructor(editor) {
    this.editor = editor;
    this.offer = null; // { batch, total, images, regionIds: mask index -> region id, dismissed }
    const listen = (target, type, handler) => editor.on(target, type, handler);
    this.element = el("div", "ja-rc-note ja-rc-mask-offer", { hidden: true });
    this.text = el("span");
    this.thumbs = el("span", "ja-rc-mask-thumbs");
    this.allButton = button(listen, "Import all", "Add every mask not imported yet as a new region (Undo is offered)",
      () => this.importOffered());
    this.element.append(this.text, this.thumbs, this.allButton,
      button(listen, "✕", "Dismiss (the same masks are not offered again)", () => this.dismiss(), "ja-rc-small"));
  }

  // `offer`: {batch, total, images} from the node's last run. A mask counts as imported while its region is in the
  // drawing (an Undo offers it again); a batch all imported or dismissed is remembered in the node's properties (saved
  // with the workflow) and not offered again when the node runs again.
  show(offer) {
    const editor = this.editor;
    const images = (Array.isArray(offer?.images) ? offer.images : []).map(safeViewRef);
    const batch = typeof offer?.batch === "string" ? offer.batch.slice(0, 64) : "";
    if (!images.length || images.some((ref) => !ref) || !batch) return;
    if (editor.node.properties?.ja_masks_done === batch || this.offer?.batch === batch) return;
    this.offer = { batch, total: Math.max(images.length, Number(offer.total) || 0), images, regionIds: new Map(), dismissed: false };
    this.thumbs.replaceChildren();
    images.forEach((ref, k) => {
      const thumb = el("button", "ja-rc-mask-thumb", { type: "button", title: `Import mask ${k + 1} as a new region` });
      thumb.dataset.index = String(k);
      const img = el("img", "", { alt: `mask ${k + 1}`, src: editor.host.viewURL(ref) });
      thumb.append(img, el("span", "", { textContent: String(k + 1) }));
      // Thumbnails are replaced with the next offer: their listeners go with them.
      thumb.addEventListener("click", () => this.importOffered([k]));
      this.thumbs.appendChild(thumb);
    });
    editor.render();
  }

  async importOffered(which = null) {
    const editor = this.editor;
    const offer = this.offer;
    if (!offer) return;
    const wanted = (which ?? offer.images.map((_, k) => k)).filter((k) => !this.#imported(k));
    const added = [];
    for (const k of wanted) {
      if (!roomForImport(editor)) break;
      let bitmap;
      try {
        const response = await fetch(editor.host.viewURL(offer.images[k]));
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        bitmap = await createImageBitmap(await response.blob());
      } catch (err) {
        editor.message = `Mask ${k + 1} is no longer on the server; run the workflow again to offer it.`;
        editor.render();
        break;
      }
      if (this.offer !== offer) return; // a newer run replaced the offer meanwhile
      const region = addRegionFromBitmap(editor, bitmap);
      offer.regionIds.set(k, region.id);
      added.push(region.name);
    }
    if (!added.length) return;
    const list = added.length === 1 ? added[0] : `${added[0]} to ${added[added.length - 1]}`;
    editor.notes.offerUndo(`Imported ${added.length === 1 ? "a mask" : `${added.length} masks`} from import_masks as ${list}.`);
    editor.commit({ structural: true });
  }

  dismiss() {
    if (!this.offer) return;
    this.offer.dismissed = true;
    this.editor.render();
  }

  #imported(k) {
    const id = this.offer?.regionIds.get(k);
    return id !== undefined && this.editor.state.regions.some((r) => r.id === id);
  }

  sync() {
    const node = this.editor.node;
    const offer = this.offer;
    const n = offer?.images.length ?? 0;
    const used = offer ? offer.images.filter((_, k) => this.#imported(k)).length : 0;
    const open = !!offer && !offer.dismissed && used < n;
    this.element.hidden = !open;
    if (offer && !open && node.properties?.ja_masks_done !== offer.batch) {
      node.properties = node.properties ?? {};
      node.properties.ja_masks_done = offer.batch;
    }
    if (!open) return;
    const more = offer.total > n ? ` (the first ${n} of ${offer.total})` : "";
    this.text.textContent = `${n === 1 ? "A mask" : `${n} masks`} on import_masks${more}: click one to add it as a region.`;
    for (const thumb of this.thumbs.children) {
      const done = this.#imported(Number(thumb.dataset.index));
      thumb.disabled = done;
      thumb.classList.toggle("ja-rc-used", done);
    }
    this.allButton.textContent = used ? `Import the other ${n - used}` : `Import all ${n}`;
  }
}
