"""The worker pool: takes keys off the queue and reconciles them in threads."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..k8s.client import Kube, load_api_client
from ..k8s.observe import AppKey
from ..registry.monitor import RegistryMonitor
from . import metrics
from .cache import IndexCache
from .queue import WorkQueue
from .reconciler import Reconciler, TransientError
from .settings import RunOptions

log = logging.getLogger("apprelease.runtime")


class Runtime:
    """Everything `apprelease run` holds between kopf's startup and cleanup."""

    def __init__(self, options: RunOptions, indices: dict[str, Any]):
        self.options = options
        self.queue: WorkQueue[AppKey] = WorkQueue()
        self.cache = IndexCache(indices)
        self.kube = Kube(load_api_client(options.kubeconfig, pool_size=options.workers + 4))
        self.registry = RegistryMonitor(
            self.kube, self.cache.endpoint_slices, self._enqueue_threadsafe,
            poll_seconds=options.registry_poll_seconds,
        )
        self.reconciler = Reconciler(self.kube, self.cache, registry=self.registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by the first AppRelease handler call: kopf calls handlers only once every index
        # is fully listed, and reconciling from a partial cache would write needlessly.
        self.ready = asyncio.Event()
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="reconcile")
        self._tasks: list[asyncio.Task[None]] = []
        self._phases: dict[AppKey, str] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.registry.start()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"apprelease-worker-{i}")
            for i in range(self.options.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self.registry.stop)

    def _enqueue_threadsafe(self, key: AppKey) -> None:
        """For the registry poller's thread: a changed registry wakes that AppRelease."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.queue.add, key)

    def enqueue(self, key: AppKey, *, urgent: bool = False) -> None:
        self.queue.add(key, urgent=urgent)

    def removed(self, key: AppKey) -> None:
        self.queue.forget(key)
        self.registry.forget(key)
        self.reconciler.forget(key)
        self._phases.pop(key, None)
        self._count_phases()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        await self.ready.wait()
        while True:
            key = await self.queue.get()
            try:
                outcome = await loop.run_in_executor(self._pool, self.reconciler.reconcile, key)
            except TransientError as exc:
                delay = self.queue.retry_later(key)
                log.warning("%s/%s: %s; retrying in %.1fs", key[0], key[1], exc, delay)
            except Exception:  # a bug must not stop the worker or other AppReleases
                delay = self.queue.retry_later(key)
                log.exception("%s/%s: reconcile failed; retrying in %.1fs", key[0], key[1], delay)
            else:
                self.queue.succeeded(key)
                if outcome.requeue_after is not None:
                    self.queue.add_after(key, outcome.requeue_after + 0.05)
                if outcome.phase:
                    self._phases[key] = outcome.phase
                    self._count_phases()
            finally:
                self.queue.done(key)

    def _count_phases(self) -> None:
        counts = Counter(self._phases.values())
        for phase in ("Progressing", "Paused", "Healthy", "Degraded"):
            metrics.APPRELEASES_BY_PHASE.labels(phase).set(counts.get(phase, 0))
