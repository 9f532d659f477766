"""The "Works with" table of docs/works-with.md: which nodes and packs the pack was tested combined with, on which host, with what result.

The rows are the tests marked `@pytest.mark.works_with(combined_with, pack_nodes, check)` (tests/nodes/test_compose.py
and any other test file); the results are what the last test runs on each host recorded under .host/works_with/
(tests/conftest.py writes HOST.json after every run that ran such tests). Nothing in the table is typed by hand.

Usage:
  python scripts/works_with.py --docs       (rewrites the table in docs/works-with.md; `make tested-on` runs it)
  python scripts/works_with.py --print      (prints the table)
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
RECORDS = ROOT / ".host" / "works_with"
PAGE = ROOT / "docs" / "works-with.md"
START, END = "<!-- works-with:start -->", "<!-- works-with:end -->"
ORDER = ("pinned", "latest", "custom")
MARKER = "works_with"


def _marker_args(decorator) -> list | None:
    """The string arguments of `@works_with(...)` / `@pytest.mark.works_with(...)`, else None."""
    if not isinstance(decorator, ast.Call):
        return None
    func = decorator.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != MARKER:
        return None
    return [a.value for a in decorator.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def compositions() -> list[dict]:
    """Every marked test: file (relative to tests/), test name, what it is combined with, pack nodes, check."""
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                args = _marker_args(decorator)
                if args is not None and len(args) == 3:
                    found.append({"file": path.relative_to(TESTS).as_posix(), "test": node.name,
                                  "with": args[0], "pack": args[1], "check": args[2]})
    return found


def records() -> list[dict]:
    return [json.loads((RECORDS / f"{name}.json").read_text()) for name in ORDER if (RECORDS / f"{name}.json").is_file()]


def _cell(result: dict | None) -> str:
    if not result:
        return "not run"
    passed, failed, skipped = result.get("passed", 0), result.get("failed", 0), result.get("skipped", 0)
    if failed:
        return f"**failed** ({failed} of {passed + failed + skipped})"
    if passed:
        return f"passed ({passed})" + (f", {skipped} skipped" if skipped else "")
    reason = (result.get("skip_reason") or "skipped").rstrip(".")
    return f"skipped: {reason}"


def table(rows: list[dict], runs: list[dict]) -> str:
    hosts = [f"ComfyUI {r['comfyui']} ({r['host']}, {r['date']})" for r in runs]
    head = ["combined with", "pack nodes", "checked", *hosts, "test"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_cell(run["tests"].get(row["test"])) for run in runs]
        test = f"`tests/{row['file']}::{row['test']}`"
        lines.append("| " + " | ".join([row["with"], row["pack"], row["check"], *cells, test]) + " |")
    return "\n".join(lines)


def write_page() -> None:
    text = PAGE.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"[works_with] {PAGE.relative_to(ROOT)} has no {START} ... {END} section")
    runs = records()
    if not runs:
        raise SystemExit("[works_with] no recorded runs under .host/works_with: run the tests on a host first")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{table(compositions(), runs)}\n{END}{tail}")
    print(f"[works_with] {PAGE.relative_to(ROOT)}: {len(compositions())} combinations, hosts "
          f"{', '.join(r['host'] + ' ' + r['comfyui'] for r in runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # --readme: the option's name from when the table lived in README.md.
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true")
    parser.add_argument("--print", action="store_true")
    args = parser.parse_args()
    if args.docs:
        write_page()
    elif args.print:
        print(table(compositions(), records()))
    else:
        parser.error("give --docs or --print")


if __name__ == "__main__":
    main()
