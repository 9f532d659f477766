"""Boot the pinned ComfyUI in this process and import the pack as a package."""
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


def host_path() -> Path:
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"]).resolve()
    marker = ROOT / ".host" / "host_path"
    if not marker.is_file():
        raise RuntimeError("no ComfyUI host: run `make setup` first")
    return Path(marker.read_text().strip())


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


def load_pack():
    """Import the repository as the package `joint_attention_pack` (its folder name has dashes)."""
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    boot()
    spec = importlib.util.spec_from_file_location(PACK_MODULE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module
