// Region Canvas registration: the ComfyUI extension that gives the JointAttentionRegionCanvas node its editor widget
// and connects the editor to the node's lifecycle. The only region_*.js module with an effect on import (ComfyUI loads
// every .js file of the pack as an extension: the others only declare); the editor is in region_editor.js.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { NodeHandover } from "./region_handover.js";
import { RegionCanvasEditor } from "./region_editor.js";
import { safeViewRef } from "./region_state.js";

export { RegionCanvasEditor };

const WIDGET = "JA_REGION_CANVAS";
const NODE_TYPE = "JointAttentionRegionCanvas";
const MIN_NODE = [420, 600]; // the default size too (the width / height outputs take two slot rows above the drawing)
const BACKGROUND_FOLDER = "joint_attention_canvas"; // under the input folder, as nodes/canvas.py keeps a run's background

// The module's state, all of it: what outlives the editors of nodes ComfyUI rebuilds (graph undo, a workflow loaded):
// choices, undo histories, Vue widget containers, by node id. Each node reaches its editor as node.jaRegionEditor,
// which goes with the node.
const handover = new NodeHandover();

// What the editor needs of ComfyUI.
const host = {
  // Whether nodes are drawn by Vue (they size to their content) rather than on the classic canvas.
  vueNodes: () => app.ui?.settings?.getSettingValue?.("Comfy.VueNodes.Enabled") === true,
  // ComfyUI's change tracker takes a snapshot of the graph when LiteGraph says a change ended.
  graphChanged() {
    const canvas = app.canvas;
    if (!canvas?.emitBeforeChange || !canvas?.emitAfterChange) return;
    canvas.emitBeforeChange();
    canvas.emitAfterChange();
  },
  // A picture chosen or dropped in the editor, stored in the input folder beside the backgrounds of runs; its view
  // reference ({ filename, subfolder, type }), or an Error saying why not.
  async uploadBackground(file, filename) {
    const body = new FormData();
    body.append("image", file, filename);
    body.append("subfolder", BACKGROUND_FOLDER);
    body.append("type", "input");
    body.append("overwrite", "true");
    const response = await api.fetchApi("/upload/image", { method: "POST", body });
    if (response.status !== 200) throw new Error(`the server answered ${response.status} ${response.statusText}`);
    const saved = await response.json();
    return { filename: saved.name, subfolder: saved.subfolder ?? "", type: saved.type ?? "input" };
  },
  // The loras folder's files as the server lists them (what a region's LoRA picker offers).
  async loraNames() {
    const response = await api.fetchApi("/models/loras");
    if (response.status !== 200) throw new Error(`the server answered ${response.status} ${response.statusText}`);
    return response.json();
  },
  viewURL(ref) {
    const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? "", type: ref.type ?? "temp" });
    return api.apiURL(`/view?${query}`);
  },
};

function loadStylesheet() {
  const href = new URL("./region_canvas.css", import.meta.url).href;
  if (!document.querySelector(`link[href="${href}"]`)) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }
}

// Node callbacks are chained, never replaced: the frontend and other extensions set them too.
function chain(object, name, fn) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    fn.apply(this, args);
    return result;
  };
}

function addEditorWidget(node, inputName, inputData) {
  loadStylesheet();
  const editor = new RegionCanvasEditor(node, inputData?.[1]?.default ?? "", { host, handover });
  const widget = node.addDOMWidget(inputName, WIDGET, editor.root, {
    getValue: () => editor.getValue(),
    setValue: (v) => editor.setValue(v),
    getMinHeight: () => 420,
    socketless: true,
    hideOnZoom: false,
  });
  node.jaRegionEditor = editor;
  return { widget, minWidth: MIN_NODE[0], minHeight: MIN_NODE[1] };
}

function hookNodeLifecycle(nodeType) {
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
  // Configured (its id is the saved one): the editor takes what the removed editor of this node left. The background
  // of the last run is remembered in the node's properties (saved with the workflow) and shown again after a reload
  // while the server still has the file.
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
}

app.registerExtension({
  name: "joint_attention.region_canvas",
  getCustomWidgets() {
    return { [WIDGET]: addEditorWidget };
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === NODE_TYPE) hookNodeLifecycle(nodeType);
  },
});
