"""The worker pool: takes keys off the queue and reconciles them in threads.

A worker can never die: the reconciler never raises, the loop around it catches whatever is
left, and a supervisor restarts a worker task that ended anyway. Liveness (`health()`, served
by kopf's probe endpoint) fails when workers or informers are stuck, so Kubernetes restarts
an operator that stopped working instead of one that merely answers HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from .reconciler import Outcome, Reconciler
from .settings import RunOptions

log = logging.getLogger("apprelease.runtime")

# One reconcile holding a worker this long is stuck (its API calls time out after 60 s and
# registry I/O does not run on workers).
STUCK_RECONCILE_SECONDS = 600.0
SUPERVISE_SECONDS = 5.0


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
            on_event=lambda event_type, obj: self.cache.seen(obj, deleted=event_type == "DELETED"),
        )
        self.cache = IndexCache(app_index, self.informers.of_kind)
        self.registry = RegistryMonitor(
            self.kube, self.cache.endpoint_slices, self._enqueue_threadsafe,
            poll_seconds=options.registry_poll_seconds, policy=options.policy,
        )
        self.reconciler = Reconciler(self.kube, self.cache, registry=self.registry, policy=options.policy)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by the first AppRelease handler call: kopf calls handlers only once its index
        # is fully listed, and reconciling from a partial cache would write needlessly.
        self.ready = asyncio.Event()
        self._children_synced = asyncio.Event()
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="reconcile")
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._busy: dict[int, tuple[AppKey, float]] = {}  # worker → (key, monotonic start)
        self._worker_restarts = 0
        self._started_at = time.monotonic()
        self._phases: dict[AppKey, str] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at = time.monotonic()
        self.informers.start()
        self.registry.start()
        self._tasks = [
            asyncio.create_task(self._wait_children_synced(), name="apprelease-informers-synced"),
            asyncio.create_task(self._supervise(), name="apprelease-supervisor"),
        ]
        for index in range(self.options.workers):
            self._start_worker(index)

    def _start_worker(self, index: int) -> None:
        self._workers[index] = asyncio.create_task(self._worker(index), name=f"apprelease-worker-{index}")

    async def _supervise(self) -> None:
        """Restart a worker task that ended (it never should: this is the last guard)."""
        while True:
            await asyncio.sleep(SUPERVISE_SECONDS)
            for index, task in list(self._workers.items()):
                if task.done() and not task.cancelled():
                    error = task.exception()
                    log.error("worker %d ended (%r); starting it again", index, error)
                    self._busy.pop(index, None)
                    self._worker_restarts += 1
                    self._start_worker(index)

    def health(self) -> list[str]:
        """What is wrong, for liveness: empty when the operator can make progress."""
        problems = []
        now = time.monotonic()
        # Every watch must have listed by then (LIST failing all along: RBAC, a missing CRD,
        # an apiserver that never answers), else liveness fails.
        if now - self._started_at > self.options.startup_deadline_seconds:
            problems += [
                f"{kind} informer never listed: {error or 'no answer'}"
                for kind, error in self.informers.unsynced().items()
            ]
            if not self.ready.is_set():
                problems.append("the AppRelease index never listed (kopf)")
        for index, (key, since) in list(self._busy.items()):
            if now - since > STUCK_RECONCILE_SECONDS:
                problems.append(f"worker {index} stuck on {key[0]}/{key[1]} for {now - since:.0f} s")
        dead = [i for i, t in self._workers.items() if t.done()]
        if dead:
            problems.append(f"workers {dead} not running")
        problems += self.registry.health()
        return problems

    async def stop(self) -> None:
        for task in [*self._tasks, *self._workers.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._workers.values(), return_exceptions=True)
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

    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        await self.ready.wait()
        await self._children_synced.wait()
        while True:
            key = await self.queue.get()
            self._busy[index] = (key, time.monotonic())
            try:
                outcome = await loop.run_in_executor(self._pool, self.reconciler.reconcile, key)
                self._settle(key, outcome)
            except asyncio.CancelledError:
                raise
            except Exception:  # reconcile() never raises; this guards the bookkeeping
                log.exception("%s/%s: worker error; retrying", key[0], key[1])
                self.queue.retry_later(key)
            finally:
                self._busy.pop(index, None)
                self.queue.done(key)

    def _settle(self, key: AppKey, outcome: Outcome) -> None:
        if outcome.retry:
            self.queue.retry_later(key)
        else:
            self.queue.succeeded(key)
        if outcome.requeue_after is not None:
            self.queue.add_after(key, outcome.requeue_after + 0.05)
        if outcome.phase:
            self._phases[key] = outcome.phase
            self._count_phases()

    def _count_phases(self) -> None:
        counts = Counter(self._phases.values())
        for phase in ("Progressing", "Paused", "Healthy", "Degraded"):
            metrics.APPRELEASES_BY_PHASE.labels(phase).set(counts.get(phase, 0))
