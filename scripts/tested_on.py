"""Record which host a test run used, and write the "Tested on" table of docs/testing.md from the recorded runs.

Usage:
  python scripts/tested_on.py --record --junit FILE   (run by `make test` / `make test-latest` after pytest passed,
                                                       with that host's Python; writes .host/tested_on/NAME.json)
  python scripts/tested_on.py --docs                  (rewrites the table in docs/testing.md from those records)

The host is the one the tests booted (tests/support/ja_host.py: COMFYUI_PATH, else JA_HOST, else the pinned host).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / ".host" / "tested_on"
PAGE = ROOT / "docs" / "testing.md"
START, END = "<!-- tested-on:start -->", "<!-- tested-on:end -->"
ORDER = ("pinned", "latest", "custom")
# Upstream dates of the hosts this project provisions (for the table only; tests never branch on versions).
UPSTREAM = {"0.3.75": "2025-11 (tag v0.3.75)", "0.29.0": "2026-07-29 (commit 4f874c5e)",
            "0.33.0": "2026-08-22 (commit 783545f6)"}


def _host() -> tuple[str, Path]:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import ja_host

    name = "custom" if os.environ.get("COMFYUI_PATH") else (os.environ.get("JA_HOST") or "pinned")
    return name, ja_host.host_path()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _counts(junit: Path) -> dict:
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    total["seconds"] = round(sum(float(s.get("time", 0)) for s in suites))
    return total


def record(junit: Path) -> Path:
    import torch

    name, path = _host()
    ns: dict = {}
    exec((path / "comfyui_version.py").read_text(), ns)
    version = ns["__version__"]
    facts = {
        "host": name, "comfyui": version, "upstream": UPSTREAM.get(version, "-"),
        "frontend": _version("comfyui-frontend-package"), "python": platform.python_version(),
        "torch": _version("torch"), "torchaudio": _version("torchaudio"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU",
        "date": datetime.date.today().isoformat(), **_counts(junit),
    }
    RECORDS.mkdir(parents=True, exist_ok=True)
    out = RECORDS / f"{name}.json"
    out.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"[tested_on] {name}: ComfyUI {version}, {facts['passed']} passed, {facts['skipped']} skipped "
          f"in {facts['seconds']} s -> {out.relative_to(ROOT)}")
    return out


def table(records: list) -> str:
    rows = ["| host | ComfyUI | upstream | frontend | Python | torch | device | tests (run date) |",
            "|---|---|---|---|---|---|---|---|"]
    command = {"pinned": "`make test`", "latest": "`make test-latest`", "custom": "`COMFYUI_PATH=...`"}
    for r in records:
        torch_text = r["torch"] + (f" + torchaudio {r['torchaudio']}" if r.get("torchaudio", "-") != "-" else "")
        rows.append(f"| {r['host']} ({command.get(r['host'], '')}) | {r['comfyui']} | {r['upstream']} | {r['frontend']} "
                    f"| {r['python']} | {torch_text} | {r['device']} | {r['passed']} passed, {r['skipped']} skipped "
                    f"({r['date']}) |")
    return "\n".join(rows)


def write_page() -> None:
    records = [json.loads((RECORDS / f"{name}.json").read_text()) for name in ORDER if (RECORDS / f"{name}.json").is_file()]
    if not records:
        raise SystemExit("[tested_on] no recorded runs under .host/tested_on: run `make test` / `make test-latest` first")
    text = PAGE.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"[tested_on] {PAGE.relative_to(ROOT)} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n{table(records)}\n{END}{tail}")
    print(f"[tested_on] {PAGE.relative_to(ROOT)}: {', '.join(r['host'] + ' ' + r['comfyui'] for r in records)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--junit", type=Path)
    # --readme: the option's name from when the table lived in README.md.
    parser.add_argument("--docs", "--readme", dest="docs", action="store_true")
    args = parser.parse_args()
    if args.record:
        if not args.junit:
            parser.error("--record needs --junit")
        record(args.junit)
    if args.docs:
        write_page()
    if not (args.record or args.docs):
        parser.error("give --record and/or --docs")


if __name__ == "__main__":
    main()
