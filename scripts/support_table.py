"""Write the README's model-support table from the family modules (families/: supported and refused entries).

Usage: .venv/bin/python scripts/support_table.py   (tests/nodes/test_docs.py fails when the README's table is stale)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- support table", "<!-- end support table -->"


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import ja_host

    ja_host.load_pack()
    from joint_attention_pack.families import support_table

    text = README.read_text()
    begin = text.index(BEGIN)
    begin = text.index("\n", begin) + 1  # keep the marker line
    end = text.index(END)
    README.write_text(text[:begin] + support_table() + "\n" + text[end:])


if __name__ == "__main__":
    main()
