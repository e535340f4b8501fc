"""The reconciler never raises: every failure becomes a named, bounded verdict in status.

The apiserver here is an in-memory fake (pure logic of the reconcile loop); the real one is
exercised by the e2e tests.
"""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
import urllib3.exceptions

from apprelease.api.spec import AppRelease
from apprelease.controller import reconciler as reconciler_module
from apprelease.controller.reconciler import Reconciler
from apprelease.k8s.client import ApiError
from apprelease.k8s.history import from_controller_revision
from apprelease.k8s.observe import RECORD, Children, owned_by
from apprelease.render import labels
from apprelease.render.hashing import revision_hash
from apprelease.rollout.deletion import FINALIZER

from .sim import T0

NS, NAME, UID = "ns", "shop", "uid-shop"


class FakeKube:
    """Objects by (kind, namespace, name); failures to inject by kind."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.fail: dict[str, Exception] = {}
        self.applied: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self._versions = itertools.count(100)

    def _raise_for(self, kind: str) -> None:
        error = self.fail.get(kind)
        if error is not None:
            raise error

    def apply(self, obj: dict[str, Any], *, subresource: str | None = None, manager: str = "") -> dict[str, Any]:
        kind, meta = obj["kind"], obj["metadata"]
        self._raise_for(kind + (f"/{subresource}" if subresource else ""))
        key = (kind, meta["namespace"], meta["name"])
        stored = copy.deepcopy(self.objects.get(key) or {})
        if subresource == "status":
            stored["status"] = copy.deepcopy(obj["status"])
        else:
            stored.update(copy.deepcopy({k: v for k, v in obj.items() if k != "metadata"}))
            stored["metadata"] = {**stored.get("metadata", {}), **copy.deepcopy(meta)}
            stored["metadata"].setdefault("uid", f"uid-{kind}-{meta['name']}")
        stored.setdefault("kind", kind)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = stored
        self.applied.append((kind + (f"/{subresource}" if subresource else ""), meta["name"]))
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        self._raise_for(f"get {kind}")
        found = self.objects.get((kind, namespace or "", name))
        if found is None:
            raise ApiError(404, "NotFound", f'{kind} "{name}" not found')
        return copy.deepcopy(found)

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        """Equality and `!key` label selectors, as the operator writes them."""
        wanted = [term.strip() for term in query.get("labelSelector", "").split(",") if term.strip()]

        def matches(obj: dict[str, Any]) -> bool:
            have = obj["metadata"].get("labels") or {}
            for term in wanted:
                if term.startswith("!"):
                    if term[1:] in have:
                        return False
                else:
                    key, _, value = term.partition("=")
                    if have.get(key) != value:
                        return False
            return True

        return [copy.deepcopy(obj) for (k, ns, _), obj in self.objects.items()
                if k == kind and ns == (namespace or ns) and matches(obj)]

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._raise_for(f"patch {kind}")
        stored = self.objects[(kind, namespace or "", name)]
        stored["metadata"].update({k: v for k, v in patch.get("metadata", {}).items() if k != "resourceVersion"})
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(stored)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.events.append(obj)
        return obj

    def delete(self, kind: str, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        self._raise_for(f"delete {kind}")
        self.objects.pop((kind, namespace or "", name), None)


class FakeCache:
    """The informers' view: exactly what the fake apiserver holds, by app label."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def app(self, key: tuple[str, str]) -> dict[str, Any] | None:
        found = self.kube.objects.get(("AppRelease", *key))
        return copy.deepcopy(found) if found else None

    def _managed(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        meta_labels = obj["metadata"].get("labels") or {}
        if meta_labels.get(labels.MANAGED_BY) != labels.MANAGER:
            return None
        return (obj["metadata"]["namespace"], meta_labels.get(labels.INSTANCE, ""))

    def children(self, key: tuple[str, str]) -> Children:
        result = Children()
        for (kind, _ns, name), obj in self.kube.objects.items():
            if kind != "AppRelease" and self._managed(obj) == key:
                view = copy.deepcopy(obj)
                view["metadata"].pop("managedFields", None)  # slimmed, as the informers keep them
                if kind == "ControllerRevision":
                    view[RECORD] = from_controller_revision(view)  # as the real cache keeps it
                result.by_kind.setdefault(kind, {})[name] = view
        return result

    def owner_of(self, kind: str, namespace: str, name: str) -> tuple[str, str] | None:
        obj = self.kube.objects.get((kind, namespace, name))
        return self._managed(obj) if obj else None

    def remember(self, obj: dict[str, Any]) -> None:
        pass

    def forget(self, obj: dict[str, Any]) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def setup(spec: dict[str, Any] | None = None, **meta: Any) -> tuple[Reconciler, FakeKube, Clock]:
    kube = FakeKube()
    kube.objects[("AppRelease", NS, NAME)] = {
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1, "resourceVersion": "1", **meta},
        "spec": {"image": "registry/shop:v1", "replicas": 2, "port": 8080, **(spec or {})},
    }
    clock = Clock()
    return Reconciler(kube, FakeCache(kube), clock=clock), kube, clock  # type: ignore[arg-type]


