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


def render(mappings: dict, display: dict) -> str:
    lines = ["# Node reference", "", "Generated from the node definitions by `scripts/node_reference.py`; do not edit by hand.", ""]
    for key, cls in mappings.items():
        lines += [f"## {display.get(key, key)} (`{key}`)", "", f"Category: `{cls.CATEGORY}`", ""]
        if getattr(cls, "DESCRIPTION", ""):
            lines += [cls.DESCRIPTION, ""]
        lines += ["| input | type | default | range | tooltip |", "|---|---|---|---|---|"]
        spec = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, (kind, *rest) in spec.get(group, {}).items():
                opts = rest[0] if rest else {}
                kind_text = " / ".join(map(str, kind)) if isinstance(kind, (list, tuple)) else str(kind)
                if opts.get("widgetType"):
                    kind_text = f"{kind_text} (widget {opts['widgetType']})"
                rng = f"{opts['min']} to {opts['max']}" if "min" in opts and "max" in opts else ""
                default = opts.get("default", "")
                if isinstance(default, str) and len(default) > 40:
                    default = default[:37] + "..."
                optional = " (optional)" if group == "optional" else ""
                lines.append(f"| `{name}`{optional} | {_cell(kind_text)} | {_cell(default)} | {rng} | {_cell(opts.get('tooltip', ''))} |")
        lines += ["", "| output | type | tooltip |", "|---|---|---|"]
        names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
        tips = getattr(cls, "OUTPUT_TOOLTIPS", ("",) * len(cls.RETURN_TYPES))
        for name, kind, tip in zip(names, cls.RETURN_TYPES, tips):
            lines.append(f"| `{name}` | {_cell(kind)} | {_cell(tip)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import ja_host

    pack = ja_host.load_pack()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(render(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS))
    print(f"[node_reference] wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
