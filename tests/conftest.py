"""Test set-up shared by every folder.

tests/attention needs torch alone: the pack is registered as a package without importing ComfyUI.
Every other folder's conftest boots the real ComfyUI host in-process and imports the whole pack
(`ja_host.load_pack()`) before its test modules.

Test helpers live in tests/support under unique `ja_*` names: ComfyUI's root already has a
`tests` package and a `nodes` module, so neither the repository nor tests/ goes on sys.path.
"""
import logging
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import ja_host  # noqa: E402

ja_host.pack_package()
logging.getLogger().setLevel(logging.WARNING)


def pytest_configure(config):
    for name, doc in (("server", "runs the real ComfyUI server"), ("browser", "drives the real frontend in Chromium"),
                      ("gpu", "needs CUDA"),
                      ("family_skipped", "a family the test family list (ja_families) keeps off this scenario"),
                      ("works_with", "works_with(combined_with, pack_nodes, check): a composition test, listed in "
                                     "docs/works-with.md's Works with table")):
        config.addinivalue_line("markers", f"{name}: {doc}")


_WORKS_WITH = None


def _works_with():
    global _WORKS_WITH
    if _WORKS_WITH is None:
        from ja_works_with import Recorder

        _WORKS_WITH = Recorder()
    return _WORKS_WITH


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if item.get_closest_marker("works_with") is not None:
        _works_with().report(item, outcome.get_result())


def pytest_sessionfinish(session, exitstatus):
    if _WORKS_WITH is not None:
        _WORKS_WITH.write()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    from ja_server import ComfyServer

    out = tmp_path_factory.mktemp("comfy_output")
    with ComfyServer(output_dir=out) as server:
        yield server