def status(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[("AppRelease", NS, NAME)].get("status") or {}


def condition(kube: FakeKube, kind: str) -> dict[str, Any]:
    return next((c for c in status(kube).get("conditions", []) if c["type"] == kind), {})


def warnings(kube: FakeKube) -> list[str]:
    return [e["reason"] for e in kube.events if e["type"] == "Warning"]


def test_a_spec_the_renderer_cannot_use_is_stalled_with_an_event_not_a_loop() -> None:
    reconciler, kube, _ = setup({"podTemplate": {"metadata": "x"}})
    outcome = reconciler.reconcile((NS, NAME))
    assert not outcome.retry and outcome.requeue_after == reconciler_module.NOT_TRANSIENT_RETRY_SECONDS
    assert condition(kube, "Stalled")["status"] == "True"
    assert status(kube)["failure"]["reason"] == "InvalidSpec"
    assert "spec.podTemplate" in status(kube)["message"] and "metadata must be an object" in status(kube)["message"]
    assert warnings(kube) == ["InvalidSpec", "Stalled"]
    reconciler.reconcile((NS, NAME))  # the same verdict again: no new status write, no new Event
    assert warnings(kube) == ["InvalidSpec", "Stalled"]


def test_an_exception_in_the_pure_core_is_an_internal_error_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    reconciler, kube, _ = setup()

    def broken(*args: Any) -> Any:
        return 1 / 0

    monkeypatch.setattr(reconciler_module, "make_plan", broken)
    outcome = reconciler.reconcile((NS, NAME))
    assert status(kube)["failure"]["reason"] == "InternalError"
    assert "ZeroDivisionError" in status(kube)["message"] and condition(kube, "Stalled")["status"] == "True"
    assert not outcome.retry


@pytest.mark.parametrize("error", [
    ApiError(503, "ServiceUnavailable", "etcd leader changed"),
    ApiError(429, "TooManyRequests", "slow down"),
    urllib3.exceptions.ProtocolError("Connection aborted."),
    TimeoutError("read timed out"),
])
def test_apiserver_failures_hold_then_stall_after_their_bound_then_clear(error: Exception) -> None:
    reconciler, kube, clock = setup()
    kube.fail["Deployment"] = error
    first = reconciler.reconcile((NS, NAME))
    assert first.retry
    assert status(kube)["failure"]["reason"] == "ApiUnavailable"
    assert condition(kube, "Stalled")["status"] == "False"
    assert condition(kube, "Reconciling")["reason"] == "ApiUnavailable"
    since = status(kube)["failure"]["since"]

    clock.now += timedelta(minutes=2)
    reconciler.reconcile((NS, NAME))
    assert status(kube)["failure"]["since"] == since  # still the same failure
    assert condition(kube, "Stalled")["status"] == "False"

    clock.now += timedelta(minutes=4)
    reconciler.reconcile((NS, NAME))
    assert condition(kube, "Stalled")["status"] == "True" and status(kube)["phase"] == "Degraded"
    assert warnings(kube) == ["ApiUnavailable", "Stalled"]

    del kube.fail["Deployment"]
    outcome = reconciler.reconcile((NS, NAME))
    assert not outcome.retry and "failure" not in status(kube)
    assert condition(kube, "Stalled")["status"] == "False"


def test_a_child_the_apiserver_rejects_is_stalled_at_once_with_its_message() -> None:
    reconciler, kube, _ = setup()
    kube.fail["Deployment"] = ApiError(422, "Invalid", 'Deployment.apps "shop" is invalid: spec.template.spec.containers[0].image: Required value')
    reconciler.reconcile((NS, NAME))
    assert status(kube)["failure"]["reason"] == "ChildRejected"
    assert "containers[0].image" in status(kube)["message"]
    assert condition(kube, "Stalled")["status"] == "True"


def test_an_apply_that_does_not_fit_the_schema_is_rejected_not_retried() -> None:
    """A wrong type in podTemplate: the apiserver answers 500 to the apply, but no retry can
    help (fuzzing finding 23), so it is ChildRejected at once, naming the field."""
    reconciler, kube, _ = setup()
    kube.fail["Deployment"] = ApiError(
        500, "InternalError",
        "failed to create typed patch object (ns/shop; apps/v1, Kind=Deployment):"
        " .spec.template.spec.hostNetwork: expected boolean, got &value.valueUnstructured{Value:\"yes\"}",
    )
    outcome = reconciler.reconcile((NS, NAME))
    assert status(kube)["failure"]["reason"] == "ChildRejected"
    assert "spec.template.spec.hostNetwork" in status(kube)["message"]
    assert condition(kube, "Stalled")["status"] == "True"
    assert not outcome.retry


def test_a_name_that_belongs_to_another_app_is_never_applied_over() -> None:
    reconciler, kube, _ = setup()
    kube.objects[("Deployment", NS, NAME)] = {
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "d1",
                     "labels": {labels.MANAGED_BY: labels.MANAGER, labels.INSTANCE: "other"},
                     "ownerReferences": [{"uid": "uid-other", "controller": True, "kind": "AppRelease", "name": "other"}]},
    }
    reconciler.reconcile((NS, NAME))
    assert ("Deployment", NAME) not in kube.applied
    assert status(kube)["failure"]["reason"] == "ChildConflict"
    assert "belongs to AppRelease other" in status(kube)["message"]
    assert kube.objects[("Deployment", NS, NAME)]["metadata"]["ownerReferences"][0]["uid"] == "uid-other"


