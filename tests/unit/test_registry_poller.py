"""The registry lanes: one thread per Nacos server, which nothing may stop, and which keeps
one slow server from delaying the apps of another. Clients are fakes (pure lane logic)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from apprelease.domain import RegistryAction
from apprelease.registry.base import RegistryInstance, RegistryUnavailable
from apprelease.registry.monitor import RegistryMonitor, _Target
from tests.plugins.cluster import wait_for

INSTANCE = RegistryInstance("10.0.0.1", 8080, True, True, 1.0, True, "DEFAULT")
DISABLE = RegistryAction("write", "pod-1", "10.0.0.1", 8080, enabled=False, weight=100.0)


class FakeClient:
    """Answers reads with INSTANCE after ``failures`` surprises; records writes."""

    def __init__(self, failures: int = 0, read_delay: float = 0.0, write_errors: int = 0) -> None:
        self.failures = failures
        self.read_delay = read_delay
        self.write_errors = write_errors
        self.reads = 0
        self.writes: list[tuple[str, int, bool]] = []
        self.release = threading.Event()

    def list_instances(self) -> list[RegistryInstance]:
        self.reads += 1
        if self.read_delay:
            self.release.wait(self.read_delay)
        if self.reads <= self.failures:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        return [INSTANCE]

    def update_instance(self, ip: str, port: int, *, enabled: bool, **state: Any) -> None:
        if self.write_errors:
            self.write_errors -= 1
            raise RegistryUnavailable("Nacos at http://n:8848/nacos: updating the instance: HTTP 500: no leader")
        self.writes.append((ip, port, enabled))

    def close(self) -> None:
        self.release.set()


def monitor() -> tuple[RegistryMonitor, list[Any]]:
    woken: list[Any] = []
    mon = RegistryMonitor(kube=None, endpoint_slices=lambda key: [], notify=woken.append,  # type: ignore[arg-type]
                          poll_seconds=0.05)
    return mon, woken


def attach(mon: RegistryMonitor, lane: str, key: tuple[str, str], client: Any) -> _Target:
    target = _Target(key=key, fingerprint="f", client=client)
    mon._attach(lane, target)
    return target


def test_a_surprise_in_a_read_is_logged_and_the_lane_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    mon, woken = monitor()
    client = FakeClient(failures=1)
    attach(mon, "http://a", ("ns", "orders"), client)
    with caplog.at_level(logging.ERROR, logger="apprelease.registry"):
        mon.start()
        try:
            wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "a read after the failed one")
            assert mon.health() == []
        finally:
            mon.stop()
    assert client.reads >= 2 and "unexpected error" in caplog.text


def test_a_target_forgotten_mid_read_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    mon, woken = monitor()
    key = ("ns", "gone")

    class ForgottenWhileReading(FakeClient):
        def list_instances(self) -> list[RegistryInstance]:
            mon.forget(key)  # the app was deleted meanwhile: its client is closed
            return super().list_instances()

    attach(mon, "http://a", key, ForgottenWhileReading())
    attach(mon, "http://a", ("ns", "orders"), FakeClient())
    with caplog.at_level(logging.ERROR, logger="apprelease.registry"):
        mon.start()
        try:
            wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the other app read")
        finally:
            mon.stop()
    assert key not in woken and "unexpected error" not in caplog.text


def test_a_slow_server_delays_only_its_own_apps() -> None:
    mon, woken = monitor()
    slow = FakeClient(read_delay=30)
    attach(mon, "http://slow", ("ns", "slow"), slow)
    attach(mon, "http://fast", ("ns", "fast"), FakeClient())
    mon.start()
    try:
        wait_for(lambda: slow.reads >= 1, 5, 0.01, "the slow read to start")
        started = time.monotonic()
        wait_for(lambda: ("ns", "fast") in woken, 5, 0.01, "the fast server's app read")
        assert time.monotonic() - started < 1.0
    finally:
        slow.release.set()
        mon.stop()


def test_writes_run_once_until_read_back_and_stale_wishes_are_dropped() -> None:
    mon, woken = monitor()
    client = FakeClient(read_delay=30)  # the read-back hangs until released
    client.release.set()  # ... but not the first read
    target = attach(mon, "http://a", ("ns", "orders"), client)
    app = _App()
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        client.release.clear()
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes, 5, 0.01, "the write")
        mon.execute(app, (DISABLE,))  # asked again before a read showed it: not written twice
        with mon._where[("ns", "orders")].cond:
            assert not target.queued
        assert client.writes == [("10.0.0.1", 8080, False)]
    finally:
        client.release.set()
        mon.stop()
    # A wish the planner dropped before the lane got to it never runs.
    mon2, _unused = monitor()
    held = attach(mon2, "http://b", ("ns", "orders"), FakeClient())
    mon2.execute(app, (DISABLE,))  # type: ignore[arg-type]
    mon2.execute(app, ())  # type: ignore[arg-type]
    assert not held.queued


class SlowWriteClient(FakeClient):
    """Its writes hang until released: a write in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.finish = threading.Event()

    def update_instance(self, ip: str, port: int, *, enabled: bool, **state: Any) -> None:
        self.writing.set()
        self.finish.wait(10)
        super().update_instance(ip, port, enabled=enabled, **state)


