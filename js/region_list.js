// The region list under the drawing: one row per region (colour, visibility, strength, feather, LoRA, export, order,
// remove, prompt with its character count, and what was wrong with the region when it was loaded).
// Import-safe: ComfyUI loads every .js file of the pack as an extension; this one only declares a class.
import { el, labelled } from "./region_dom.js";
import { downloadRegionMask } from "./region_mask_files.js";
import { LORA_STRENGTH, MAX_FEATHER, MAX_NAME, MAX_PROMPT } from "./region_state.js";

// Listeners on rows die with the rows (the list is rebuilt with replaceChildren): they are added directly, not
// through the editor's on().
function listen(target, type, handler) {
  target.addEventListener(type, handler);
}

export class RegionList {
  // `editor`: the RegionCanvasEditor the rows edit (its state, selection, commit, undo offer and export).
  constructor(editor) {
    this.editor = editor;
    this.element = el("div", "ja-rc-list");
  }

  render() {
    const editor = this.editor;
    this.element.replaceChildren();
    editor.selected = Math.max(0, Math.min(editor.selected, editor.state.regions.length - 1));
    editor.state.regions.forEach((r, i) => this.element.appendChild(this.#row(r, i)));
    this.element.classList.toggle("empty", !editor.state.regions.length);
  }

  markSelected(i) {
    [...this.element.children].forEach((row, j) => row.classList.toggle("selected", j === i));
  }

  #row(r, i) {
    const row = el("div", `ja-rc-region${i === this.editor.selected ? " selected" : ""}`);
    row.style.setProperty("--ja-region-color", r.color);
    const note = el("div", "ja-rc-row-note", { hidden: true });
    row.append(this.#head(row, note, r, i), this.#prompt(r, i), note);
    listen(row, "pointerdown", () => this.editor.select(i));
    if (r.problem) {
      const problem = el("div", "ja-rc-problem", { textContent: r.problem });
      const dismiss = el("button", "ja-rc-small", { type: "button", textContent: "✕", title: "Dismiss" });
      listen(dismiss, "click", () => { delete r.problem; problem.remove(); row.classList.remove("ja-rc-bad-row"); });
      problem.appendChild(dismiss);
      row.append(problem);
      row.classList.add("ja-rc-bad-row");
    }
    return row;
  }

  #head(row, note, r, i) {
    const editor = this.editor;
    const head = el("div", "ja-rc-region-head");
    const swatch = el("input", "ja-rc-color", { type: "color", value: r.color, title: "Colour of this region" });
    listen(swatch, "input", () => { r.color = swatch.value; row.style.setProperty("--ja-region-color", r.color); editor.commit({ record: false }); });
    listen(swatch, "change", () => { r.color = swatch.value; editor.commit(); });
    const visible = el("input", "ja-rc-visible", { type: "checkbox", checked: !r.hidden, title: "Visible (hidden regions are not used)" });
    listen(visible, "change", () => { r.hidden = !visible.checked; editor.commit(); });
    // Hidden from view only: the canvas leaves it out, the output keeps it.
    const eye = el("button", `ja-rc-small ja-rc-eye${r.viewHidden ? " off" : ""}`, { type: "button", textContent: r.viewHidden ? "◌" : "◉",
      title: r.viewHidden ? "Hidden on the canvas only (still used): show it" : "Hide on the canvas only (it is still used; the checkbox turns it off)" });
    listen(eye, "click", () => {
      r.viewHidden = !r.viewHidden;
      editor.commit({ structural: true });
    });
    // How strongly the canvas shows this region (view only, saved with the drawing): a small upright slider.
    const opacity = el("input", "ja-rc-region-opacity", { type: "range", min: 0, max: 100, step: 5,
      value: Math.round(100 * (r.opacity ?? 1)), title: `Opacity on the canvas: ${Math.round(100 * (r.opacity ?? 1))} % (view only)` });
    const setOpacity = (record) => {
      r.opacity = Number(opacity.value) / 100;
      opacity.title = `Opacity on the canvas: ${opacity.value} % (view only)`;
      editor.commit({ record });
    };
    listen(opacity, "input", () => setOpacity(false));
    listen(opacity, "change", () => setOpacity(true));
    const name = this.#name(r);
    const strength = el("input", "ja-rc-strength", { type: "number", min: 0, max: 4, step: 0.05, value: r.strength });
    const feather = el("input", "ja-rc-feather", { type: "number", min: 0, max: MAX_FEATHER, step: 8, value: r.feather ?? 0 });
    this.#numberField(note, strength, { label: "strength", lo: 0, hi: 4, integer: false, inUse: () => r.strength },
      (v) => { r.strength = v; });
    this.#numberField(note, feather, { label: "feather", lo: 0, hi: MAX_FEATHER, integer: true, inUse: () => r.feather ?? 0 },
      (v) => { r.feather = v; editor.touch(r); });
    const buttons = [["⤓", "Save this region's mask as a PNG (width × height, soft where feathered; white and transparent inside, so "
      + "Load Image (as Mask) reads it with its default channel): the same as its mask in the masks output", () => downloadRegionMask(editor.state, i)],
    ["▲", "Move up", () => this.#move(i, -1)], ["▼", "Move down", () => this.#move(i, 1)],
      ["✕", "Remove this region (Undo is offered)", () => this.#remove(i)]].map(([label, title, fn]) => {
      const b = el("button", "ja-rc-small", { type: "button", textContent: label, title });
      listen(b, "click", fn);
      return b;
    });
    head.append(swatch, visible, eye, opacity, name, labelled("strength", strength), labelled("feather", feather),
      this.#loraButton(row, r), ...buttons);
    feather.title = `Soft edge in pixels (0-${MAX_FEATHER}): the mask fades over this distance on each side of its border`;
    strength.title = "How strongly the region's prompt holds inside its mask (0-4)";
    return head;
  }

  // The region's LoRA: one small button in the head (lit when a LoRA is chosen) opening a picker under it, so the head
  // stays one line. The picker lists the loras folder (GET /models/loras through the editor's host).
  #loraButton(row, r) {
    const button = el("button", "ja-rc-small ja-rc-lora", { type: "button", textContent: "L" });
    const show = () => {
      button.classList.toggle("on", !!r.lora);
      button.title = r.lora ? `LoRA on this region: ${r.lora.name} × ${r.lora.strength} (click to change)`
        : "Give this region a LoRA (it acts on this region only, as the Region LoRA node)";
    };
    show();
    listen(button, "click", () => {
      const open = row.querySelector(".ja-rc-lora-picker");
      if (open) open.remove();
      else row.insertBefore(this.#loraPicker(r, show), row.children[1] ?? null);
    });
    return button;
  }

  #loraPicker(r, show) {
    const editor = this.editor;
    const picker = el("div", "ja-rc-lora-picker");
    const select = el("select", "ja-rc-lora-name");
    select.setAttribute("aria-label", "LoRA file");
    const strength = el("input", "ja-rc-lora-strength", { type: "number", min: -LORA_STRENGTH, max: LORA_STRENGTH, step: 0.05,
      value: r.lora?.strength ?? 1, title: `The LoRA's strength (-${LORA_STRENGTH} to ${LORA_STRENGTH})` });
    const close = el("button", "ja-rc-small", { type: "button", textContent: "✕", title: "Close" });
    const note = el("span", "ja-rc-lora-note");
    const fill = (names) => {
      const choices = [["", "no LoRA"], ...names.map((n) => [n, n])];
      if (r.lora && !names.includes(r.lora.name)) choices.push([r.lora.name, `${r.lora.name} (not in the loras folder)`]);
      select.replaceChildren(...choices.map(([value, text]) => el("option", "", { value, textContent: text })));
      select.value = r.lora?.name ?? "";
    };
    fill([]);
    const apply = () => {
      const v = Number(strength.value);
      const ok = strength.value.trim() !== "" && Number.isFinite(v) && Math.abs(v) <= LORA_STRENGTH;
      strength.classList.toggle("invalid", !ok);
      note.textContent = ok ? "" : `strength must be between -${LORA_STRENGTH} and ${LORA_STRENGTH}`;
      if (!select.value) delete r.lora;
      else r.lora = { name: select.value, strength: ok ? v : (r.lora?.strength ?? 1) };
      show();
      editor.commit();
    };
    listen(select, "change", apply);
    listen(strength, "change", apply);
    listen(close, "click", () => picker.remove());
    picker.append(labelled("LoRA", select), labelled("strength", strength), close, note);
    Promise.resolve(editor.host?.loraNames?.() ?? []).then(fill,
      (err) => { note.textContent = `the loras folder could not be listed (${err.message})`; });
    return picker;
  }

