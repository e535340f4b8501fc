"""The write fence: a replica writes only while its leader lease is certainly still its own.

The leader election (controller/leader_election.py) extends the fence to "the moment the last
successful renewal was *sent* + renewDeadline" on the monotonic clock. Every write asks the
fence first, in the thread that makes it, so a write past the deadline is refused by the
process itself even when the elector thread is starved or the whole process was paused
(SIGSTOP, a frozen VM) and has not noticed yet. Another replica can acquire the lease only
leaseDuration after it last saw that renewal, which is later by leaseDuration - renewDeadline:
the margin for clock rates and for a write sent just before the deadline to reach the
apiserver. A closed fence (stepping down, shutting down) never opens again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("apprelease.fence")


class NotLeading(Exception):
    """A write refused by this process: it does not hold the leader lease (any more)."""


class WriteFence:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._deadline = -math.inf  # closed until the lease is first acquired
        self._closed = False
        self._in_flight = 0
        self._cond = threading.Condition()

    def extend(self, deadline: float) -> None:
        """Writes are allowed until ``deadline`` (monotonic); never moves back."""
        with self._cond:
            if not self._closed:
                self._deadline = max(self._deadline, deadline)

    def close(self) -> None:
        """No write from now on, for good."""
        with self._cond:
            self._closed = True

    def is_open(self) -> bool:
        return not self._closed and self._clock() < self._deadline

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past), whether closed or not."""
        return self._deadline - self._clock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Around one write request: refused (NotLeading) unless the fence is open; counted
        while in flight, so that a release of the lease can wait for it to land."""
        with self._cond:
            refused = None
            if self._closed:
                refused = f"{what}: refused, this replica stopped leading"
            elif self._clock() >= self._deadline:
                refused = f"{what}: refused, not leading (lease not held or past its renew deadline)"
            if refused is not None:
                # Only a replica that led makes writes at all (a standby runs no workers).
                log.warning("%s", refused)
                raise NotLeading(refused)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no write is in flight; False if one still is after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, timeout))