def test_a_write_asked_for_again_while_in_flight_is_not_sent_twice() -> None:
    """Every reconcile hands the lane its latest wishes; one that repeats the write under
    way must not queue it again (the operator logs showed each Nacos write sent twice)."""
    mon, woken = monitor()
    client = SlowWriteClient()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    app = _App()
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        assert client.writing.wait(5), "the write started"
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        with mon._where[("ns", "orders")].cond:
            assert not target.queued
        client.finish.set()
        wait_for(lambda: client.writes, 5, 0.01, "the write done")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        with mon._where[("ns", "orders")].cond:
            assert not target.queued
        assert client.writes == [("10.0.0.1", 8080, False)]
    finally:
        client.finish.set()
        mon.stop()


def test_a_failed_write_is_shown_retried_and_cleared() -> None:
    mon, _woken = monitor()
    client = FakeClient(write_errors=2)
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: target.write_error, 5, 0.01, "the write error recorded")
        assert "no leader" in (target.write_error or "") and target.write_error_reason == "RegistryWriteFailed"
        wait_for(lambda: client.writes, 10, 0.05, "the write retried until it works")
        wait_for(lambda: target.write_error is None, 5, 0.01, "the error cleared")
    finally:
        mon.stop()


class _App:
    namespace = "ns"
    name = "orders"


def test_what_the_registry_adds_keeps_everything_else_observed() -> None:
    """It rebuilt Observed field by field and dropped the HPAs added later."""
    from apprelease.rollout.observed import HpaState, Observed

    mon, _woken = monitor()
    app = type("App", (), {"namespace": "ns", "name": "web", "spec": _Spec()})()
    observed = Observed(hpas=(HpaState("web", "AppRelease", "web"),))
    assert mon.state_for(app, observed).hpas == observed.hpas  # type: ignore[arg-type]


class _Spec:
    registry = None

    @staticmethod
    def container_ports() -> list:
        return []


