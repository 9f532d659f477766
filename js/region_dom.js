// Small DOM helpers of the Region Canvas modules. ComfyUI loads every .js file of the pack as an extension: this
// module only declares functions.

export function el(tag, className, props = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  Object.assign(node, props);
  return node;
}

export function labelled(text, input, className = "ja-rc-field") {
  const label = el("label", className);
  label.append(el("span", "", { textContent: text }), input);
  return label;
}

// A button whose click listener goes through `listen` (an editor's `on`, so that destroy() removes it).
export function button(listen, label, title, fn, className = "ja-rc-action") {
  const b = el("button", className, { type: "button", textContent: label, title });
  listen(b, "click", fn);
  return b;
}

// Elements that keep the keyboard for typing (the drawing's own focus is a read-only text area of its own).
export function takesText(target) {
  if (target instanceof HTMLTextAreaElement) return !target.readOnly;
  if (target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && ["text", "number", "search", "color", "file"].includes(target.type);
}
