"""Ownership and bounds for every tensor the pack creates.

`MemoryRegistry` records tensors with owner, lifetime, device and bytes. It holds only
weak references: a tensor that dies leaves the registry by itself, so accounting can
never keep memory alive. Holders of strong references (the bounded cache, per-run
states, patches) register themselves so they can be told to release.

`BoundedCache` keeps derived tensors (token masks, plans, cast embeddings) keyed by
everything they depend on, evicting least-recently-used entries past a byte budget.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterable

import torch

LIFETIMES = ("patch", "run", "cache")
DEFAULT_CACHE_BUDGET = 256 * 1024 * 1024


def tensor_bytes(value: Any) -> int:
    """Bytes held by a tensor, or by an object exposing `nbytes()`, or by a tuple/list of them."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if hasattr(value, "nbytes") and callable(value.nbytes):
        return int(value.nbytes())
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def same_device(tensor_device, wanted) -> bool:
    """True when `tensor_device` is `wanted`; "cuda" (no index) matches every CUDA device."""
    a, b = torch.device(tensor_device), torch.device(wanted)
    return a.type == b.type and (b.index is None or a.index == b.index)


def iter_tensors(value: Any) -> Iterable[torch.Tensor]:
    if torch.is_tensor(value):
        yield value
    elif hasattr(value, "tensors") and callable(value.tensors):
        yield from value.tensors()
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from iter_tensors(v)


class MemoryRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[int, tuple] = {}  # id -> (weakref, owner, lifetime, device, nbytes)
        self._holders: list = []  # weakrefs to objects with release(lifetime)

    def track(self, tensor: torch.Tensor, owner: str, lifetime: str) -> torch.Tensor:
        if lifetime not in LIFETIMES:
            raise ValueError(f"lifetime must be one of {LIFETIMES}, got {lifetime!r}")
        key = id(tensor)

        def forget(_ref, key=key):
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] is _ref:
                    del self._entries[key]

        ref = weakref.ref(tensor, forget)
        with self._lock:
            self._entries[key] = (ref, owner, lifetime, str(tensor.device), tensor_bytes(tensor))
        return tensor

    def track_all(self, value: Any, owner: str, lifetime: str) -> Any:
        for t in iter_tensors(value):
            self.track(t, owner, lifetime)
        return value

    def add_holder(self, holder) -> None:
        with self._lock:
            self._holders = [h for h in self._holders if h() is not None]
            self._holders.append(weakref.ref(holder))

    def live(self) -> list:
        with self._lock:
            items = list(self._entries.values())
        return [(owner, lifetime, device, nbytes) for ref, owner, lifetime, device, nbytes in items if ref() is not None]

    def count(self, lifetime: str | None = None) -> int:
        return sum(1 for e in self.live() if lifetime is None or e[1] == lifetime)

    def total_bytes(self, lifetime: str | None = None, device: str | None = None) -> int:
        return sum(e[3] for e in self.live() if (lifetime is None or e[1] == lifetime) and (device is None or e[2] == device))

    def report(self) -> dict:
        by_owner: dict = {}
        by_device: dict = {}
        by_lifetime: dict = {name: 0 for name in LIFETIMES}
        entries = self.live()
        for owner, lifetime, device, nbytes in entries:
            slot = by_owner.setdefault(owner, {"tensors": 0, "bytes": 0})
            slot["tensors"] += 1
            slot["bytes"] += nbytes
            by_device[device] = by_device.get(device, 0) + nbytes
            by_lifetime[lifetime] += nbytes
        return {
            "tensors": len(entries),
            "bytes": sum(e[3] for e in entries),
            "by_owner": by_owner,
            "by_device": by_device,
            "by_lifetime": by_lifetime,
        }

    def release(self, lifetime: str | None = None, owner: str | None = None) -> None:
        """Ask every registered holder to drop what it keeps (optionally one lifetime/owner)."""
        with self._lock:
            holders = [h() for h in self._holders]
        for holder in holders:
            if holder is not None:
                holder.release(lifetime=lifetime, owner=owner)


class BoundedCache:
    """LRU cache of derived tensors, bounded in bytes; entries are tracked as lifetime "cache"."""

    def __init__(self, registry: MemoryRegistry, budget_bytes: int = DEFAULT_CACHE_BUDGET):
        self.registry = registry
        self.budget_bytes = int(budget_bytes)
        self._items: OrderedDict = OrderedDict()  # key -> (value, nbytes, owner)
        self._lock = threading.RLock()
        self._building: dict = {}  # key -> [lock, waiting threads] while a factory runs
        self.hits = 0
        self.misses = 0
        registry.add_holder(self)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(item[1] for item in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def set_budget(self, budget_bytes: int) -> None:
        with self._lock:
            self.budget_bytes = int(budget_bytes)
            self._evict()

    def get(self, key: Hashable, factory: Callable[[], Any], owner: str = "cache") -> Any:
        """The value kept under `key`, else `factory()` (kept if it fits the budget). Threads asking for the
        same missing key at once (two runs, or MultiGPU work units, sampling together) wait for one
        `factory()` call and share its value: a device's copy is made once, not once per thread."""
        found = self._lookup(key)
        if found is not None:
            return found[0]
        with self._lock:
            building = self._building.get(key)
            if building is None:
                building = self._building[key] = [threading.Lock(), 0]
            building[1] += 1
        try:
            with building[0]:
                found = self._lookup(key)  # made by the thread this one waited for
                if found is not None:
                    return found[0]
                return self._make(key, factory, owner)
        finally:
            with self._lock:
                building[1] -= 1
                if building[1] == 0 and self._building.get(key) is building:
                    del self._building[key]

    def _lookup(self, key: Hashable):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def _make(self, key: Hashable, factory: Callable[[], Any], owner: str) -> Any:
        value = factory()
        self.misses += 1
        if tensor_bytes(value) > self.budget_bytes:
            return value  # larger than the whole budget: used once, never kept
        if hasattr(value, "on_grow"):  # e.g. a regional plan, which gains query groups as it is used
            ref = weakref.ref(value)  # no cycle through the value: dropped from the cache, it dies at once
            # Set before the value is visible to other threads: none of its growth goes uncounted.
            value.on_grow = lambda: self._grew(key, ref())
        self.registry.track_all(value, owner, "cache")
        with self._lock:
            self._items[key] = (value, tensor_bytes(value), owner)  # measured as it is stored
            self._items.move_to_end(key)
            self._evict()
        return value

    def _grew(self, key: Hashable, value: Any) -> None:
        """A kept value holds more than when it was stored: count it again, evicting past the budget."""
        with self._lock:
            item = self._items.get(key)
            if value is None or item is None or item[0] is not value:
                return  # evicted (or replaced) meanwhile: whoever uses it holds it
            self.registry.track_all(value, item[2], "cache")
            self._items[key] = (value, tensor_bytes(value), item[2])
            self._evict()

    def _evict(self) -> None:
        total = sum(item[1] for item in self._items.values())
        while self._items and total > self.budget_bytes:
            _, (value, size, _) = self._items.popitem(last=False)
            total -= size

    def clear(self, device: str | None = None) -> None:
        with self._lock:
            if device is None:
                self._items.clear()
                return
            stale = [k for k, (v, _, _) in self._items.items() if any(same_device(t.device, device) for t in iter_tensors(v))]
            for key in stale:
                del self._items[key]

    def release(self, lifetime: str | None = None, owner: str | None = None) -> None:
        if lifetime not in (None, "cache"):
            return
        with self._lock:
            if owner is None:
                self._items.clear()
            else:
                for key in [k for k, item in self._items.items() if item[2] == owner]:
                    del self._items[key]
