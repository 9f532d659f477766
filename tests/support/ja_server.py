"""Start and drive the real ComfyUI server (main.py --cpu) with this pack and the test nodes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from ja_host import host_path

TEST_NODES = Path(__file__).resolve().parent / "comfy_nodes"


class PromptRejected(Exception):
    """POST /prompt answered with an error (validation / node errors)."""

    def __init__(self, status, body):
        super().__init__(f"prompt rejected ({status}): {json.dumps(body)[:2000]}")
        self.status = status
        self.body = body


class PromptFailed(Exception):
    """The prompt ran and ended in an error; carries the history entry."""

    def __init__(self, entry):
        messages = entry.get("status", {}).get("messages", [])
        super().__init__(f"prompt failed: {json.dumps(messages)[:4000]}")
        self.entry = entry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, output_dir=None, port=None, extra_args=(), boot_timeout=180):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self._tmp = tempfile.TemporaryDirectory(prefix="ja_comfy_")
        tmp = Path(self._tmp.name)
        self.output_dir = Path(output_dir) if output_dir else tmp / "output"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # The server's `loras` folder: tests write tiny LoRA files here (the pickers list them as they appear).
        self.loras_dir = tmp / "loras"
        self.loras_dir.mkdir()
        self.log_path = tmp / "server.log"
        self.extra_args = list(extra_args)
        self.boot_timeout = boot_timeout
        self.proc = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        tmp = Path(self._tmp.name)
        for sub in ("input", "temp", "user"):
            (tmp / sub).mkdir(exist_ok=True)
        # The picture a stock ComfyUI ships in input/ (LoadImage's default; the edit example loads it).
        shipped = host_path() / "input" / "example.png"
        if shipped.is_file() and not (tmp / "input" / "example.png").exists():
            shutil.copyfile(shipped, tmp / "input" / "example.png")
        config = tmp / "extra_model_paths.yaml"
        config.write_text(f"ja_tests:\n    custom_nodes: {TEST_NODES}\n    loras: {self.loras_dir}\n")
        cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--output-directory", str(self.output_dir), "--input-directory", str(tmp / "input"),
            "--temp-directory", str(tmp / "temp"), "--user-directory", str(tmp / "user"),
            "--extra-model-paths-config", str(config), "--disable-auto-launch", "--database-url", "sqlite:///:memory:",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=host_path(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + self.boot_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_text()[-6000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.boot_timeout}s:\n{self.log_text()[-6000:]}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP ------------------------------------------------------------------
    def _request(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def get(self, path, timeout=30):
        return self._request("GET", path, timeout=timeout)

    def post(self, path, body=None, timeout=30):
        return self._request("POST", path, body if body is not None else {}, timeout=timeout)

    def object_info(self) -> dict:
        return self.get("/object_info", timeout=60)

    def queue_raw(self, prompt: dict):
        try:
            return 200, self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def queue(self, prompt: dict) -> str:
        status, body = self.queue_raw(prompt)
        if status != 200 or "prompt_id" not in body:
            raise PromptRejected(status, body)
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout=120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id) if history else None
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") == "error":
                    raise PromptFailed(entry)
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_text()[-6000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def interrupt(self):
        self.post("/interrupt", {})