def test_a_write_is_not_repeated_while_the_registry_catches_up_but_a_new_wish_runs_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nacos lists an update a moment after it answered: a read in between still shows the
    old state. The same write is not sent again then; a different one for the instance is."""
    from apprelease.registry import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "WRITE_SETTLE_SECONDS", 0.5)
    mon, woken = monitor()
    client = FakeClient()  # every read lists INSTANCE enabled, whatever was written
    target = attach(mon, "http://a", ("ns", "orders"), client)
    app = _App()
    enable = RegistryAction("write", "pod-1", "10.0.0.1", 8080, enabled=True, weight=100.0)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes, 5, 0.01, "the write")
        reads = client.reads
        wait_for(lambda: client.reads > reads, 5, 0.01, "a read-back that does not show it yet")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        with mon._where[("ns", "orders")].cond:
            assert not target.queued
        mon.execute(app, (enable,))  # type: ignore[arg-type]
        wait_for(lambda: len(client.writes) == 2, 5, 0.01, "the new wish written")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: len(client.writes) == 3, 5, 0.01, "back to disabled")
        assert client.writes == [("10.0.0.1", 8080, False), ("10.0.0.1", 8080, True), ("10.0.0.1", 8080, False)]
        wait_for(lambda: not target.done, 5, 0.01, "a read after the settle time")
        mon.execute(app, (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: len(client.writes) == 4, 5, 0.01, "written again")
    finally:
        mon.stop()


def test_a_replica_that_is_not_leading_writes_nothing_to_the_registry() -> None:
    """The Nacos writes pass the same fence as the Kubernetes ones (leader election)."""
    from apprelease.k8s.fence import WriteFence

    fence = WriteFence()  # never extended: this replica has not acquired the lease
    mon = RegistryMonitor(kube=None, endpoint_slices=lambda key: [], notify=lambda key: None,  # type: ignore[arg-type]
                          poll_seconds=0.05, fence=fence)
    client = FakeClient()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: not target.queued and client.reads >= 2, 5, 0.01, "the write taken off the queue")
        assert client.writes == [] and target.write_error is None
        fence.extend(time.monotonic() + 30)  # leading now
        mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes, 5, 0.01, "the write once leading")
    finally:
        mon.stop()


def test_the_registry_ca_is_used_in_memory_and_never_written_to_a_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was written to a new temp file at every reconcile and never removed."""
    import base64
    import tempfile

    from apprelease.api.spec import AppRelease
    from tests.unit.test_reconciler import FakeKube

    pem = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUHq8xSqQ5ZVbRPXi5k1s6aG8Zg0UwCgYIKoZIzj0EAwIw\n"
           "-----END CERTIFICATE-----\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kube = FakeKube()
    kube.objects[("Secret", "ns", "ca")] = {"kind": "Secret", "metadata": {"name": "ca"},
                                             "data": {"ca.crt": base64.b64encode(pem.encode()).decode()}}
    app = AppRelease.model_validate({
        "apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"image": "web:v1", "port": 8080, "registry": {"nacos": {
            "serverAddr": "nacos.nacos.svc:8848", "serviceName": "web", "tls": {"enabled": True, "caSecret": "ca"}}}},
    })
    mon = RegistryMonitor(kube, lambda key: [], lambda key: None)  # type: ignore[arg-type]
    for _ in range(3):
        settings = mon._settings(app)
    assert settings.tls_ca_data == pem and settings.tls_ca_file is None
    assert list(tmp_path.iterdir()) == []


def test_a_read_older_than_its_bound_is_unavailable_not_current_and_the_app_is_woken() -> None:
    """A lane held by one call (a server dripping its headers, before the whole-call deadline)
    kept the last good read as current: the rollout went on with it and nothing said so."""
    woken: list[Any] = []
    mon = RegistryMonitor(kube=None, endpoint_slices=lambda key: [], notify=woken.append,  # type: ignore[arg-type]
                          poll_seconds=0.05, stale_after=0.5)
    client = FakeClient(read_delay=30)
    client.release.set()  # the first read answers at once...
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        client.release.clear()  # ... the next ones hang
        assert mon._current_read(target).instances is not None
        woken.clear()
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the app woken when its read went stale")
        read = mon._current_read(target)
        assert read.instances is None and read.reason == "RegistryUnavailable"
        assert "no answer from the registry for" in (read.error or "")
        assert mon.health() == []  # not stuck yet: that takes far longer than a stale read
        woken.clear()
        client.release.set()  # the same instances again: unchanged, but the app saw it stale
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the app woken when the read is fresh again")
        assert mon._current_read(target).instances is not None
    finally:
        client.release.set()
        mon.stop()


def test_a_lane_stuck_in_one_call_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    from apprelease.registry import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "STUCK_LANE_SECONDS", 0.3)
    mon, _woken = monitor()
    client = FakeClient(read_delay=30)
    attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: mon.health(), 5, 0.02, "liveness to report the stuck lane")
        assert "stuck" in mon.health()[0]
    finally:
        client.release.set()
        mon.stop()


