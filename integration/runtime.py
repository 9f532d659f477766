"""The pack's one process-wide object: memory accounting and the derived-tensor cache.

It holds weak references (registry) and a byte-bounded cache, nothing else; features
keep their own data on their patch objects. ComfyUI's freeing (model unload, POST
/free) reaches it through the ON_DETACH callback installed on every patched model.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time

import torch

from ..attention.memory import DEFAULT_CACHE_BUDGET, BoundedCache, MemoryRegistry
from ..attention.paths import PathSelector

log = logging.getLogger("joint_attention")

_BUDGET_ENV = "JOINT_ATTENTION_CACHE_MB"


def _budget_from_env() -> int:
    raw = os.environ.get(_BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_BUDGET
    try:
        mb = float(raw)
    except ValueError:
        log.warning("[joint_attention] %s=%r is not a number of MiB; using %d MiB", _BUDGET_ENV, raw, DEFAULT_CACHE_BUDGET >> 20)
        return DEFAULT_CACHE_BUDGET
    return max(0, int(mb * 1024 * 1024))


class PackMemory:
    def __init__(self):
        self.registry = MemoryRegistry()
        self.cache = BoundedCache(self.registry, _budget_from_env())
        # Which exact attention path each kind of call takes, measured once per process on the device it runs on
        # (attention/paths.py); the masks it keeps for calls without a regional plan are counted in the registry.
        self.paths = PathSelector(self.registry)
        self._count_lock = threading.Lock()
        self._count = None  # (monotonic time, tensors)

    def report(self, count_objects: bool = False) -> dict:
        report = self.registry.report()
        if count_objects:
            report["process_tensors"] = self.process_tensors()
        report["cache"] = {
            "entries": len(self.cache),
            "bytes": self.cache.bytes,
            "budget_bytes": self.cache.budget_bytes,
            "hits": self.cache.hits,
            "misses": self.cache.misses,
        }
        report["attention_paths"] = self.paths.report()
        if torch.cuda.is_available():
            report["cuda"] = {
                "allocated_bytes": torch.cuda.memory_allocated(),
                "reserved_bytes": torch.cuda.memory_reserved(),
                "max_allocated_bytes": torch.cuda.max_memory_allocated(),
            }
        return report

    def process_tensors(self) -> int:
        """Every tensor the Python process can reach: the leak check of last resort. The walk over all
        objects takes a fraction of a second, so one runs at a time, and callers that waited for it take
        the count of a walk that started after they asked (never an older one)."""
        asked = time.monotonic()
        with self._count_lock:
            if self._count is not None and self._count[0] >= asked:
                return self._count[1]
            started = time.monotonic()
            # type(), not isinstance(): gc's list can hold dead weakref proxies (torch.compile leaves some), and
            # isinstance() on one raises ReferenceError.
            self._count = (started, sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor)))
            return self._count[1]

    def free(self, lifetime: str | None = None) -> None:
        self.registry.release(lifetime=lifetime)

    def on_detach(self, patcher, unpatch_all=True) -> None:
        """ComfyUI unloaded a patched model: drop cached copies on its device."""
        self.cache.clear(device=str(patcher.load_device))
        self.paths.prepared_cache.clear(device=str(patcher.load_device))


MEMORY = PackMemory()


async def report_off_loop(count_objects: bool) -> dict:
    """The memory report, computed on a worker thread: counting every object must not stall the
    server's event loop (and with it every other request)."""
    return await asyncio.get_running_loop().run_in_executor(None, MEMORY.report, count_objects)


def register_routes() -> None:
    """GET /joint_attention/memory: the same report as the JointAttentionMemory node."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:  # in-process use without ComfyUI's server
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return

    @instance.routes.get("/joint_attention/memory")
    async def memory_report(request):
        count = request.rel_url.query.get("objects", "") in ("1", "true")
        return web.json_response(await report_off_loop(count))
