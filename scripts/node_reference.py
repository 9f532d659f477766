"""Write docs/NODES.md from the node definitions (every node, input, default, range and tooltip).

Usage: .venv/bin/python scripts/node_reference.py   (a test fails when docs/NODES.md is stale)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "NODES.md"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(infos: dict) -> str:
    """docs/NODES.md from the nodes' definitions as the server serves them (node id -> /object_info entry)."""
    lines = ["# Node reference", "", "Generated from the node definitions by `scripts/node_reference.py`; do not edit by hand.",
             "How the nodes work together: the [README](../README.md) and its manuals.", ""]
    for key, info in infos.items():
        lines += [f"## {info.get('display_name') or key} (`{key}`)", "", f"Category: `{info['category']}`", ""]
        if info.get("description"):
            lines += [info["description"], ""]
        lines += ["| input | type | default | range | tooltip |", "|---|---|---|---|---|"]
        for group in ("required", "optional"):
            for name, (kind, *rest) in info["input"].get(group, {}).items():
                opts = rest[0] if rest else {}
                if kind == "COMBO":
                    kind = opts.get("options", kind)
                kind_text = " / ".join(map(str, kind)) if isinstance(kind, (list, tuple)) else str(kind)
                folder = _file_list_folder(kind)
                if folder:  # the files this machine has: the reference names the folder instead
                    kind_text = f"a file of the `{folder}` folder"
                if opts.get("widgetType"):
                    kind_text = f"{kind_text} (widget {opts['widgetType']})"
                rng = f"{opts['min']} to {opts['max']}" if "min" in opts and "max" in opts else ""
                default = opts.get("default", "")
                if isinstance(default, str) and len(default) > 40:
                    default = default[:37] + "..."
                optional = " (optional)" if group == "optional" else ""
                lines.append(f"| `{name}`{optional} | {_cell(kind_text)} | {_cell(default)} | {rng} | {_cell(opts.get('tooltip', ''))} |")
        lines += ["", "| output | type | tooltip |", "|---|---|---|"]
        for name, kind, tip in zip(info["output_name"], info["output"], info["output_tooltips"]):
            lines.append(f"| `{name}` | {_cell(kind)} | {_cell(tip or '')} |")
        lines.append("")
    return "\n".join(lines)


def _file_list_folder(kind):
    """The model folder whose file list a combo offers (Region LoRA's `lora_name`), or None."""
    import folder_paths

    if not isinstance(kind, (list, tuple)):
        return None
    for folder in ("loras",):
        if list(kind) == folder_paths.get_filename_list(folder):
            return folder
    return None


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import ja_host

    ja_host.load_pack()
    from joint_attention_pack.nodes import node_info

    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(render(node_info()))
    print(f"[node_reference] wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

