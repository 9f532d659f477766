// The Region Canvas toolbar (tools, brush size, snapping, overlay strength, fill/clear, undo/redo, import, zoom,
// full-window editor, help), the keyboard shortcuts of its controls and the help that lists them.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { loadBackgroundFile } from "./region_background.js";
import { button, el, labelled } from "./region_dom.js";
import { KEY_COMMANDS, keyCommand, KEYS } from "./region_keys.js";
import { importMaskFile } from "./region_mask_files.js";

// Symbol-only buttons (the toolbar fits the node's default width); the tooltip names the tool and its key.
const TOOLS = [["select", "⬚", "Select", "V"], ["rect", "▭", "Rectangle", "R"], ["brush", "✎", "Brush", "B"],
  ["eraser", "⌫", "Eraser", "E"], ["lasso", "∿", "Lasso: drag a free shape", "L"],
  ["fill", "▧", "Fill: click an empty (or alike) area to fill it into the selected region", "K"]];

export class RegionToolbar {
  // `editor`: the RegionCanvasEditor the controls act on (its tool choices, edits, undo, import and full window).
  constructor(editor) {
    this.editor = editor;
    this.listen = (target, type, handler) => editor.on(target, type, handler);
    this.element = el("div", "ja-rc-toolbar");
    this.toolButtons = {};
    for (const [tool, symbol, name, key] of TOOLS) {
      const b = button(this.listen, symbol, `${name} (${key})`, () => editor.setTool(tool), "ja-rc-tool");
      b.setAttribute("aria-label", name);
      b.dataset.tool = tool;
      this.toolButtons[tool] = b;
      this.element.appendChild(b);
    }
    this.element.append(...this.#choices(), ...this.#actions());
    this.help = el("div", "ja-rc-help", { hidden: true });
    for (const { keys, does } of KEYS) {
      const row = el("div");
      row.append(el("kbd", "", { textContent: keys }), document.createTextNode(` ${does}`));
      this.help.appendChild(row);
    }
  }

  // The choices that outlive the editor (erase all, add to selected, brush size, snapping, overlay strength).
  #choices() {
    const editor = this.editor;
    this.addBox = el("input", "ja-rc-add-to", { type: "checkbox", checked: editor.addToSelected,
      title: "New shapes go into the selected region instead of starting a new one (A; or hold Shift while drawing)" });
    this.listen(this.addBox, "change", () => editor.setAddToSelected(this.addBox.checked));
    this.eraseAllBox = el("input", "ja-rc-erase-all", { type: "checkbox", checked: editor.eraseAll,
      title: "The eraser removes every region under it, not only the selected one" });
    this.listen(this.eraseAllBox, "change", () => { editor.eraseAll = this.eraseAllBox.checked; editor.savePrefs(); });
    this.sizeInput = el("input", "ja-rc-size", { type: "range", min: 8, max: 256, step: 8, value: editor.brush,
      title: "Brush size in image pixels ([ and ])" });
    this.sizeOut = el("output", "ja-rc-size-value");
    this.listen(this.sizeInput, "input", () => editor.setBrush(Number(this.sizeInput.value)));
    this.hardnessInput = el("input", "ja-rc-hardness", { type: "range", min: 0, max: 100, step: 5,
      value: Math.round(editor.hardness * 100), title: "Brush hardness: 100 % is a hard edge, lower a softer one ({ and })" });
    this.listen(this.hardnessInput, "input", () => editor.setHardness(Number(this.hardnessInput.value) / 100));
    this.snapBox = el("input", "ja-rc-snap-box", { type: "checkbox", checked: editor.snapToGrid,
      title: "Snap rectangles and the brush to the 16 px token grid (G)" });
    this.listen(this.snapBox, "change", () => editor.setSnap(this.snapBox.checked));
    this.opacityInput = el("input", "ja-rc-opacity", { type: "range", min: 10, max: 90, step: 5,
      value: Math.round(editor.opacity * 100), title: "How strongly the regions cover the background" });
    this.opacityOut = el("output", "ja-rc-opacity-value");
    this.listen(this.opacityInput, "input", () => {
      editor.opacity = Number(this.opacityInput.value) / 100;
      editor.savePrefs();
      editor.render();
    });
    const size = el("label", "ja-rc-check ja-rc-size-field", { title: this.sizeInput.title });
    size.append(el("span", "", { textContent: "size" }), this.sizeInput, this.sizeOut);
    const hardness = el("label", "ja-rc-check", { title: this.hardnessInput.title });
    hardness.append(el("span", "", { textContent: "hard" }), this.hardnessInput);
    return [labelled("add", this.addBox, "ja-rc-check"), labelled("erase all", this.eraseAllBox, "ja-rc-check"), size, hardness,
      labelled("snap", this.snapBox, "ja-rc-check"),
      labelled("overlay", this.opacityInput, "ja-rc-check"), this.opacityOut];
  }