def test_an_unmanaged_object_with_the_name_is_not_taken_over() -> None:
    reconciler, kube, _ = setup()
    kube.objects[("Service", NS, NAME)] = {"kind": "Service", "metadata": {"name": NAME, "namespace": NS, "uid": "s1"}}
    reconciler.reconcile((NS, NAME))
    assert ("Service", NAME) not in kube.applied
    assert status(kube)["failure"]["reason"] == "ChildConflict"
    assert "not managed by this AppRelease" in status(kube)["message"]


def test_a_converged_app_is_left_alone_and_its_own_children_are_not_conflicts() -> None:
    reconciler, kube, _ = setup()
    reconciler.reconcile((NS, NAME))
    assert "failure" not in status(kube)
    for (kind, _ns, _name), obj in kube.objects.items():
        if kind != "AppRelease":
            assert owned_by(obj, UID)
    writes = len(kube.applied)
    reconciler.reconcile((NS, NAME))
    assert len(kube.applied) == writes


def test_when_even_the_status_write_fails_the_reconcile_still_returns() -> None:
    reconciler, kube, _ = setup()
    kube.fail["Deployment"] = ApiError(500, "InternalError", "boom")
    kube.fail["AppRelease/status"] = ApiError(500, "InternalError", "boom")
    outcome = reconciler.reconcile((NS, NAME))
    assert outcome.retry and not status(kube)


