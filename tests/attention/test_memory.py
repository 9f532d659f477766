"""Ownership and bounds: the registry's weak accounting and the byte-bounded cache."""
import gc

import pytest
import torch

from joint_attention_pack.attention.memory import BoundedCache, MemoryRegistry, iter_tensors, same_device, tensor_bytes


class Holder:
    def __init__(self, *tensors):
        self.held = list(tensors)

    def tensors(self):
        return self.held

    def nbytes(self):
        return sum(tensor_bytes(t) for t in self.held)


def test_tensor_bytes_of_tensors_holders_and_sequences():
    a, b = torch.zeros(4), torch.zeros(2, 3, dtype=torch.float16)
    assert tensor_bytes(a) == 16 and tensor_bytes(b) == 12
    assert tensor_bytes([a, (b, "x")]) == 28 and tensor_bytes(Holder(a, b)) == 28 and tensor_bytes("x") == 0
    assert list(iter_tensors([a, Holder(b), 3])) == [a, b]


@pytest.mark.parametrize("device,wanted,same", [("cpu", "cpu", True), ("cuda:1", "cuda", True),
                                                ("cuda:1", "cuda:0", False), ("cpu", "cuda", False)])
def test_same_device(device, wanted, same):
    assert same_device(device, wanted) is same


def test_the_registry_counts_live_tensors_only():
    registry = MemoryRegistry()
    kept = registry.track(torch.zeros(8), "regional", "cache")
    dropped = registry.track(torch.zeros(4), "capture", "run")
    assert registry.total_bytes() == 48 and registry.count("run") == 1
    del dropped
    gc.collect()
    assert registry.total_bytes() == 32 and registry.count() == 1
    report = registry.report()
    assert report["by_owner"] == {"regional": {"tensors": 1, "bytes": 32}}
    assert report["by_lifetime"] == {"patch": 0, "run": 0, "cache": 32} and report["by_device"] == {"cpu": 32}
    assert kept.numel() == 8


def test_the_registry_refuses_an_unknown_lifetime():
    with pytest.raises(ValueError, match=r"lifetime must be one of \('patch', 'run', 'cache'\), got 'forever'"):
        MemoryRegistry().track(torch.zeros(1), "x", "forever")


def test_the_cache_keeps_values_until_its_budget_then_drops_the_least_recently_used():
    registry = MemoryRegistry()
    cache = BoundedCache(registry, budget_bytes=100)
    made = []

    def factory(name, n):
        def make():
            made.append(name)
            return torch.zeros(n)
        return make

    a = cache.get("a", factory("a", 10))  # 40 bytes
    cache.get("b", factory("b", 10))
    assert cache.get("a", factory("a", 10)) is a  # a hit: "a" is now the most recently used
    cache.get("c", factory("c", 10))  # 120 bytes: "b" goes
    assert made == ["a", "b", "c"] and cache.bytes == 80 and (cache.hits, cache.misses) == (1, 3)
    cache.get("b", factory("b", 10))
    assert made[-1] == "b" and len(cache) == 2
    assert registry.total_bytes("cache") >= cache.bytes


def test_a_value_larger_than_the_budget_is_used_once_and_never_kept():
    cache = BoundedCache(MemoryRegistry(), budget_bytes=16)
    big = cache.get("big", lambda: torch.zeros(8))
    assert big.numel() == 8 and len(cache) == 0


def test_a_kept_value_that_grows_is_counted_again():
    class Growing(Holder):
        on_grow = None

        def add(self, tensor):
            self.held.append(tensor)
            self.on_grow()

    cache = BoundedCache(MemoryRegistry(), budget_bytes=100)
    value = cache.get("plan", lambda: Growing(torch.zeros(4)))
    assert cache.bytes == 16
    value.add(torch.zeros(8))
    assert cache.bytes == 48
    value.add(torch.zeros(16))  # past the budget: evicted, still usable by whoever holds it
    assert len(cache) == 0 and cache.bytes == 0 and value.nbytes() == 112


def test_release_and_clear_drop_what_they_name():
    registry = MemoryRegistry()
    cache = BoundedCache(registry, budget_bytes=1 << 20)
    cache.get("a", lambda: torch.zeros(2), owner="regional")
    cache.get("b", lambda: torch.zeros(2), owner="capture")
    registry.release(lifetime="run")  # not the cache's lifetime
    assert len(cache) == 2
    registry.release(owner="regional")
    assert len(cache) == 1
    cache.clear(device="cuda")
    assert len(cache) == 1
    cache.clear(device="cpu")
    assert len(cache) == 0


def test_a_smaller_budget_evicts_at_once():
    cache = BoundedCache(MemoryRegistry(), budget_bytes=1 << 20)
    for key in range(3):
        cache.get(key, lambda: torch.zeros(4))
    cache.set_budget(40)
    assert len(cache) == 2 and cache.bytes == 32
