"""ComfyUI workflow files: build the UI format from a compact graph, convert it back to an API prompt.

Both directions read the node definitions from `/object_info` (the real server's), so
widget order, combo values and control widgets follow the running ComfyUI.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_TYPES = {"Note", "MarkdownNote"}
MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")

# Layout of a built workflow (graph units): nodes in columns by depth, stacked with their own heights.
# Sizes are what a node needs at least; the frontend only ever makes a node larger than its saved size (its
# minimum size, or its content with Vue node rendering), so columns and rows keep a margin on both.
NODE_WIDTH, MIN_NODE_HEIGHT, COLUMN_GAP, ROW_GAP, ORIGIN = 320, 200, 60, 70, (40, 40)
# Nodes with a large DOM widget: the Region Canvas needs this much for the canvas, two region rows and the list;
# LoadImage shows the loaded picture under its widgets.
NODE_SIZES = {"JointAttentionRegionCanvas": (420, 560), "LoadImage": (320, 440)}
# A widget row: 26 in the classic canvas; Vue node rendering on frontend 1.49 lays some out taller (Region LoRA, 7
# widget rows and a socket: 294 under its title, measured), so rows are counted at 32.
SLOT_HEIGHT, WIDGET_HEIGHT, MULTILINE_HEIGHT, TITLE_HEIGHT = 22, 32, 110, 40


@dataclass
class Node:
    id: int
    type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: str | None = None


def _ordered_inputs(info: dict):
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            yield name, spec


def is_widget(spec) -> bool:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return isinstance(kind, list) or kind in WIDGET_TYPES or "widgetType" in opts


def has_control(name: str, spec) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def upload_value(spec):
    """The value the frontend saves for the upload button it adds after a file combo (LoadImage's `image`:
    `image_upload` gives a button widget saved as "image"), or None."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return "image" if opts.get("image_upload") else None


def node_size(n: Node, info: dict) -> tuple:
    """(width, height) a node of this definition needs at least: its sockets and widgets (multiline text boxes taller),
    or NODE_SIZES for nodes whose widget is a whole editor."""
    if n.type in NODE_SIZES:
        return NODE_SIZES[n.type]
    sockets = widgets = multiline = 0
    for name, spec in _ordered_inputs(info):
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if name in n.links or not is_widget(spec):
            sockets += 1
        elif opts.get("multiline"):
            multiline += 1
        else:
            widgets += 1 + has_control(name, spec) + (upload_value(spec) is not None)
    slots = max(sockets, len(info["output"]))
    height = TITLE_HEIGHT + SLOT_HEIGHT * slots + WIDGET_HEIGHT * widgets + MULTILINE_HEIGHT * multiline
    return NODE_WIDTH, max(MIN_NODE_HEIGHT, height)


def layout(nodes: list, object_info: dict, depth) -> tuple:
    """Positions and sizes by node id: one column per depth (as wide as its widest node), nodes stacked down each
    column in graph order, the tallest last: a node that grows with its content (the Region Canvas with Vue node
    rendering) then pushes nothing below it."""
    sizes = {n.id: node_size(n, object_info[n.type]) for n in nodes}
    columns: dict = {}
    for index, n in enumerate(sorted(nodes, key=depth)):
        columns.setdefault(depth(n), []).append((sizes[n.id][1] >= 2 * MIN_NODE_HEIGHT, index, n.id))
    positions, x = {}, ORIGIN[0]
    for col in sorted(columns):
        y = ORIGIN[1]
        for _, _, node_id in sorted(columns[col]):
            positions[node_id] = (x, y)
            y += sizes[node_id][1] + ROW_GAP
        x += max(sizes[node_id][0] for _, _, node_id in columns[col]) + COLUMN_GAP
    return positions, sizes


