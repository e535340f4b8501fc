"""Takes the measurements analysis runs ask for, off the reconcile path.

The planner (rollout/analysis.py) asks for each measurement with its due time; ``execute``
schedules it on an event loop of its own (one thread for every app), each server a lane of
its own (one call at a time per server, each with its timeout), so one app's slow Prometheus
delays only the measurements of that server, and never a reconcile. A finished measurement
is kept here and the app is woken; its next reconcile sees it through ``state_for`` and folds
it into status.analysis — one status write per measurement, none while nothing was measured.

Templates are read from the API when a reconcile needs them (kept a few seconds): a missing
one is the planner's verdict, not an error here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from ..api.analysis import AnalysisRef
from ..api.analysis_template import AnalysisTemplateSpec
from ..api.spec import AppRelease
from ..k8s.client import ApiError
from ..rollout.analysis import AnalysisObserved, MeasurementRequest, RawResult, TemplateKey
from ..rollout.observed import Observed
from ..rollout.timefmt import format_time

log = logging.getLogger(__name__)

AppKey = tuple[str, str]
JobKey = tuple[str, str, int]  # run, metric, seq
TEMPLATE_TTL_SECONDS = 5.0


class Refused(Exception):
    """The operator's policy refuses the server's address."""


class Invalid(Exception):
    """The question is wrong (the query does not parse): the template must be fixed."""


class Measurer(Protocol):
    """The I/O clients (apprelease.analysis): values or a web hook's verdict (passed, and its
    answer when it did not); an exception
    whose text says why there is no answer (Refused: the address is not allowed;
    Invalid: the query is wrong)."""

    async def prometheus(self, address: str, query: str, timeout: float) -> tuple[float, ...]: ...

    async def web(self, url: str, payload: Mapping[str, Any], timeout: float,
                  headers: Mapping[str, str]) -> tuple[bool, str]: ...


class TemplateSource(Protocol):
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]: ...


def analysis_refs(app: AppRelease) -> list[AnalysisRef]:
    """Every analysis the app's strategy may run: canary steps and background, blue-green's."""
    canary, blue_green = app.spec.strategy.canary, app.spec.strategy.blue_green
    refs: list[AnalysisRef | None] = []
    if canary is not None:
        refs += [step.analysis for step in canary.steps] + [canary.analysis]
    if blue_green is not None:
        refs += [blue_green.pre_promotion_analysis, blue_green.post_promotion_analysis]
    return [ref for ref in refs if ref is not None]


class AnalysisRunner:
    def __init__(self, kube: TemplateSource, measurer: Measurer, notify: Callable[[AppKey], None], *,
                 allowed: Callable[[str], bool] = lambda host_port: True,
                 clock: Callable[[], float] = time.time):
        """``allowed(host:port)``: the operator's policy on metric servers (--allow-metric-server);
        the clients refuse the rest (metadata endpoints, ...) when they resolve the address."""
        self.kube = kube
        self.measurer = measurer
        self.notify = notify
        self.allowed = allowed
        self.clock = clock
        self._lock = threading.Lock()
        self._results: dict[AppKey, dict[JobKey, RawResult]] = {}
        self._jobs: dict[AppKey, dict[JobKey, Future[None]]] = {}
        self._quiet: set[AppKey] = set()  # keys not to notify (pipelines' stages)
        self._refused: dict[str, str] = {}  # address → why the policy refuses it (seen on a call)
        self._templates: dict[tuple[str, TemplateKey], tuple[float, AnalysisTemplateSpec | str | None]] = {}
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="analysis", daemon=True)
        self._thread.start()

    # The reconcile's side (worker threads) ---------------------------------------------------

    def state_for(self, app: AppRelease, observed: Observed) -> Observed:
        refs = analysis_refs(app)
        if not refs:
            return observed
        return replace(observed, analysis=self.observe((app.namespace, app.name), app.namespace, refs))

    def observe(self, key: AppKey, namespace: str, refs: Sequence[AnalysisRef]) -> AnalysisObserved:
        """The templates ``refs`` name (of ``namespace``), the refused addresses and the results
        taken so far for ``key`` (an app, or a pipeline's stage)."""
        keys = {TemplateKey(t.template_name, t.cluster_scope) for ref in refs for t in ref.templates}
        templates = {template: self._template(namespace, template) for template in keys}
        refused = {}
        for spec in templates.values():
            for metric in spec.metrics if isinstance(spec, AnalysisTemplateSpec) else ():
                provider = metric.provider
                address = provider.prometheus.address if provider.prometheus is not None else provider.web.url  # type: ignore[union-attr]
                why = self._refusal(address)
                if why is not None:
                    refused[address] = why
        with self._lock:
            results = dict(self._results.get(key, {}))
        return AnalysisObserved(templates, refused, results)

    def execute(self, app: AppRelease, requests: tuple[MeasurementRequest, ...]) -> None:
        self.execute_for((app.namespace, app.name), requests)

    def execute_for(self, key: AppKey, requests: tuple[MeasurementRequest, ...], *, wake: bool = True) -> None:
        """Schedule what is asked and not scheduled yet; cancel what is no longer asked; drop
        results the status holds already (an earlier seq of a metric asked for again).
        ``wake``: notify ``key`` when a measurement is in (a pipeline passes on its own)."""
        if not wake:
            with self._lock:
                self._quiet.add(key)
        wanted = {(r.run, r.metric, r.seq): r for r in requests}
        with self._lock:
            jobs = self._jobs.setdefault(key, {})
            results = self._results.setdefault(key, {})
            for job_key in [k for k in results if k not in wanted or results[k].target != wanted[k].target]:
                del results[job_key]  # folded into status already, or the question changed
            for job_key in [k for k in jobs if k not in wanted]:
                jobs.pop(job_key).cancel()
            for job_key, request in wanted.items():
                if job_key not in jobs and job_key not in results:
                    jobs[job_key] = asyncio.run_coroutine_threadsafe(self._measure(key, request), self._loop)
            if not jobs and not results:
                self._jobs.pop(key, None)
                self._results.pop(key, None)
                self._quiet.discard(key)

    def forget(self, key: AppKey) -> None:
        self.forget_matching(lambda held: held == key)

    def forget_matching(self, matches: Callable[[AppKey], bool]) -> None:
        """Cancel and drop everything held for the keys ``matches`` picks (a deleted app or
        pipeline, a stage no longer analysed): nothing else ever asks for them again."""
        with self._lock:
            for key in [k for k in self._held() if matches(k)]:
                for job in self._jobs.pop(key, {}).values():
                    job.cancel()
                self._results.pop(key, None)
                self._quiet.discard(key)

    def keys(self) -> set[AppKey]:
        """Every key something is held for (jobs, results, the quiet mark)."""
        with self._lock:
            return self._held()

    def _held(self) -> set[AppKey]:
        return set(self._jobs) | set(self._results) | self._quiet

    def stop(self) -> None:
        with self._lock:
            self._jobs.clear()

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(cancel_all(), self._loop)
        self._thread.join(timeout=5)

    def health(self) -> list[str]:
        """For liveness: the measurements' event loop must run (every analysis waits on it)."""
        return [] if self._thread.is_alive() else ["analysis runner not running"]

    def busy(self, key: AppKey) -> int:
        with self._lock:
            return len(self._jobs.get(key, {}))

    def template_changed(self, namespace: str, key: TemplateKey) -> None:
        """The template was created, changed or deleted (a watch says so): read it anew."""
        self._templates.pop(("" if key.cluster_scope else namespace, key), None)

    def _template(self, namespace: str, key: TemplateKey) -> AnalysisTemplateSpec | str | None:
        cache_key = ("" if key.cluster_scope else namespace, key)
        cached = self._templates.get(cache_key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < TEMPLATE_TTL_SECONDS:
            return cached[1]
        kind = "ClusterAnalysisTemplate" if key.cluster_scope else "AnalysisTemplate"
        try:
            body = self.kube.get(kind, None if key.cluster_scope else namespace, key.name)
            spec: AnalysisTemplateSpec | str | None = AnalysisTemplateSpec.model_validate(body.get("spec") or {})
        except ApiError as exc:
            if not exc.not_found:
                raise
            spec = None
        except ValidationError as exc:  # admission checks most of it: stored by an older CRD, say
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            spec = f"spec.{where}: {first['msg']}" if where else f"spec: {first['msg']}"
        self._templates[cache_key] = (now, spec)
        return spec

    def _refusal(self, address: str) -> str | None:
        if address in self._refused:
            return self._refused[address]
        parts = urlsplit(address)
        host_port = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        if not self.allowed(host_port):
            return "is not allowed by the operator's --allow-metric-server"
        return None

    # The event loop's side -------------------------------------------------------------------

    async def _measure(self, key: AppKey, request: MeasurementRequest) -> None:
        delay = request.due.timestamp() - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        server = urlsplit(request.address).netloc
        lane = self._lanes.setdefault(server, asyncio.Semaphore(1))
        async with lane:
            result = replace(await self._take(request), target=request.target)
        job_key = (request.run, request.metric, request.seq)
        with self._lock:
            jobs = self._jobs.get(key, {})
            if jobs.pop(job_key, None) is None:
                return  # cancelled meanwhile: the run ended
            self._results.setdefault(key, {})[job_key] = result
            quiet = key in self._quiet
        if not quiet:
            self.notify(key)

    async def _take(self, request: MeasurementRequest) -> RawResult:
        try:
            async with asyncio.timeout(request.timeout + 1):
                if request.kind == "prometheus":
                    values = await self.measurer.prometheus(request.address, request.target, request.timeout)
                    return RawResult(self._stamp(), values=tuple(values))
                passed, answer = await self.measurer.web(request.target, request.payload, request.timeout,
                                                       dict(request.headers))
                return RawResult(self._stamp(), passed=passed, detail="" if passed else answer)
        except Refused as exc:
            with self._lock:
                self._refused[request.address] = str(exc)
            return RawResult(self._stamp(), error=f"refused: {exc}")
        except Invalid as exc:
            return RawResult(self._stamp(), error=str(exc), invalid=True)
        except TimeoutError:
            return RawResult(self._stamp(), error=f"no answer within {request.timeout:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is an answer: Error, never a pass
            return RawResult(self._stamp(), error=str(exc) or type(exc).__name__)

    def _stamp(self) -> str:
        return format_time(datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0))
