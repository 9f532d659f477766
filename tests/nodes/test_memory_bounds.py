"""Issue 15: peak memory of user-sized inputs, read from the process's own peak RSS (fresh process each)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[1] / "support" / "ja_rss_probe.py"
MiB = 1 << 20

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux peak-RSS reset")


def probe(*args) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_canvas_with_32_regions_at_2048_costs_its_masks_output_plus_10_percent():
    got = probe("canvas", 32, 2048)
    assert got["regions"] == 32
    assert got["masks_bytes"] == 32 * 2048 * 2048 * 4
    assert got["extra_peak"] <= 1.10 * got["masks_bytes"], f"{got['extra_peak'] / MiB:.0f} MiB peak"


def test_two_thousand_duplicate_words_cost_no_more_than_one():
    one = probe("words", 1)
    many = probe("words", 2000)
    assert one["maps"] == many["maps"] == 1
    # The 12 KB string and its split list are all that may differ.
    assert many["extra_peak"] <= one["extra_peak"] + 2 * MiB, (one, many)