def build_ui(nodes: list, object_info: dict, notes: list = ()) -> dict:
    """UI-format workflow (what the frontend saves) for `nodes`; `notes` are (title, text) Note nodes."""
    by_id = {n.id: n for n in nodes}
    depth: dict = {}

    def node_depth(n: Node) -> int:
        if n.id not in depth:
            depth[n.id] = 1 + max((node_depth(by_id[src]) for src, _ in n.links.values()), default=-1)
        return depth[n.id]

    links, out_links, ui_nodes = [], {}, []
    for n in nodes:
        for name, (src, slot) in n.links.items():
            link_id = len(links) + 1
            src_type = object_info[by_id[src].type]["output"][slot]
            links.append([link_id, src, slot, n.id, name, src_type])
            out_links.setdefault((src, slot), []).append(link_id)
    positions, sizes = layout(nodes, object_info, node_depth)
    for order, n in enumerate(sorted(nodes, key=node_depth)):
        info = object_info[n.type]
        inputs, widgets = [], []
        for name, spec in _ordered_inputs(info):
            if name in n.links:
                link = next(link for link in links if link[3] == n.id and link[4] == name)
                entry = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": link[0]}
                # A widget input fed by a link, as the frontend saves it: the input names its widget, and the widget
                # keeps a value in widgets_values (shown again when the link is removed).
                if is_widget(spec):
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            if is_widget(spec):
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if name in n.widgets:
                    value = n.widgets[name]
                elif "default" in opts:
                    value = opts["default"]
                elif isinstance(spec[0], list) and spec[0]:
                    value = spec[0][0]
                else:
                    raise ValueError(f"{n.type}.{name}: no value given and no default")
                widgets.append(value)
                if has_control(name, spec):
                    widgets.append("fixed")
                if upload_value(spec) is not None:
                    widgets.append(upload_value(spec))
        unknown = set(n.widgets) - {name for name, _ in _ordered_inputs(info)}
        if unknown:
            raise ValueError(f"{n.type}: unknown inputs {sorted(unknown)}")
        outputs = [
            {"name": out_name, "type": out_type, "links": out_links.get((n.id, slot), []), "slot_index": slot}
            for slot, (out_name, out_type) in enumerate(zip(info["output_name"], info["output"]))
        ]
        ui = {
            "id": n.id, "type": n.type, "pos": list(positions[n.id]), "size": list(sizes[n.id]),
            "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": n.type}, "widgets_values": widgets,
        }
        if n.title:
            ui["title"] = n.title
        ui_nodes.append(ui)
    next_id = max(by_id) + 1
    for i, (title, text) in enumerate(notes):
        ui_nodes.append({
            "id": next_id + i, "type": "Note", "title": title, "pos": [40, -260 - 280 * i], "size": [520, 220],
            "flags": {}, "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [],
            "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653",
        })
    # Links in UI files name the target slot by index.
    for link in links:
        target = next(u for u in ui_nodes if u["id"] == link[3])
        link[4] = next(i for i, item in enumerate(target["inputs"]) if item["link"] == link[0])
    return {
        "last_node_id": max(u["id"] for u in ui_nodes), "last_link_id": len(links), "nodes": ui_nodes,
        "links": links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
    }


def to_api(workflow: dict, object_info: dict, replace: dict | None = None) -> dict:
    """API prompt for a UI-format workflow. `replace` maps node type -> (new type, inputs) to swap loaders."""
    nodes = {n["id"]: n for n in workflow["nodes"] if n["type"] not in NOTE_TYPES and n.get("mode", 0) == 0}
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node_id, n in nodes.items():
        if replace and n["type"] in replace:
            new_type, inputs = replace[n["type"]]
            prompt[str(node_id)] = {"class_type": new_type, "inputs": copy.deepcopy(inputs)}
            continue
        info = object_info.get(n["type"])
        if info is None:
            raise KeyError(f"node {node_id}: type {n['type']!r} is not installed")
        linked = {item["name"]: item.get("link") for item in n.get("inputs", [])}
        values = list(n.get("widgets_values", []))
        inputs = {}
        for name, spec in _ordered_inputs(info):
            if is_widget(spec):
                if not values:
                    raise ValueError(f"node {node_id} ({n['type']}): no widget value for {name!r}")
                value = values.pop(0)
                if has_control(name, spec) and values and values[0] in ("fixed", "increment", "decrement", "randomize"):
                    values.pop(0)
                if upload_value(spec) is not None and values and values[0] == upload_value(spec):
                    values.pop(0)
                if linked.get(name) is None:
                    inputs[name] = value
                    continue
            link_id = linked.get(name)
            if link_id is not None:
                src = links[link_id]
                inputs[name] = [str(src[1]), src[2]]
        prompt[str(node_id)] = {"class_type": n["type"], "inputs": inputs}
    return prompt


def validate(workflow: dict, object_info: dict) -> list:
    """Problems a user would see on loading: missing node types, widget counts, bad combo values."""
    problems = []
    for n in workflow["nodes"]:
        if n["type"] in NOTE_TYPES:
            continue
        info = object_info.get(n["type"])
        if info is None:
            problems.append(f"node {n['id']}: missing node type {n['type']!r}")
            continue
        values = list(n.get("widgets_values", []))
        for name, spec in _ordered_inputs(info):
            if not is_widget(spec):
                continue
            if not values:
                problems.append(f"node {n['id']} ({n['type']}): missing widget value {name!r}")
                break
            value = values.pop(0)
            if has_control(name, spec) and values and values[0] in ("fixed", "increment", "decrement", "randomize"):
                values.pop(0)
            if upload_value(spec) is not None and values and values[0] == upload_value(spec):
                values.pop(0)
            # Model file combos list the files this server has; a shared workflow names the user's files.
            is_file = isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES)
            if isinstance(spec[0], list) and value not in spec[0] and not is_file:
                problems.append(f"node {n['id']} ({n['type']}): {name}={value!r} is not one of {spec[0]}")
        if values:
            problems.append(f"node {n['id']} ({n['type']}): {len(values)} widget values left over")
    return problems


def owned_view(workflow: dict, owned_types) -> dict:
    """What a workflow file says that its author owns, for comparing two renderings across ComfyUI versions.

    Everything is kept (graph, layout, titles, links, widget values, notes) except the unlinked outputs of nodes
    whose type is not in `owned_types`: those are the host's node definition, not the workflow's (ComfyUI 0.29's
    SaveImage / PreviewImage list an IMAGE output that 0.3.75's do not). Outputs of owned nodes stay whole, so a
    change to one of the pack's own node definitions still shows."""
    view = copy.deepcopy(workflow)
    owned = set(owned_types)
    for node in view["nodes"]:
        if node["type"] in owned or node["type"] in NOTE_TYPES:
            continue
        node["outputs"] = [out for out in node.get("outputs", []) if out.get("links")]
    return view
