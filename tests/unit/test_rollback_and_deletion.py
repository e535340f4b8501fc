"""Rollback as a spec edit, and deletion with a registry: pure parts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apprelease.api.status import AppReleaseStatus, DrainingInstance
from apprelease.registry.base import RegistryInstance
from apprelease.registry.registration import RegistryRead, summarize
from apprelease.rollout.deletion import needs_finalizer, plan_deletion
from apprelease.rollout.observed import Observed, PodState, RevisionRecord
from apprelease.rollout.rollback import rollback_patch, rollback_target

from .sim import T0, make_app

NACOS = {"nacos": {"serverAddr": "nacos:8848", "serviceName": "shop"}, "drainSeconds": 10,
         "deletionTimeout": "30s"}


def _record(number: int, image: str, *, promoted: bool = False, **spec: object) -> RevisionRecord:
    template = make_app({"image": image, **spec}).spec.revision_template()
    return RevisionRecord(number=number, hash=f"h{number}", template=template, created="t",
                          promoted="t" if promoted else None)


def test_rollback_target_defaults_to_previous_promoted() -> None:
    history = [_record(1, "a:1", promoted=True), _record(2, "a:2", promoted=True), _record(3, "a:3")]
    assert rollback_target(history, current_hash="h2", stable_hash="h2", to_revision=None).number == 1
    # Mid-canary (current 3 not promoted, stable 2): back to the stable revision.
    assert rollback_target(history, current_hash="h3", stable_hash="h2", to_revision=None).number == 2
    assert rollback_target(history, current_hash="h3", stable_hash="h2", to_revision=1).number == 1


def test_rollback_target_errors_name_the_choices() -> None:
    history = [_record(1, "a:1", promoted=True)]
    with pytest.raises(LookupError, match=r"revision 7 is not in the history \(known: 1\)"):
        rollback_target(history, current_hash="h1", stable_hash="h1", to_revision=7)
    with pytest.raises(LookupError, match="no earlier promoted revision"):
        rollback_target(history, current_hash="h1", stable_hash="h1", to_revision=None)


def test_rollback_patch_restores_image_config_and_removes_new_fields() -> None:
    old = _record(1, "a:1", config={"mountPath": "/c", "files": {"app.yml": "v: 1\n"}}).template
    spec = {"image": "a:2", "port": 8080, "replicas": 3,
            "config": {"mountPath": "/c", "files": {"app.yml": "v: 2\n"}},
            "env": [{"name": "NEW", "value": "x"}]}
    ops = rollback_patch(spec, old)
    by_path = {op["path"]: op for op in ops}
    assert by_path["/spec/image"] == {"op": "add", "path": "/spec/image", "value": "a:1"}
    assert by_path["/spec/config"]["value"]["files"] == {"app.yml": "v: 1\n"}
    assert by_path["/spec/env"] == {"op": "remove", "path": "/spec/env"}
    assert "/spec/port" not in by_path  # the shorthand is kept as written
    assert "/spec/replicas" not in by_path  # not part of a revision


def test_rollback_patch_of_the_same_revision_is_empty() -> None:
    template = _record(1, "a:1").template
    assert rollback_patch({"image": "a:1", "port": 8080, "replicas": 3}, template) == []


def _deleting_observed(enabled: bool = True, reachable: bool = True, write_error: str | None = None,
                       write_error_reason: str | None = None) -> Observed:
    pods = (PodState(name="p1", track="stable", revision=1, ready=True, ip="10.0.0.1"),)
    instance = RegistryInstance("10.0.0.1", 8080, True, enabled, 1.0, True, "DEFAULT")
    read = (RegistryRead((instance,), write_error=write_error, write_error_reason=write_error_reason) if reachable
            else RegistryRead(None, "refused"))
    registration = summarize(provider="nacos", service="svc", read=read, pods=pods, revisions={"stable": 1})
    return Observed(pods=pods, registration=registration, registry=registration.state)


def test_deletion_offlines_drains_deletes_then_releases() -> None:
    app = make_app({"registry": NACOS})
    assert needs_finalizer(app)
    first = plan_deletion(app, AppReleaseStatus(), _deleting_observed(), T0, T0)
    assert [(a.kind, a.enabled) for a in first.actions] == [("write", False)]
    assert not first.delete_workloads and not first.release and first.requeue_after == 10
    seen = plan_deletion(app, AppReleaseStatus(draining=first.draining), _deleting_observed(enabled=False),
                         T0 + timedelta(seconds=1), T0)
    assert not seen.delete_workloads and seen.requeue_after == 10  # the drain starts once seen offline
    status = AppReleaseStatus(draining=seen.draining)
    later = plan_deletion(app, status, _deleting_observed(enabled=False), T0 + timedelta(seconds=11), T0)
    assert later.actions == [] and later.delete_workloads and not later.release
    gone = plan_deletion(app, status, Observed(registration=_deleting_observed().registration),
                         T0 + timedelta(seconds=12), T0)
    assert gone.release and gone.actions == []  # Nacos expires the gone pod's override itself


def test_deletion_with_registry_down_waits_then_releases_with_a_warning() -> None:
    app = make_app({"registry": NACOS})
    waiting = plan_deletion(app, AppReleaseStatus(), _deleting_observed(reachable=False),
                            T0 + timedelta(seconds=5), T0)
    assert not waiting.release and "refused" in waiting.message
    released = plan_deletion(app, AppReleaseStatus(), _deleting_observed(reachable=False),
                             T0 + timedelta(seconds=30), T0)
    assert released.release
    assert released.events[0].type == "Warning" and released.events[0].reason == "RegistryUnreachable"


def test_no_finalizer_without_nacos() -> None:
    assert not needs_finalizer(make_app())
    assert DrainingInstance(pod="p", ip="1.2.3.4", port=1, since="t").gone_since is None


def test_drain_lasts_its_full_length_from_a_fractional_second() -> None:
    # Counted from a second-truncated stamp, a 10 s drain begun at .9 s would end 0.9 s early.
    app = make_app({"registry": NACOS})
    start = T0 + timedelta(milliseconds=900)
    first = plan_deletion(app, AppReleaseStatus(), _deleting_observed(enabled=False), start, T0)
    status = AppReleaseStatus(draining=first.draining)
    early = plan_deletion(app, status, _deleting_observed(enabled=False),
                          start + timedelta(seconds=9, milliseconds=950), T0)
    assert not early.delete_workloads
    on_time = plan_deletion(app, status, _deleting_observed(enabled=False), start + timedelta(seconds=10), T0)
    assert on_time.delete_workloads


def test_rollback_target_without_the_stable_record_says_what_to_do() -> None:
    """It raised StopIteration (a crash of the CLI) when the stable ControllerRevision was gone."""
    history = [_record(1, "a:1", promoted=True), _record(3, "a:3")]
    with pytest.raises(LookupError, match="--to-revision"):
        rollback_target(history, current_hash="h3", stable_hash="h2", to_revision=None)


def test_deletion_never_waits_forever_for_a_drain_that_cannot_start() -> None:
    """Nacos readable but refusing writes: the instance never shows offline, so the drain never
    starts. Deletion proceeds once deletionTimeout has passed beyond a normal drain."""
    app = make_app({"registry": NACOS})  # drainSeconds 10, deletionTimeout 30s
    enabled = _deleting_observed(enabled=True)
    waiting = plan_deletion(app, AppReleaseStatus(), enabled, T0 + timedelta(seconds=39), T0)
    assert not waiting.release and waiting.actions  # still asking for the disable
    forced = plan_deletion(app, AppReleaseStatus(draining=waiting.draining), enabled, T0 + timedelta(seconds=40), T0)
    assert forced.release and forced.delete_workloads
    assert forced.events[0].type == "Warning" and forced.events[0].reason == "DeletionForced"
    assert "still enabled" in forced.events[0].message


def test_deletion_does_not_wait_forever_for_pods_that_do_not_stop() -> None:
    app = make_app({"registry": NACOS})
    status = AppReleaseStatus()
    stuck = _deleting_observed(enabled=False)  # drained, workloads deleted, but the pod stays
    first = plan_deletion(app, status, stuck, T0 + timedelta(seconds=1), T0)
    status = AppReleaseStatus(draining=first.draining)
    waiting = plan_deletion(app, status, stuck, T0 + timedelta(seconds=20), T0)
    assert waiting.delete_workloads and not waiting.release
    forced = plan_deletion(app, status, stuck, T0 + timedelta(seconds=41), T0)
    assert forced.release and forced.events[0].reason == "DeletionForced"


def test_the_forced_deletion_warning_names_the_registrys_refusal_and_what_it_refused() -> None:
    """It said only "1 instance(s) still enabled": nothing told the user that Nacos refused to
    take them offline (credentials without write permission), nor which instance."""
    app = make_app({"registry": NACOS})
    refused = _deleting_observed(
        enabled=True, write_error_reason="RegistryRefused",
        write_error="write 10.0.0.1:8080 failed: Nacos at http://nacos:8848/nacos: updating the instance:"
                    " refused after a fresh login (HTTP 403: no write permission)",
    )
    forced = plan_deletion(app, AppReleaseStatus(), refused, T0 + timedelta(seconds=40), T0)
    assert forced.release and forced.events[0].reason == "DeletionForced"
    message = forced.events[0].message
    assert "refused" in message and "RegistryRefused" in message
    assert "taking 10.0.0.1:8080 (pod p1) offline" in message and "HTTP 403" in message
