"""A keyed work queue in the manner of controller-runtime's: bursts of events for one object
collapse into one reconcile, an object is never reconciled twice at once, failures back off
exponentially per key, and a reconcile can ask to run again after a delay."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self._due: dict[Hashable, float] = {}  # key -> when it should run next
        self._heap: list[tuple[float, int, Hashable]] = []
        self._active: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._wakeup = asyncio.Event()
        self._counter = 0
        self.base_delay = base_delay
        self.max_delay = max_delay

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Run `key` within `delay` seconds (an earlier request wins)."""
        due = time.monotonic() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        self._push(key, due)

    def _push(self, key: Hashable, due: float) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (due, self._counter, key))
        self._wakeup.set()

    def retry(self, key: Hashable) -> float:
        """Schedule a retry after a failure; returns the back-off used."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.base_delay * 2**failures, self.max_delay)
        self.add(key, delay)
        return delay

    def failures(self, key: Hashable) -> int:
        """Failures in a row since the key last succeeded."""
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        """The key succeeded: its back-off starts over."""
        self._failures.pop(key, None)

    async def get(self) -> Hashable:
        while True:
            now = time.monotonic()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due or key in self._active:
                    # Superseded by a newer entry, or busy: done() pushes it again.
                    heapq.heappop(self._heap)
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._active.add(key)
                return key
            timeout = self._heap[0][0] - now if self._heap else None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._due:
            self._push(key, self._due[key])
