"""The worker pool: takes keys off the queue and reconciles them in threads."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import metrics
from ..k8s.client import Kube, load_api_client
from ..k8s.informer import Informers
from ..k8s.observe import AppKey
from ..registry.monitor import RegistryMonitor
from ..render import labels
from .cache import WATCHED_CHILDREN, IndexCache
from .queue import WorkQueue
from .reconciler import Reconciler, TransientError
from .settings import RunOptions

log = logging.getLogger("apprelease.runtime")


class Runtime:
    """Everything `apprelease run` holds between kopf's startup and cleanup."""

    def __init__(self, options: RunOptions, app_index: Any):
        self.options = options
        self.queue: WorkQueue[AppKey] = WorkQueue()
        self.kube = Kube(load_api_client(options.kubeconfig, pool_size=options.workers + 4))
        # Watches hold their connection for minutes: a pool of their own, one per watch.
        watches = len(WATCHED_CHILDREN) * max(1, len(options.namespaces))
        self.informers = Informers(
            Kube(load_api_client(options.kubeconfig, pool_size=watches)),
            WATCHED_CHILDREN,
            namespaces=options.namespaces,
            label_selector=f"{labels.MANAGED_BY}={labels.MANAGER}",
            on_change=self._enqueue_threadsafe,
        )
        self.cache = IndexCache(app_index, self.informers.of_kind)
        self.registry = RegistryMonitor(
            self.kube, self.cache.endpoint_slices, self._enqueue_threadsafe,
            poll_seconds=options.registry_poll_seconds,
        )
        self.reconciler = Reconciler(self.kube, self.cache, registry=self.registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by the first AppRelease handler call: kopf calls handlers only once its index
        # is fully listed, and reconciling from a partial cache would write needlessly.
        self.ready = asyncio.Event()
        self._children_synced = asyncio.Event()
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="reconcile")
        self._tasks: list[asyncio.Task[None]] = []
        self._phases: dict[AppKey, str] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.informers.start()
        self.registry.start()
        self._tasks = [asyncio.create_task(self._wait_children_synced(), name="apprelease-informers-synced")]
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"apprelease-worker-{i}")
            for i in range(self.options.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.informers.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.registry.stop)

    async def _wait_children_synced(self) -> None:
        await asyncio.to_thread(self.informers.wait_synced)
        log.info("children listed: %d objects", self.informers.object_count())
        self._children_synced.set()

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
        await self._children_synced.wait()
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
