"""The worker pool: takes keys off the queue and reconciles them in threads.

A worker can never die: the reconciler never raises, the loop around it catches whatever is
left, and a supervisor restarts a worker task that ended anyway. Liveness (`health()`, served
by kopf's probe endpoint) fails when workers or informers are stuck, so Kubernetes restarts
an operator that stopped working instead of one that merely answers HTTP.

Under leader election (docs/high-availability.md) every replica lists and watches (warm
caches, fast fail-over), but the workers start only once this replica holds the lease, and
every write passes the lease's fence. A replica that loses the lease stops its workers and
asks the operator to exit: its restart is a fresh standby.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import metrics
from ..k8s.client import Kube, load_api_client
from ..k8s.fence import WriteFence
from ..k8s.informer import Informers
from ..k8s.observe import AppKey
from ..registry.config_monitor import ConfigMonitor
from ..registry.monitor import RegistryMonitor, apiserver_endpoints
from ..render import labels
from .analysis_clients import MetricClients
from .analysis_runner import AnalysisRunner
from .cache import WATCHED_CHILDREN, IndexCache
from .leader_election import KubeLeaseStore, LeaderElector, new_identity
from .notifier import Notifier, NotifierOptions
from .pipelines import NOTIFIERS
from .queue import WorkQueue
from .reconciler import Outcome, Reconciler
from .settings import RunOptions

log = logging.getLogger("apprelease.runtime")

# One reconcile holding a worker this long is stuck (its API calls time out after 60 s and
# registry I/O does not run on workers).
STUCK_RECONCILE_SECONDS = 600.0
SUPERVISE_SECONDS = 5.0
# On shutdown, how long writes in flight may take to land before the lease is handed back
# (past that it is left to expire).
RELEASE_DRAIN_SECONDS = 5.0
# After losing the lease the operator stops gracefully (its writes are refused already); if
# that hangs, the process ends anyway.
EXIT_AFTER_LOSS_SECONDS = 30.0


class Runtime:
    """Everything `apprelease run` holds between kopf's startup and cleanup."""

    def __init__(
        self, options: RunOptions, app_index: Any, *, stop_operator: Callable[[str], None] | None = None
    ):
        """``stop_operator(reason)``: ends the operator (kopf) after this replica lost the lease."""
        self.options = options
        self.identity = options.identity or new_identity()
        self._app_index = app_index
        self._stop_operator = stop_operator
        self.queue: WorkQueue[AppKey] = WorkQueue()
        # Without leader election there is no fence: this process is the only writer.
        self.fence = WriteFence() if options.leader_election else None
        api = load_api_client(options.kubeconfig, options.context, pool_size=options.workers + 4,
                              instance=self.identity)
        self.kube = Kube(api, fence=self.fence)
        # The apiserver is never a registry: an AppRelease must not point the operator at it.
        policy = dataclasses.replace(options.policy, apiserver_endpoints=apiserver_endpoints(api.configuration.host))
        # Watches hold their connection for minutes: a pool of their own, one per watch.
        watches = len(WATCHED_CHILDREN) * max(1, len(options.namespaces))
        self.informers = Informers(
            Kube(load_api_client(options.kubeconfig, options.context, pool_size=watches, instance=self.identity)),
            WATCHED_CHILDREN,
            namespaces=options.namespaces,
            label_selector=f"{labels.MANAGED_BY}={labels.MANAGER}",
            on_change=self._enqueue_threadsafe,
            on_event=lambda event_type, obj: self.cache.seen(obj, deleted=event_type == "DELETED"),
        )
        self.cache = IndexCache(app_index, self.informers.of_kind)
        self.registry = RegistryMonitor(
            self.kube, self.cache.endpoint_slices, self._enqueue_threadsafe,
            poll_seconds=options.registry_poll_seconds, policy=policy, fence=self.fence,
        )
        self.config = ConfigMonitor(self.registry, self._enqueue_threadsafe,
                                    poll_seconds=options.registry_poll_seconds)
        self.notifier = Notifier(self.kube, policy, NotifierOptions(
            console_url=options.console_url, networks_allowed=options.notification_networks))
        # Measurements are reads (of Prometheus, of web hooks): taken off the reconcile path,
        # one lane per server, each app woken when its measurement is in.
        self.analysis = AnalysisRunner(self.kube, MetricClients(policy), self._enqueue_threadsafe,
                                       allowed=policy.metric_server_allowed)
        self.reconciler = Reconciler(self.kube, self.cache, registry=self.registry, config=self.config,
                                     analysis=self.analysis, policy=policy, notifier=self.notifier)
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
        # Set while this replica may reconcile: at once without leader election.
        self._leading = asyncio.Event()
        self.lost_leadership: str | None = None
        self._candidate = threading.Event()  # the caches are listed: may take the lease
        self._stop_election = threading.Event()
        self.elector: LeaderElector | None = None
        if self.fence is not None:
            timings = options.election
            # Its own connection and short timeouts: a renewal never waits behind the workers'
            # requests, and a hung one is given up in time to try again before the deadline.
            lease_kube = Kube(load_api_client(options.kubeconfig, options.context, pool_size=2, instance=self.identity),
                              timeout=(timings.retry_period, timings.retry_period))
            self.elector = LeaderElector(
                KubeLeaseStore(lease_kube, options.lease_namespace, options.lease_name),
                self.identity, timings, self.fence,
                on_started_leading=lambda: self._call_in_loop(self._started_leading),
                on_stopped_leading=lambda reason: self._call_in_loop(self._stopped_leading, reason),
                lease_name=f"{options.lease_namespace}/{options.lease_name}",
            )
        self._gone: set[AppKey] = set()  # deleted (until an app of that name comes again)

    @property
    def leading(self) -> bool:
        """This replica may write (always, without leader election)."""
        return self._leading.is_set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at = time.monotonic()
        self.informers.start()
        self.registry.start()
        self.config.start()
        self.notifier.start()
        NOTIFIERS.append(self.notifier.pipeline_note)
        if self.elector is None:
            metrics.LEADER.set(1)
            self._leading.set()
        else:
            metrics.LEADER.set(0)
            log.info("leader election on lease %s as %s", self.elector.lease_name, self.identity)
            threading.Thread(target=self.elector.run, args=(self._stop_election, self._candidate),
                             name="leader-election", daemon=True).start()
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
            if self.elector is not None:
                problems += self.elector.health(self.options.startup_deadline_seconds)
        if self.lost_leadership is not None:
            problems.append(f"stopped leading ({self.lost_leadership}); exiting")
        for index, (key, since) in list(self._busy.items()):
            if now - since > STUCK_RECONCILE_SECONDS:
                problems.append(f"worker {index} stuck on {key[0]}/{key[1]} for {now - since:.0f} s")
        dead = [i for i, t in self._workers.items() if t.done()]
        if dead:
            problems.append(f"workers {dead} not running")
        problems += self.registry.health()
        problems += self.analysis.health()
        return problems

    async def stop(self) -> None:
        self._stop_election.set()
        for task in [*self._tasks, *self._workers.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._workers.values(), return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.elector is not None and self.fence is not None:
            # No new write from here; the ones in flight land; then a standby may take over
            # at its next look rather than a lease duration later.
            self.fence.close()
            await asyncio.to_thread(self.elector.release, RELEASE_DRAIN_SECONDS)
        self.informers.stop()
        if self.notifier.pipeline_note in NOTIFIERS:
            NOTIFIERS.remove(self.notifier.pipeline_note)
        self.notifier.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.registry.stop)
        self.config.stop()
        self.analysis.stop()

    async def _wait_children_synced(self) -> None:
        await asyncio.to_thread(self.informers.wait_synced)
        log.info("children listed: %d objects", self.informers.object_count())
        self._children_synced.set()
        self._candidate.set()

    # Leadership (called in the loop, from the election's thread) -----------------------------

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    def _started_leading(self) -> None:
        # Every AppRelease once: the queue holds what changed while standing by, this adds
        # the rest (each is a no-op when converged, as after a restart).
        for key in list(self._app_index):
            self.queue.add(key)
        self._leading.set()

    def _stopped_leading(self, reason: str) -> None:
        """The fence is closed already: no write of ours goes out any more. Stop reconciling,
        drop the registry's queued writes, and end the process (a fresh standby restarts)."""
        self.lost_leadership = reason
        self._leading.clear()
        for task in self._workers.values():
            task.cancel()
        threading.Thread(target=self.registry.stop, name="registry-stop", daemon=True).start()
        self.config.stop()
        self.analysis.stop()
        exit_timer = threading.Timer(EXIT_AFTER_LOSS_SECONDS, os._exit, args=(1,))
        exit_timer.daemon = True
        exit_timer.start()
        if self._stop_operator is not None:
            self._stop_operator(f"stopped leading: {reason}")

    def _enqueue_threadsafe(self, key: AppKey) -> None:
        """For the registry poller's thread: a changed registry wakes that AppRelease."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.queue.add, key)

    def enqueue(self, key: AppKey, *, urgent: bool = False) -> None:
        self._gone.discard(key)
        self.queue.add(key, urgent=urgent)

    def removed(self, key: AppKey) -> None:
        self._gone.add(key)
        self.queue.forget(key)
        self.registry.forget(key)
        self.config.forget(key)
        self.reconciler.forget(key)
        self._phases.pop(key, None)
        self._count_phases()

    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        await self.ready.wait()
        await self._children_synced.wait()
        await self._leading.wait()
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
        if key in self._gone:
            # Deleted while this reconcile ran: what it just set must not outlive the app,
            # and nothing is to be retried.
            self.reconciler.forget(key)
            return
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