  // The region's name; a double-click turns it into a text field (Enter or leaving it keeps the new name, Esc does not).
  #name(r) {
    const name = el("span", "ja-rc-name", { textContent: r.name, title: "Double-click to rename" });
    listen(name, "dblclick", (e) => {
      e.stopPropagation();
      const field = el("input", "ja-rc-rename", { type: "text", value: r.name, maxLength: MAX_NAME });
      field.setAttribute("aria-label", "Region name");
      let done = false;
      const finish = (keep) => {
        if (done) return;
        done = true;
        const text = field.value.trim();
        field.replaceWith(name);
        if (!keep || !text || text === r.name) return;
        r.name = text;
        this.editor.commit({ structural: true });
      };
      listen(field, "keydown", (k) => {
        if (k.key === "Enter" || k.key === "Escape") {
          k.preventDefault();
          k.stopPropagation();
          finish(k.key === "Enter");
        }
      });
      listen(field, "blur", () => finish(true));
      name.replaceWith(field);
      field.focus();
      field.select();
    });
    return name;
  }

  // A number typed in a row is used while it is valid; an invalid one is shown as such and said in the row's note.
  #numberField(note, input, { label, lo, hi, integer, inUse }, apply) {
    const check = () => {
      const v = Number(input.value);
      const ok = input.value.trim() !== "" && Number.isFinite(v) && v >= lo && v <= hi && (!integer || Number.isInteger(v));
      input.classList.toggle("invalid", !ok);
      note.hidden = ok;
      note.textContent = ok ? "" : `${label} must be ${integer ? "a whole number " : ""}between ${lo} and ${hi}; ${input.value || "empty"} is not used.`;
      return ok ? v : null;
    };
    listen(input, "input", () => { const v = check(); if (v !== null) { apply(v); this.editor.commit({ record: false }); } });
    listen(input, "change", () => { if (check() !== null) this.editor.commit(); });
    listen(input, "blur", () => {
      if (check() === null) {
        // Not silently clamped: the row says what was wrong, the field shows the value in use.
        input.value = inUse();
        input.classList.remove("invalid");
      }
    });
  }

  #prompt(r, i) {
    const editor = this.editor;
    const prompt = el("textarea", "ja-rc-prompt comfy-multiline-input", { value: r.prompt, placeholder: `${r.name} prompt`,
      rows: 2, maxLength: MAX_PROMPT });
    prompt.setAttribute("aria-label", `${r.name} prompt`);
    const counter = el("div", "ja-rc-counter");
    const showCount = () => {
      counter.textContent = `${r.prompt.length} / ${MAX_PROMPT}`;
      counter.classList.toggle("ja-rc-bad", r.prompt.length > MAX_PROMPT);
      counter.classList.toggle("ja-rc-near", r.prompt.length > 0.9 * MAX_PROMPT);
    };
    showCount();
    // Committed on every keystroke (Ctrl+Enter queues what is in the box); one history step per edit session.
    listen(prompt, "input", () => {
      let text = prompt.value;
      if (text.length > MAX_PROMPT && text.length > r.prompt.length) {
        text = text.slice(0, Math.max(MAX_PROMPT, r.prompt.length));
        prompt.value = text;
      }
      r.prompt = text;
      showCount();
      editor.commit({ record: false });
    });
    listen(prompt, "change", () => editor.commit());
    listen(prompt, "focus", () => editor.select(i));
    const wrap = el("div", "ja-rc-prompt-wrap");
    wrap.append(prompt, counter);
    return wrap;
  }

  #move(i, delta) {
    const editor = this.editor;
    const j = i + delta;
    if (j < 0 || j >= editor.state.regions.length) return;
    const regions = editor.state.regions;
    [regions[i], regions[j]] = [regions[j], regions[i]];
    editor.selected = j;
    editor.commit({ structural: true });
  }

  #remove(i) {
    const editor = this.editor;
    const [r] = editor.state.regions.splice(i, 1);
    editor.selected = Math.max(0, Math.min(editor.selected, editor.state.regions.length - 1));
    const what = r.prompt ? ` (“${r.prompt.length > 40 ? `${r.prompt.slice(0, 40)}…` : r.prompt}”)` : "";
    editor.notes.offerUndo(`Removed ${r.name}${what}.`);
    editor.commit({ structural: true });
  }
}