  #actions() {
    const editor = this.editor;
    const listen = this.listen;
    this.importFile = el("input", "ja-rc-import-file", { type: "file", accept: "image/*", hidden: true });
    listen(this.importFile, "change", () => {
      const file = this.importFile.files?.[0];
      this.importFile.value = "";
      if (file) importMaskFile(editor, file);
    });
    this.backgroundFile = el("input", "ja-rc-bg-file", { type: "file", accept: "image/*", hidden: true });
    listen(this.backgroundFile, "change", () => {
      const file = this.backgroundFile.files?.[0];
      this.backgroundFile.value = "";
      if (file) loadBackgroundFile(editor, file);
    });
    const backgroundButton = button(listen, "Bg…", "Background…: show a picture under the drawing to trace over (or drop one on the "
      + "drawing); it is saved with the workflow", () => this.backgroundFile.click());
    const importButton = button(listen, "Import…", "Add a region from a mask image, read as Load Image reads a mask: transparent = inside where it has transparency, white = inside otherwise",
      () => this.importFile.click());
    this.fullButton = button(listen, "⤢", "Full-window editor (F, or double-click the canvas)", () => editor.fullWindow.toggle());
    const helpButton = button(listen, "?", "Show the shortcuts", () => { this.help.hidden = !this.help.hidden; });
    // The zoom of the full-window editor: out, the level (click: fit), in.
    this.zoomBox = el("span", "ja-rc-zoom");
    this.zoomValue = button(listen, "", "Fit the picture to the window (0)", () => editor.fullWindow.zoomBy(0), "ja-rc-small ja-rc-zoom-value");
    this.zoomBox.append(button(listen, "−", "Zoom out (-)", () => editor.fullWindow.zoomBy(-1), "ja-rc-small"), this.zoomValue,
      button(listen, "+", "Zoom in (+)", () => editor.fullWindow.zoomBy(1), "ja-rc-small"));
    return [
      button(listen, "Fill", "Fill the selected region (Undo is offered)", () => {
        editor.fill(1);
        editor.notes.offerUndo(`Filled ${editor.current().name}.`);
      }),
      button(listen, "◐", "Invert the selected region: drawn cells become empty and empty ones drawn (I); Undo is offered",
        () => editor.invertSelected()),
      button(listen, "Clear", "Clear the selected region (Del); Undo is offered", () => editor.clearSelected()),
      button(listen, "↶", "Undo (Ctrl+Z)", () => editor.undo()), button(listen, "↷", "Redo (Ctrl+Y or Ctrl+Shift+Z)", () => editor.redo()),
      importButton, this.importFile, backgroundButton, this.backgroundFile, this.zoomBox, this.fullButton, helpButton];
  }

  // The editor's keyboard shortcuts (region_keys.js); keys typed into the editor's text fields are theirs.
  shortcut(e) {
    const editor = this.editor;
    const t = e.target;
    if (t !== editor.keys && (t instanceof HTMLTextAreaElement || t instanceof HTMLInputElement)) return; // native editing
    const command = keyCommand(e, editor.fullWindow.isOpen);
    if (!command) return;
    e.preventDefault();
    e.stopPropagation();
    KEY_COMMANDS[command[0]](editor, command[1]);
  }

  // The controls show the editor's choices (after they were taken over from a previous editor of the node).
  showChoices() {
    const editor = this.editor;
    this.sizeInput.value = editor.brush;
    this.hardnessInput.value = Math.round(editor.hardness * 100);
    this.snapBox.checked = editor.snapToGrid;
    this.opacityInput.value = Math.round(editor.opacity * 100);
    this.eraseAllBox.checked = editor.eraseAll;
    this.addBox.checked = editor.addToSelected;
  }

  showFullWindow(open) {
    this.fullButton.textContent = open ? "✕ Close" : "⤢";
    this.fullButton.title = open ? "Back to the node (Esc)" : "Full-window editor (F, or double-click the canvas)";
  }

  sync() {
    const editor = this.editor;
    this.sizeOut.value = `${editor.brush} px`;
    this.zoomBox.hidden = !editor.fullWindow.isOpen;
    this.zoomValue.textContent = `${Math.round(editor.view.zoom * 100)}%`;
    this.opacityOut.value = `${Math.round(editor.opacity * 100)}%`;
    for (const [tool, b] of Object.entries(this.toolButtons)) b.classList.toggle("active", tool === editor.tool);
  }
}