class AheadClient(FakeClient):
    """Lists ``listed`` (mutable); records writes ahead and their undoing."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[RegistryInstance] = [INSTANCE]
        self.ahead: list[tuple[str, bool]] = []
        self.undone: list[str] = []
        self.closed = False
        self.down = False

    def list_instances(self) -> list[RegistryInstance]:
        self.reads += 1
        if self.down:
            raise RegistryUnavailable("Nacos at http://n:8848/nacos: listing instances: connection failed")
        return list(self.listed)

    def update_instance(self, ip: str, port: int, *, enabled: bool, must_exist: bool = True, **state: Any) -> None:
        if not must_exist:
            self.ahead.append((ip, enabled))
        super().update_instance(ip, port, enabled=enabled, **state)

    def undo_write_ahead(self, ip: str, port: int, **where: Any) -> None:
        self.undone.append(ip)

    def close(self) -> None:
        self.closed = True
        super().close()


def ahead(ip: str, pod: str = "pod-9") -> RegistryAction:
    return RegistryAction("write", pod, ip, 8080, enabled=False, weight=100.0, must_exist=False, reason="joining")


def test_a_write_ahead_for_a_pod_that_never_registered_is_undone_once_its_pod_is_gone() -> None:
    """The disabled override stayed at that ip:port for good (Nacos expires one only when an
    instance there leaves): the next workload given that pod IP started disabled."""
    mon, woken = monitor()
    client = AheadClient()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    app = _App()
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon._current_read(target)  # what the planner saw (state_for), then what it asked for
        mon.execute(app, (ahead("10.0.0.9"), ahead("10.0.0.8", "pod-8")))  # type: ignore[arg-type]
        wait_for(lambda: len(client.ahead) == 2, 5, 0.01, "both written ahead")
        client.listed = [INSTANCE, RegistryInstance("10.0.0.8", 8080, True, False, 100.0, True, "DEFAULT")]
        reads = client.reads
        wait_for(lambda: client.reads > reads + 1, 5, 0.01, "a read listing pod-8's instance")
        mon._current_read(target)
        mon.execute(app, ())  # type: ignore[arg-type]  # pod-9 gone without registering; pod-8 registered
        wait_for(lambda: client.undone, 5, 0.01, "pod-9's write-ahead undone")
        mon.execute(app, ())  # type: ignore[arg-type]
        reads = client.reads
        wait_for(lambda: client.reads > reads + 2, 5, 0.01, "the lane went on")
        assert client.undone == ["10.0.0.9"]  # once; pod-8's record is its instance's now
    finally:
        mon.stop()


def test_a_write_ahead_is_kept_while_the_planner_had_no_read_to_ask_from() -> None:
    """Without a read (an outage, a stale read) the planner asks for nothing at all: that says
    nothing about the pod, whose write ahead must stay disabled."""
    mon, woken = monitor()
    client = AheadClient()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon._current_read(target)
        mon.execute(_App(), (ahead("10.0.0.9"),))  # type: ignore[arg-type]
        wait_for(lambda: client.ahead, 5, 0.01, "written ahead")
        client.down = True
        wait_for(lambda: target.read is not None and target.read.instances is None, 5, 0.01, "a failed read")
        mon._current_read(target)  # the planner's next view: unreadable, so it asks for nothing
        mon.execute(_App(), ())  # type: ignore[arg-type]
        reads = client.reads
        wait_for(lambda: client.reads > reads + 1, 5, 0.01, "the lane went on")
        assert client.undone == [] and target.written_ahead
    finally:
        mon.stop()


def test_write_aheads_still_open_when_the_app_is_forgotten_are_undone_before_the_client_closes() -> None:
    mon, woken = monitor()
    client = AheadClient()
    attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(_App(), (ahead("10.0.0.9"),))  # type: ignore[arg-type]
        wait_for(lambda: client.ahead, 5, 0.01, "written ahead")
        mon.forget(("ns", "orders"))  # the AppRelease is gone (deleted, or its serverAddr changed)
        wait_for(lambda: client.closed, 5, 0.01, "the client closed once done")
        assert client.undone == ["10.0.0.9"]
    finally:
        mon.stop()


def test_an_instance_we_enabled_is_never_shown_disabled_by_a_read_older_than_that_write() -> None:
    """Found by the registry-faults e2e: the deletion planned on the read from before our own
    'serving' write (the instance still disabled from joining), took that for "already
    offline", and deleted the pod while Nacos had it enabled (the reads after it hung)."""
    mon, woken = monitor()
    disabled = RegistryInstance("10.0.0.1", 8080, True, False, 100.0, True, "DEFAULT")

    class Lagging(AheadClient):
        def list_instances(self) -> list[RegistryInstance]:
            self.reads += 1
            if self.reads > 1:
                self.release.wait(30)  # the reads after the first hang (a dripping proxy)
            return [disabled]

    client = Lagging()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    enable = RegistryAction("write", "pod-1", "10.0.0.1", 8080, enabled=True, weight=100.0, reason="serving")
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(_App(), (enable,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes, 5, 0.01, "the enabling write")
        shown = mon._current_read(target).instances
        assert shown is not None and [(i.ip, i.enabled, i.weight) for i in shown] == [("10.0.0.1", True, 100.0)]
    finally:
        client.release.set()
        mon.stop()


class ReplacedClient(FakeClient):
    """Lists INSTANCE, then nothing (its app deregistered), then a new registration at the
    same address, disabled (it inherited an override)."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = 0

    def list_instances(self) -> list[RegistryInstance]:
        self.reads += 1
        if self.phase == 0:
            return [INSTANCE]
        if self.phase == 1:
            return []
        return [RegistryInstance("10.0.0.1", 8080, True, False, 100.0, True, "DEFAULT")]


def test_our_enable_is_not_shown_on_an_instance_that_left_and_registered_again() -> None:
    """A write we just made is shown until a read catches up with it, but only on the
    instance it was made on: one that left since and registered again never saw it."""
    mon, woken = monitor()
    client = ReplacedClient()
    target = attach(mon, "http://a", ("ns", "orders"), client)
    enable = RegistryAction("write", "pod-1", "10.0.0.1", 8080, enabled=True, weight=100.0)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(_App(), (enable,))  # type: ignore[arg-type]
        wait_for(lambda: target.done, 5, 0.01, "the enable written")
        client.phase = 1
        reads = client.reads
        wait_for(lambda: client.reads > reads + 1, 5, 0.01, "a read without the instance")
        client.phase = 2
        reads = client.reads
        wait_for(lambda: client.reads > reads + 1, 5, 0.01, "a read of the new registration")
        with mon._where[("ns", "orders")].cond:
            shown = mon._current_read(target).instances
        assert shown is not None and [i.enabled for i in shown] == [False]
    finally:
        mon.stop()


def test_a_read_is_stamped_with_when_it_was_taken_even_when_nothing_changed() -> None:
    mon, woken = monitor()
    target = attach(mon, "http://a", ("ns", "orders"), FakeClient())
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        with mon._where[("ns", "orders")].cond:
            first = mon._current_read(target)
        assert first.taken_at is not None
        wait_for(lambda: mon._current_read(target).taken_at != first.taken_at, 5, 0.05, "a later read's stamp")
        assert mon._current_read(target).changed_at == first.changed_at  # unchanged: no status write
    finally:
        mon.stop()


def test_an_app_with_a_pod_newer_than_the_read_is_woken_by_the_next_read() -> None:
    mon, woken = monitor()
    target = attach(mon, "http://a", ("ns", "orders"), FakeClient())
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        woken.clear()
        with mon._where[("ns", "orders")].cond:
            target.confirm_pods = True  # state_for found a pod the read is older than
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "woken by an unchanged read")
        assert not target.confirm_pods
    finally:
        mon.stop()


def test_a_write_is_repeated_only_after_a_read_that_began_after_it_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nacos lists a write a moment after it answered. The read right after our write may not
    show it; a reconcile in the seconds until the next read must not send it again (it would
    undo what someone changed in the console meanwhile: Nacos has no compare-and-set)."""
    from apprelease.registry import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "WRITE_SETTLE_SECONDS", 0.2)
    woken: list[Any] = []
    mon = RegistryMonitor(kube=None, endpoint_slices=lambda key: [], notify=woken.append,  # type: ignore[arg-type]
                          poll_seconds=30)  # no read for a long while after the read-back
    client = FakeClient()  # every read lists INSTANCE enabled: never the disabled state we write
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        reads = client.reads
        mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes and client.reads > reads, 5, 0.01, "the write and its read-back")
        deadline = time.monotonic() + 0.6  # three settle times, and no read that began after one
        while time.monotonic() < deadline:
            mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
            with mon._where[("ns", "orders")].cond:
                assert not target.queued
            time.sleep(0.05)
        assert len(client.writes) == 1
    finally:
        mon.stop()


def test_our_disable_is_shown_until_a_read_that_began_after_it_settled() -> None:
    """`apprelease offline` then `online` within the poll interval: a read from before the
    disable must not show the instance enabled, or `online` finds nothing of ours to enable
    again and the next read shows the pod 'disabled by someone else' for good."""
    mon, woken = monitor()
    client = FakeClient()  # reads keep listing INSTANCE enabled
    target = attach(mon, "http://a", ("ns", "orders"), client)
    mon.start()
    try:
        wait_for(lambda: ("ns", "orders") in woken, 5, 0.01, "the first read")
        mon.execute(_App(), (DISABLE,))  # type: ignore[arg-type]
        wait_for(lambda: client.writes, 5, 0.01, "the disable written")
        with mon._where[("ns", "orders")].cond:
            shown = mon._current_read(target).instances
        assert shown is not None and [(i.enabled, i.disabling) for i in shown] == [(False, True)]
    finally:
        mon.stop()