class FailingRegistry:
    """A registry layer that blows up in an unforeseen way."""

    def state_for(self, app: Any, observed: Any, previous: Any = None) -> Any:
        raise KeyError("port")

    def execute(self, app: Any, actions: Any, *, busy: bool = False) -> None:
        raise AssertionError("not reached")

    def forget(self, key: Any) -> None:
        pass


def test_deletion_never_hangs_whatever_the_registry_raises() -> None:
    deleted_at = "2026-11-23T10:00:00Z"
    reconciler, kube, clock = setup(
        {"registry": {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "deletionTimeout": "30s"}},
        deletionTimestamp=deleted_at, finalizers=[FINALIZER],
    )
    reconciler.registry = FailingRegistry()  # type: ignore[assignment]
    clock.now = T0 + timedelta(seconds=1)  # the first attempt: the bound counts from there
    outcome = reconciler.reconcile((NS, NAME))
    assert outcome.retry and FINALIZER in kube.objects[("AppRelease", NS, NAME)]["metadata"]["finalizers"]
    clock.now = T0 + timedelta(seconds=30)
    assert reconciler.reconcile((NS, NAME)).retry
    clock.now = T0 + timedelta(seconds=31)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in kube.objects[("AppRelease", NS, NAME)]["metadata"]["finalizers"]
    assert warnings(kube) == ["DeletionForced"]
    assert "KeyError" in kube.events[0]["message"]


def test_a_kind_the_apiserver_does_not_know_is_a_verdict_not_silence() -> None:
    """An HTTPRoute without the Gateway API CRDs: 404 from the apply. Not mistaken for a gone
    namespace (which ends the reconcile without a word)."""
    reconciler, kube, _ = setup()
    kube.fail["Deployment"] = ApiError(404, "NotFound", "the server could not find the requested resource")
    reconciler.reconcile((NS, NAME))
    assert status(kube)["failure"]["reason"] == "ChildRejected"
    assert "Gateway API" in status(kube)["message"]
    kube.fail["Deployment"] = ApiError(404, "NotFound", 'namespaces "ns" not found')
    before = dict(status(kube))
    assert reconciler.reconcile((NS, NAME)).retry is False and status(kube) == before


