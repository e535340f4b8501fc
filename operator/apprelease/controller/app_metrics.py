"""Per-app series (apprelease_app_info, weights, failure, canary step): set from each
reconcile's status, a series removed as soon as one of its label values changes (a phase
change must not leave the old phase at 1), and all of an app's series removed when it goes."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry

from .. import metrics
from ..api.status import AppReleaseStatus
from ..k8s.observe import AppKey
from ..rollout.state import canary_step, stored


@dataclass(frozen=True)
class _Shown:
    """The label values (beyond namespace and name) and gauges an app has series for."""

    info: tuple[str, str]  # phase, strategy
    failure: str | None
    weights: bool
    step: bool


class AppMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self._series = metrics.PER_APP if registry is None or registry is REGISTRY else metrics.per_app(registry)
        self._shown: dict[AppKey, _Shown] = {}
        self._lock = threading.Lock()  # reconciles run in several worker threads

    def observe(self, key: AppKey, status: AppReleaseStatus) -> None:
        series = self._series
        step = canary_step(stored(status))  # from the stored rollout state, not derived fields
        shown = _Shown(
            info=(status.phase or "Unknown", status.strategy or "rolling"),
            failure=status.failure.reason if status.failure else None,
            weights=status.set_weight is not None or status.actual_weight is not None,
            step=step is not None,
        )
        with self._lock:
            self._remove(key, self._shown.get(key), keep=shown)
            self._shown[key] = shown
            series.info.labels(*key, *shown.info).set(1)
            if shown.failure is not None:
                series.failure.labels(*key, shown.failure).set(1)
            if shown.weights:
                series.set_weight.labels(*key).set(status.set_weight or 0)
                series.weight.labels(*key).set(status.actual_weight or 0)
            if shown.step:
                series.step.labels(*key).set(step or 0)

    def forget(self, key: AppKey) -> None:
        with self._lock:
            self._remove(key, self._shown.pop(key, None), keep=None)

    def _remove(self, key: AppKey, old: _Shown | None, *, keep: _Shown | None) -> None:
        """Remove the series of ``old`` that ``keep`` does not have (all without ``keep``)."""
        if old is None:
            return
        series = self._series
        if keep is None or keep.info != old.info:
            series.info.remove(*key, *old.info)
        if old.failure is not None and (keep is None or keep.failure != old.failure):
            series.failure.remove(*key, old.failure)
        if old.weights and (keep is None or not keep.weights):
            series.set_weight.remove(*key)
            series.weight.remove(*key)
        if old.step and (keep is None or not keep.step):
            series.step.remove(*key)
