"""Debian's Chromium driven by Playwright against the real ComfyUI frontend (no browser download)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")


@contextmanager
def frontend(server, viewport=(1500, 1100)):
    """A page with ComfyUI's frontend loaded and its first-run dialogs switched off."""
    from playwright.sync_api import sync_playwright

    for setting, value in (("Comfy.TutorialCompleted", True), ("Comfy.Workflow.ShowMissingNodesWarning", True)):
        server.post(f"/settings/{setting}", value)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.errors = []
            page.on("pageerror", lambda err: page.errors.append(str(err)))
            open_app(page, server)
            yield page
        finally:
            browser.close()


def open_app(page, server):
    page.goto(server.base)
    page.wait_for_function("window.app && window.app.graph && window.app.extensions?.some(e => e.name === "
                           "'joint_attention.region_canvas')", timeout=90000)
    page.keyboard.press("Escape")  # any dialog left open