def test_a_replica_whose_writes_are_fenced_off_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Past its renew deadline a replica's writes are refused by its own fence: that is no
    failure of the app (the new leader owns it now), so no status, no Event, no traceback."""
    from apprelease.k8s.fence import NotLeading

    reconciler, kube, _ = setup()
    for kind in ("ControllerRevision", "Deployment", "AppRelease/status", "patch AppRelease"):
        kube.fail[kind] = NotLeading(f"{kind}: refused, this replica stopped leading")
    with caplog.at_level("WARNING", logger="apprelease"):
        outcome = reconciler.reconcile((NS, NAME))
    assert outcome.writes == 0 and status(kube) == {} and kube.events == []
    assert [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")] == []


def test_a_reconcile_keeps_the_apps_series_and_forget_removes_them() -> None:
    from prometheus_client import CollectorRegistry

    from apprelease.controller.app_metrics import AppMetrics

    registry = CollectorRegistry()
    reconciler, kube, _ = setup({"podTemplate": {"metadata": "x"}})
    reconciler.app_metrics = AppMetrics(registry)
    reconciler.reconcile((NS, NAME))
    labels = {"namespace": NS, "name": NAME}
    assert registry.get_sample_value("apprelease_app_failure", {**labels, "reason": "InvalidSpec"}) == 1
    kube.objects[("AppRelease", NS, NAME)]["spec"].pop("podTemplate")
    reconciler.reconcile((NS, NAME))
    assert registry.get_sample_value("apprelease_app_failure", {**labels, "reason": "InvalidSpec"}) is None
    phase = status(kube)["phase"]
    assert registry.get_sample_value("apprelease_app_info", {**labels, "phase": phase, "strategy": "rolling"}) == 1
    reconciler.forget((NS, NAME))
    assert not [s for family in registry.collect() for s in family.samples]


class ScriptedRegistry:
    """The registry layer as the reconciler sees it: a scripted read (None: not read yet),
    one pod and its instance; records the actions it is handed."""

    def __init__(self) -> None:
        from apprelease.rollout.observed import PodState

        self.pods = (PodState(name="p1", track="stable", revision=1, ready=True, ip="10.0.0.1"),)
        self.read: Any = None
        self.actions: list[Any] = []

    def answer(self, *, enabled: bool | None, pods: bool = True) -> None:
        from apprelease.registry.base import RegistryInstance
        from apprelease.registry.registration import RegistryRead

        if enabled is None:
            self.read = RegistryRead(None, "connection refused", reason="RegistryUnavailable")
        else:
            self.read = RegistryRead((RegistryInstance("10.0.0.1", 8080, True, enabled, 1.0, True, "DEFAULT"),))
        if not pods:
            self.pods = ()

    def state_for(self, app: Any, observed: Any, previous: Any = None) -> Any:
        import dataclasses

        from apprelease.registry.registration import PENDING, RegistryRead, summarize

        read = self.read or RegistryRead(None, "waiting for the first read", reason=PENDING)
        registration = summarize(provider="nacos", service="svc", read=read, pods=self.pods, revisions={"stable": 1})
        return dataclasses.replace(observed, pods=self.pods, registration=registration, registry=registration.state)

    def execute(self, app: Any, actions: Any, *, busy: bool = False) -> None:
        self.actions.extend(actions)

    def forget(self, key: Any) -> None:
        self.read = None  # as the monitor: a forgotten app has no read any more


def deleted_while_the_operator_was_down(minutes: int = 10) -> tuple[Reconciler, FakeKube, Clock, ScriptedRegistry]:
    deleted_at = (T0 - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reconciler, kube, clock = setup(
        {"registry": {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "deletionTimeout": "30s",
                      "drainSeconds": 10}},
        deletionTimestamp=deleted_at, finalizers=[FINALIZER],
    )
    registry = ScriptedRegistry()
    reconciler.registry = registry  # type: ignore[assignment]
    return reconciler, kube, clock, registry


def finalizers(kube: FakeKube) -> list[str]:
    return list(kube.objects[("AppRelease", NS, NAME)]["metadata"].get("finalizers") or [])


def test_a_deletion_older_than_its_timeout_waits_for_the_first_read_and_takes_instances_offline() -> None:
    """After an operator restart longer than deletionTimeout the finalizer went in the first
    reconcile, before Nacos was read once: "not read yet" counted as "unreachable since the
    deletion request". The bound counts from this operator run's first attempt."""
    reconciler, kube, clock, registry = deleted_while_the_operator_was_down()
    reconciler.reconcile((NS, NAME))
    assert FINALIZER in finalizers(kube)  # not read yet: nothing is known, nothing is skipped
    registry.answer(enabled=True)
    clock.now = T0 + timedelta(seconds=1)
    reconciler.reconcile((NS, NAME))
    assert [(a.kind, a.ip, a.enabled) for a in registry.actions] == [("write", "10.0.0.1", False)]
    assert FINALIZER in finalizers(kube)
    registry.answer(enabled=False)
    clock.now = T0 + timedelta(seconds=2)
    reconciler.reconcile((NS, NAME))  # offline: the drain starts now
    clock.now = T0 + timedelta(seconds=12)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER in finalizers(kube) and warnings(kube) == []  # drained; the pod is stopping
    registry.answer(enabled=False, pods=False)
    clock.now = T0 + timedelta(seconds=13)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in finalizers(kube) and warnings(kube) == []
    assert [e["reason"] for e in kube.events] == ["RegistryCleanedUp"]


def drained_and_stopped(reconciler: Reconciler, clock: Clock, registry: ScriptedRegistry) -> None:
    """The deletion taken through to the pass that releases the finalizer (not run yet)."""
    registry.answer(enabled=False)
    reconciler.reconcile((NS, NAME))  # offline already: the drain starts now
    clock.now = T0 + timedelta(seconds=10)
    reconciler.reconcile((NS, NAME))
    registry.answer(enabled=False, pods=False)
    clock.now = T0 + timedelta(seconds=40)  # past deletionTimeout from this run's first attempt


