"""Record the outcome of every `works_with`-marked test (tests/nodes/test_compose.py) per host, for the
"Works with" table of docs/works-with.md (scripts/works_with.py writes the table from these records).

Each test run that ran marked tests merges its outcomes into .host/works_with/HOST.json (HOST as in
scripts/tested_on.py: custom with COMFYUI_PATH, else JA_HOST, else pinned): per test function, how many of its
cases passed, failed and were skipped (with the reason), the host's ComfyUI version and the date.
"""
from __future__ import annotations

import datetime
import json
import os

from ja_host import ROOT, host_version

MARKER = "works_with"
RECORDS = ROOT / ".host" / "works_with"


class Recorder:
    def __init__(self):
        self.tests: dict = {}

    def report(self, item, report) -> None:
        if item.get_closest_marker(MARKER) is None or item.get_closest_marker("family_skipped") is not None:
            return  # a family the test family list keeps off the scenario is no outcome of the combination
        if report.when != "call" and report.passed:
            return  # setup / teardown that went well: the call's report counts
        entry = self.tests.setdefault(item.originalname or item.name,
                                      {"passed": 0, "failed": 0, "skipped": 0, "skip_reason": ""})
        if report.skipped:
            entry["skipped"] += 1
            longrepr = report.longrepr
            if isinstance(longrepr, tuple) and len(longrepr) == 3:
                entry["skip_reason"] = str(longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            entry["failed"] += 1
        else:
            entry["passed"] += 1

    def write(self) -> None:
        if not self.tests:
            return
        name = "custom" if os.environ.get("COMFYUI_PATH") else (os.environ.get("JA_HOST") or "pinned")
        path = RECORDS / f"{name}.json"
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            old = {}
        record = {"host": name, "comfyui": host_version(), "date": datetime.date.today().isoformat(),
                  "tests": {**old.get("tests", {}), **self.tests}}
        RECORDS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
