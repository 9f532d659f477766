"""Boot the ComfyUI host in this process and import the pack as a package.

Which host: COMFYUI_PATH (any ComfyUI tree), else JA_HOST=latest (the tree `make setup-latest` named in
.host/latest/host_path), else the pinned host `make setup` named in .host/host_path.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK_MODULE = "joint_attention_pack"


def test_device() -> str:
    """"cpu" unless JA_TEST_DEVICE names another torch device (the CUDA runs set "cuda")."""
    return os.environ.get("JA_TEST_DEVICE", "cpu")


HOSTS = {"pinned": (ROOT / ".host" / "host_path", "make setup"),
         "latest": (ROOT / ".host" / "latest" / "host_path", "make setup-latest")}


def host_path() -> Path:
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"]).resolve()
    name = os.environ.get("JA_HOST") or "pinned"
    if name not in HOSTS:
        raise RuntimeError(f"JA_HOST={name!r}: expected one of {', '.join(HOSTS)}")
    marker, command = HOSTS[name]
    if not marker.is_file():
        raise RuntimeError(f"no ComfyUI host ({name}): run `{command}` first")
    return Path(marker.read_text().strip())


def host_version() -> str:
    """The booted host's version, for reports only (tests feature-detect, they never branch on it)."""
    ns: dict = {}
    exec((host_path() / "comfyui_version.py").read_text(), ns)
    return ns["__version__"]


def boot() -> Path:
    """Make ComfyUI importable, on CPU. Idempotent."""
    path = host_path()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import comfy.cli_args

    # Must happen before comfy.model_management is imported.
    comfy.cli_args.args.cpu = test_device() == "cpu"
    import comfy.model_management  # noqa: F401

    return path


def pack_package():
    """The repository as the package `joint_attention_pack`, registered without running its
    `__init__` (which registers the ComfyUI nodes): enough to import the pure-torch `attention`
    modules with no ComfyUI anywhere (tests/attention runs that way)."""
    module = sys.modules.get(PACK_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(PACK_MODULE, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_MODULE] = module
    return module


def load_pack():
    """Boot the host and import the whole pack as the package `joint_attention_pack` (its folder
    name has dashes). Idempotent."""
    module = pack_package()
    if not getattr(module, "_ja_loaded", False):
        boot()
        module.__spec__.loader.exec_module(module)
        module._ja_loaded = True
    return module