def test_a_stale_copy_still_showing_the_released_finalizer_is_not_finalized_again() -> None:
    """The finalizer was released, the registry forgot the app; a pass ~60 ms later read a
    copy from before the release (the watch had not caught up) and emitted RegistryUnreachable
    on top of RegistryCleanedUp."""
    reconciler, kube, clock, registry = deleted_while_the_operator_was_down()
    drained_and_stopped(reconciler, clock, registry)
    before_release = copy.deepcopy(kube.objects[("AppRelease", NS, NAME)])
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in finalizers(kube)
    patched = list(kube.objects[("AppRelease", NS, NAME)]["metadata"].get("finalizers") or [])
    kube.objects[("AppRelease", NS, NAME)] = before_release  # the watch's copy, behind our write
    outcome = reconciler.reconcile((NS, NAME))
    assert [e["reason"] for e in kube.events] == ["RegistryCleanedUp"] and not outcome.retry
    assert finalizers(kube) == [FINALIZER] and patched == []  # nothing written from the stale copy


def test_a_refused_finalizer_release_keeps_the_registry_read_for_the_next_pass() -> None:
    """A release refused (a conflict) is retried; the registry must not have forgotten the
    app meanwhile, or the retry reads "never read" and reports the registry unreachable."""
    reconciler, kube, clock, registry = deleted_while_the_operator_was_down()
    drained_and_stopped(reconciler, clock, registry)
    kube.fail["patch AppRelease"] = ApiError(409, "Conflict", "the object has been modified")
    assert reconciler.reconcile((NS, NAME)).retry
    del kube.fail["patch AppRelease"]
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in finalizers(kube) and warnings(kube) == []


def test_an_unreachable_registry_after_a_restart_gets_the_whole_timeout_from_the_first_attempt() -> None:
    reconciler, kube, clock, registry = deleted_while_the_operator_was_down()
    registry.answer(enabled=None)
    reconciler.reconcile((NS, NAME))
    clock.now = T0 + timedelta(seconds=29)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER in finalizers(kube)
    clock.now = T0 + timedelta(seconds=30)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in finalizers(kube) and warnings(kube) == ["RegistryUnreachable"]
    assert "connection refused" in kube.events[0]["message"]


def test_a_registry_never_read_in_the_whole_timeout_is_unreachable_and_says_so() -> None:
    reconciler, kube, clock, _registry = deleted_while_the_operator_was_down()
    reconciler.reconcile((NS, NAME))
    clock.now = T0 + timedelta(seconds=30)
    reconciler.reconcile((NS, NAME))
    assert FINALIZER not in finalizers(kube) and warnings(kube) == ["RegistryUnreachable"]
    assert "not read" in kube.events[0]["message"]


def adopting_spec(**extra: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": NAME, "image": "registry/shop:v1", "ports": [{"containerPort": 8080}]}]}}
    body = {"metadata": {"name": NAME}, "spec": {"image": "registry/shop:v1", "replicas": 2, "port": 8080, **extra}}
    digest = revision_hash(AppRelease.model_validate(body).spec.revision_template())
    return {"adopt": {"deployment": NAME, "selector": {"app": NAME}, "revisionHash": digest, "podTemplate": template},
            **extra}


def test_an_adopting_app_release_applies_over_the_running_deployment_and_service_it_names() -> None:
    reconciler, kube, _ = setup(adopting_spec())
    status_entry = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}
    running = {"metadata": {"name": NAME, "namespace": NS, "uid": "d1",
                            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"},
                                              status_entry]}}
    kube.objects[("Deployment", NS, NAME)] = {"kind": "Deployment", **copy.deepcopy(running)}
    kube.objects[("Service", NS, NAME)] = {"kind": "Service", **copy.deepcopy(running)}
    reconciler.reconcile((NS, NAME))
    assert "failure" not in status(kube)
    deployment = kube.objects[("Deployment", NS, NAME)]
    assert owned_by(deployment, UID)
    assert deployment["spec"]["template"] == adopting_spec()["adopt"]["podTemplate"]
    assert owned_by(kube.objects[("Service", NS, NAME)], UID)
    # kubectl no longer co-owns the fields: a later revision leaving one out removes it.
    assert deployment["metadata"]["managedFields"] == [status_entry]


