// The node view: the drawing area inside the node. The stage holds the canvas, the drawing's keyboard focus and the
// notes floating over it; in the node it is as wide as the node and has the picture's shape, and a double-click opens
// the full-window editor.
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { loadBackgroundFile } from "./region_background.js";
import { el } from "./region_dom.js";

export class NodeView {
  // `editor`: the RegionCanvasEditor whose canvas, keyboard focus and notes the stage holds.
  constructor(editor, floatingNotes) {
    this.editor = editor;
    this.stage = el("div", "ja-rc-stage");
    this.stage.append(editor.canvas, editor.keys, floatingNotes);
    editor.observeResize(this.stage, () => editor.render());
    // A picture dropped on the drawing becomes its background; the page never sees the drop (ComfyUI would open the
    // file as a workflow).
    editor.on(this.stage, "dragover", (e) => {
      if (!e.dataTransfer?.types?.includes("Files")) return;
      e.preventDefault();
      e.stopPropagation();
      e.dataTransfer.dropEffect = "copy";
    });
    editor.on(this.stage, "drop", (e) => {
      const file = e.dataTransfer?.files?.[0];
      if (!file) return;
      e.preventDefault();
      e.stopPropagation();
      loadBackgroundFile(editor, file);
    });
    editor.on(editor.canvas, "dblclick", (e) => {
      e.preventDefault();
      e.stopPropagation();
      if (!editor.fullWindow.isOpen) editor.fullWindow.open();
    });
  }

  // The stage asks for the node's width in the image's shape; classic nodes (a fixed widget height) shrink it to leave
  // the region list its rows, Vue nodes grow with their content. Adding regions never resizes the canvas.
  fitStage() {
    const { stage, canvas, root, state, host } = this.editor;
    const { width, height } = state;
    const sw = Math.max(32, stage.clientWidth);
    // Vue node rendering sizes nodes to their content; the classic canvas gives DOM widgets a fixed height.
    const content = host.vueNodes();
    root.classList.toggle("ja-rc-content-sized", content);
    const want = Math.round(Math.min(sw * (height / width), 2 * sw));
    if (stage.style.height !== `${want}px`) stage.style.height = `${want}px`;
    stage.style.flex = "";
    const sh = content ? want : Math.min(want, stage.clientHeight || want);
    const s = Math.min(sw / width, Math.max(16, sh) / height);
    const w = Math.max(16, Math.floor(width * s));
    const h = Math.max(16, Math.floor(height * s));
    Object.assign(canvas.style, { width: `${w}px`, height: `${h}px`, left: `${Math.floor((sw - w) / 2)}px`, top: "0" });
  }
}
