"""Threads started together, for the concurrency tests. Pure Python: tests/attention (torch alone) and
tests/nodes (the ComfyUI host) both use it."""
from __future__ import annotations

import threading


def at_once(fns):
    """Run the callables at once (released together by a barrier); their results in order, or raise the
    first error."""
    barrier = threading.Barrier(len(fns))
    results, errors = [None] * len(fns), []

    def run(i):
        try:
            barrier.wait()
            results[i] = fns[i]()
        except BaseException as exc:  # noqa: B036 (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
