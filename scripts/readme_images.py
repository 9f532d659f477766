"""Pictures the browser tests take for README.md and the docs pages: where each comes from, how it is refreshed.

The browser tests write their screenshots to tests/artifacts/ (not committed). The ones README.md or a docs page
(docs/canvas.md) shows are copied from there to docs/images/ by `refresh`, which the test that takes a picture calls
right after taking it, on the pinned host (the host the docs describe). The copy is made only when the new screenshot looks different (another
size, or pixels that changed beyond anti-aliasing noise), so re-running the tests does not churn the committed files.

Usage: .venv/bin/python scripts/readme_images.py   (lists each picture, its test, and whether it is committed)
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_IMAGES = ROOT / "docs" / "images"

# Picture shown by README.md or a docs page (under docs/images/) -> the browser test that takes it.
IMAGES = {
    "region_canvas.png": "tests/browser/test_canvas.py::test_draw_queue_save_and_reload",
    "region_canvas_background.png": "tests/browser/test_canvas_background.py::test_background_keeps_its_shape_survives_a_reload_and_can_be_traced",
    "region_canvas_handles.png": "tests/browser/test_canvas_shapes.py::test_the_select_tool_moves_resizes_and_deletes_the_selected_shape",
}

# A pixel "changed" when one of its channels moved by more than this; a picture changed when more than
# CHANGED_SHARE of its pixels did (text anti-aliasing and a blinking caret stay below it).
PIXEL_TOLERANCE = 24
CHANGED_SHARE = 0.002


def differs(new: Path, old: Path) -> bool:
    from PIL import Image, ImageChops

    if not old.is_file():
        return True
    with Image.open(new) as a, Image.open(old) as b:
        if a.size != b.size:
            return True
        diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L")
        changed = sum(diff.point(lambda v: 255 if v > PIXEL_TOLERANCE else 0).histogram()[255:])
        return changed > CHANGED_SHARE * a.size[0] * a.size[1]


def refresh(name: str) -> bool:
    """Copy tests/artifacts/<name> to docs/images/<name> if it looks different; True when it was copied.
    Only on the pinned host (JA_HOST unset or 'pinned') and for the pictures listed in IMAGES."""
    if name not in IMAGES:
        raise KeyError(f"{name!r} is not a listed docs picture; add it to scripts/readme_images.py IMAGES")
    if (os.environ.get("JA_HOST") or "pinned") != "pinned" or os.environ.get("COMFYUI_PATH"):
        return False
    source = ARTIFACTS / name
    target = DOCS_IMAGES / name
    if not differs(source, target):
        return False
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return True


def main() -> int:
    for name, test in IMAGES.items():
        state = "committed" if (DOCS_IMAGES / name).is_file() else "MISSING"
        print(f"docs/images/{name}: {state}, taken by {test}")
    return 0 if all((DOCS_IMAGES / name).is_file() for name in IMAGES) else 1


if __name__ == "__main__":
    sys.exit(main())