def test_an_adopting_app_release_still_never_takes_a_helm_release_object() -> None:
    reconciler, kube, _ = setup(adopting_spec())
    kube.objects[("Service", NS, NAME)] = {"kind": "Service", "metadata": {
        "name": NAME, "namespace": NS, "uid": "s1", "annotations": {"meta.helm.sh/release-name": "shop"}}}
    reconciler.reconcile((NS, NAME))
    assert ("Service", NAME) not in kube.applied
    assert status(kube)["failure"]["reason"] == "ChildConflict"


def test_a_child_changed_by_another_manager_is_reverted_with_an_event_naming_it() -> None:
    reconciler, kube, _ = setup()
    reconciler.reconcile((NS, NAME))
    reconciler.reconcile((NS, NAME))
    assert "DriftReverted" not in warnings(kube)  # our own applies are no drift
    deployment = kube.objects[("Deployment", NS, NAME)]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "registry/shop:hotfix"
    deployment["metadata"]["managedFields"] = [
        {"manager": "apprelease", "operation": "Apply", "time": "2026-01-01T00:00:00Z"},
        {"manager": "rancher", "operation": "Update", "time": "2026-01-01T00:05:00Z"},
        {"manager": "kube-controller-manager", "operation": "Update", "time": "2026-01-01T00:06:00Z"},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "time": "2026-01-01T00:07:00Z"},
    ]
    reconciler.reconcile((NS, NAME))
    assert kube.objects[("Deployment", NS, NAME)]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/shop:v1"
    [event] = [e for e in kube.events if e["reason"] == "DriftReverted"]
    assert event["type"] == "Warning"
    assert ".spec.template.spec.containers[0].image" in event["message"]
    assert event["message"].startswith(f"Deployment {NAME} was changed by rancher outside the AppRelease")


def test_a_drift_after_an_operator_restart_is_reported_from_the_managed_fields() -> None:
    reconciler, kube, clock = setup()
    reconciler.reconcile((NS, NAME))
    restarted = Reconciler(kube, FakeCache(kube), clock=clock)  # type: ignore[arg-type]
    deployment = kube.objects[("Deployment", NS, NAME)]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "registry/shop:hotfix"
    deployment["metadata"]["managedFields"] = [
        {"manager": "apprelease", "operation": "Apply", "time": "2026-01-01T00:00:00Z"},
        {"manager": "rancher", "operation": "Update", "time": "2026-01-01T00:05:00Z",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
             'k:{"name":"shop"}': {"f:image": {}}}}}}}},
        {"manager": "kubectl-annotate", "operation": "Update", "time": "2026-01-01T00:06:00Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:note": {}}}}},
    ]
    restarted.reconcile((NS, NAME))
    restarted.reconcile((NS, NAME))
    assert kube.objects[("Deployment", NS, NAME)]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/shop:v1"
    [event] = [e for e in kube.events if e["reason"] == "DriftReverted"]
    assert event["message"].startswith(f"Deployment {NAME} was changed by rancher outside the AppRelease"
                                       " (.spec.template.spec.containers[0].image)")


def test_a_new_revision_over_fields_another_manager_touched_elsewhere_is_no_drift() -> None:
    reconciler, kube, clock = setup()
    reconciler.reconcile((NS, NAME))
    restarted = Reconciler(kube, FakeCache(kube), clock=clock)  # type: ignore[arg-type]
    kube.objects[("Deployment", NS, NAME)]["metadata"]["managedFields"] = [
        {"manager": "kubectl-annotate", "operation": "Update", "time": "2026-01-01T00:06:00Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:note": {}}}}}]
    body = kube.objects[("AppRelease", NS, NAME)]
    body["spec"]["image"] = "registry/shop:v2"
    body["metadata"]["generation"] = 2
    restarted.reconcile((NS, NAME))
    assert "DriftReverted" not in warnings(kube)


