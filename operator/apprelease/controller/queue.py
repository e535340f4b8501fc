"""A de-duplicating work queue with delayed adds, like client-go's workqueue.

A key is never processed by two workers at once; a key added while it is being processed is
processed once more afterwards; many adds while waiting collapse into one reconcile.
Urgent keys (a user changed a spec or asked for a promotion) go before routine ones (a pod
became ready somewhere), so an edit is not stuck behind a fleet's status refreshes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from .. import metrics
from ..backoff import exponential_backoff

K = TypeVar("K", bound=Hashable)

MAX_BACKOFF_SECONDS = 120.0
BASE_BACKOFF_SECONDS = 0.5


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._tokens: asyncio.Queue[None] = asyncio.Queue()  # one per waiting key
        self._urgent: deque[K] = deque()
        self._routine: deque[K] = deque()
        self._waiting: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: dict[K, bool] = {}  # added while processing → urgent?
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._failures: dict[Hashable, int] = {}

    def add(self, key: K, *, urgent: bool = False) -> None:
        if key in self._processing:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        if key in self._waiting:
            if urgent and key in self._routine:
                self._routine.remove(key)
                self._urgent.append(key)
            return
        self._waiting.add(key)
        (self._urgent if urgent else self._routine).append(key)
        self._tokens.put_nowait(None)
        metrics.QUEUE_DEPTH.set(len(self._waiting))

    def add_after(self, key: K, delay: float) -> None:
        """Schedule a reconcile; an earlier schedule for the same key wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry_later(self, key: K) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = exponential_backoff(failures, BASE_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        self.add_after(key, delay)
        return delay

    def succeeded(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        await self._tokens.get()
        key = self._urgent.popleft() if self._urgent else self._routine.popleft()
        self._waiting.discard(key)
        self._processing.add(key)
        metrics.QUEUE_DEPTH.set(len(self._waiting))
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self.add(key, urgent=self._dirty.pop(key))

    def forget(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)