def test_a_drift_that_an_apply_does_not_end_is_reported_once_until_it_converges() -> None:
    reconciler, kube, _ = setup()
    reconciler.reconcile((NS, NAME))
    service = kube.objects[("Service", NS, NAME)]
    service["spec"]["ports"].append({"name": "x", "port": 9999})  # another manager's entry stays
    original_apply = kube.apply

    def apply_keeping_their_port(obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        theirs = [p for p in kube.objects[(obj["kind"], NS, obj["metadata"]["name"])]["spec"].get("ports", [])
                  if p["port"] == 9999] if obj["kind"] == "Service" else []
        result = original_apply(obj, **kwargs)
        if theirs:
            kube.objects[("Service", NS, NAME)]["spec"]["ports"] += theirs
        return result

    kube.apply = apply_keeping_their_port  # type: ignore[method-assign]
    for _ in range(3):
        reconciler.reconcile((NS, NAME))
    assert [e["reason"] for e in kube.events].count("DriftReverted") == 1
    kube.apply = original_apply  # type: ignore[method-assign]
    kube.objects[("Service", NS, NAME)]["spec"]["ports"].pop()
    reconciler.reconcile((NS, NAME))  # converged: the next drift is reported again
    kube.objects[("Service", NS, NAME)]["spec"]["ports"].append({"name": "x", "port": 9999})
    reconciler.reconcile((NS, NAME))
    assert [e["reason"] for e in kube.events].count("DriftReverted") == 2


class RecordingRegistry:
    """Nacos lists every pod the operator observes; records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.actions: list[Any] = []

    def state_for(self, app: Any, observed: Any, previous: Any = None) -> Any:
        import dataclasses

        from apprelease.registry.base import RegistryInstance
        from apprelease.registry.registration import RegistryRead, summarize

        self.seen = list(observed.pods)
        read = RegistryRead(tuple(RegistryInstance(p.ip, 8080, True, True, 1.0, True, "DEFAULT")
                                  for p in observed.pods if p.ip))
        registration = summarize(provider="nacos", service="svc", read=read, pods=observed.pods, revisions={"stable": 1})
        return dataclasses.replace(observed, registration=registration, registry=registration.state)

    def execute(self, app: Any, actions: Any, *, busy: bool = False) -> None:
        self.actions.extend(actions)

    def forget(self, key: Any) -> None:
        pass


def adopted_pod(name: str, ip: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                                        "labels": {"app": NAME, "pod-template-hash": "5d9f"}},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                "containerStatuses": [{"name": NAME, "restartCount": 0, "state": {"running": {}}}]}}


def test_the_adopted_pods_are_observed_by_the_adopted_selector_as_the_adopted_revision() -> None:
    spec = adopting_spec(registry={"nacos": {"serverAddr": "nacos:8848", "serviceName": NAME}, "drainSeconds": 10})
    reconciler, kube, _ = setup(spec)
    registry = RecordingRegistry()
    reconciler.registry = registry  # type: ignore[assignment]
    for name, ip in (("shop-5d9f-a", "10.0.0.1"), ("shop-5d9f-b", "10.0.0.2")):
        kube.objects[("Pod", NS, name)] = adopted_pod(name, ip)
    other = adopted_pod("other-1", "10.0.0.9")
    other["metadata"]["labels"] = {"app": "other"}
    kube.objects[("Pod", NS, "other-1")] = other
    reconciler.reconcile((NS, NAME))
    reconciler.reconcile((NS, NAME))  # the second pass sees the history the first one wrote
    seen = {p.name: p for p in registry.seen}
    assert set(seen) == {"shop-5d9f-a", "shop-5d9f-b"}
    assert all(p.adopted and p.track == "stable" and p.revision == 1 and p.ready for p in seen.values()), seen
    registration = status(kube)["registration"]
    assert registration["summary"] == "2/2", registration
    # No readiness-gate condition is written on a pod that has no such gate.
    assert not [kind for kind, _ in kube.applied if kind == "Pod/status"]
