"""Leader election through a Lease, with fencing: the pure decision, the elector against a fake
lease store on a fake clock, and the write fence that refuses writes past the renew deadline.
(The real apiserver, two processes and its audit log: tests/e2e/test_high_availability.py.)"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from apprelease.controller.leader_election import (
    Action,
    ElectionTimings,
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
    Sighting,
    decide,
)
from apprelease.k8s.fence import NotLeading, WriteFence

TIMINGS = ElectionTimings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


def lease(holder: str, version: str = "1", duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_seconds=duration, acquire_time=None, renew_time=None,
                       transitions=0, resource_version=version)


# The decision: given the lease, what this replica last saw, now and who it is ----------------


def test_no_lease_is_created() -> None:
    assert decide(None, None, 100.0, "a", leading_until=None).action is Action.CREATE


def test_another_holder_is_waited_for_a_full_lease_duration_from_our_own_first_sighting() -> None:
    first = decide(lease("b"), None, 100.0, "a", leading_until=None)
    assert first.action is Action.STAND_BY and first.sighting == Sighting("1", 100.0)
    # The same record, read again later: the wait counts from when it was first seen here,
    # never from the renewTime written with the holder's clock.
    later = decide(lease("b"), first.sighting, 114.9, "a", leading_until=None)
    assert later.action is Action.STAND_BY and later.sighting == first.sighting
    assert decide(lease("b"), first.sighting, 115.0, "a", leading_until=None).action is Action.ACQUIRE


def test_a_renewal_seen_restarts_the_wait() -> None:
    seen = Sighting("1", 100.0)
    renewed = decide(lease("b", version="2"), seen, 114.0, "a", leading_until=None)
    assert renewed.action is Action.STAND_BY and renewed.sighting == Sighting("2", 114.0)
    assert decide(lease("b", version="2"), renewed.sighting, 128.9, "a", leading_until=None).action is Action.STAND_BY


def test_the_holders_own_lease_duration_counts() -> None:
    """Replicas configured differently wait as long as the holder promised to stay fenced."""
    seen = Sighting("1", 100.0)
    assert decide(lease("b", duration=40), seen, 130.0, "a", leading_until=None).action is Action.STAND_BY
    assert decide(lease("b", duration=40), seen, 140.0, "a", leading_until=None).action is Action.ACQUIRE


def test_a_released_lease_is_taken_at_once() -> None:
    assert decide(lease(""), None, 100.0, "a", leading_until=None).action is Action.ACQUIRE


def test_the_leader_renews_its_own_lease_and_steps_down_when_it_lost_it() -> None:
    assert decide(lease("a"), None, 100.0, "a", leading_until=105.0).action is Action.RENEW
    taken = decide(lease("b"), None, 100.0, "a", leading_until=105.0)
    assert taken.action is Action.STEP_DOWN and "b" in taken.reason
    assert decide(None, None, 100.0, "a", leading_until=105.0).action is Action.STEP_DOWN
    late = decide(lease("a"), None, 105.0, "a", leading_until=105.0)
    assert late.action is Action.STEP_DOWN and "renew deadline" in late.reason


def test_a_lease_naming_us_that_we_do_not_know_we_hold_is_acquired() -> None:
    """Our acquire went through but its answer was lost: take it with a fresh update."""
    assert decide(lease("a"), None, 100.0, "a", leading_until=None).action is Action.ACQUIRE


@pytest.mark.parametrize("timings, problem", [
    (ElectionTimings(10.0, 10.0, 2.0), "leaseDuration"),
    (ElectionTimings(11.0, 10.0, 2.0), "leaseDuration"),  # no margin for in-flight writes and clock rates
    (ElectionTimings(15.0, 2.0, 2.0), "retryPeriod"),
    (ElectionTimings(15.0, 10.0, 0.0), "retryPeriod"),
])
def test_timings_that_cannot_fence_are_refused(timings: ElectionTimings, problem: str) -> None:
    problems = timings.problems()
    assert problems and problem in problems[0]


def test_the_default_timings_are_client_gos() -> None:
    assert ElectionTimings() == TIMINGS and TIMINGS.problems() == []


# The write fence --------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_fence_refuses_writes_before_the_first_lease_and_after_its_deadline() -> None:
    clock = FakeClock()
    fence = WriteFence(clock)
    with pytest.raises(NotLeading), fence.writing("patch Deployment"):
        pass
    fence.extend(clock.now + 10)
    with fence.writing("patch Deployment"):
        assert fence.in_flight == 1
    assert fence.in_flight == 0
    clock.advance(10)
    with pytest.raises(NotLeading, match="renew deadline"), fence.writing("patch Deployment"):
        pass


def test_a_closed_fence_stays_closed() -> None:
    clock = FakeClock()
    fence = WriteFence(clock)
    fence.extend(clock.now + 10)
    fence.close()
    fence.extend(clock.now + 20)
    assert not fence.is_open()
    with pytest.raises(NotLeading), fence.writing("create Event"):
        pass


# The elector on a fake lease store --------------------------------------------------------


@dataclass
class FakeLeaseStore:
    """One Lease with optimistic concurrency; clients can be cut off (a partition)."""

    clock: FakeClock
    record: LeaseRecord | None = None
    version: int = 0
    latency: float = 0.0  # each call takes this long on the shared clock
    unreachable: set[str] = field(default_factory=set)
    writes: list[tuple[float, str]] = field(default_factory=list)  # (when, holder)

    def client(self, name: str) -> FakeLeaseClient:
        return FakeLeaseClient(self, name)


@dataclass
class FakeLeaseClient:
    store: FakeLeaseStore
    name: str

    def _call(self) -> None:
        self.store.clock.advance(self.store.latency)
        if self.name in self.store.unreachable:
            raise ConnectionError(f"{self.name}: apiserver unreachable")

    def get(self) -> LeaseRecord | None:
        self._call()
        return self.store.record

    def create(self, record: LeaseRecord) -> LeaseRecord:
        self._call()
        if self.store.record is not None:
            raise LeaseConflict("already exists")
        return self._store(record)

    def update(self, record: LeaseRecord) -> LeaseRecord:
        self._call()
        current = self.store.record
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("the lease changed")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.store.version += 1
        stored = replace(record, resource_version=str(self.store.version))
        self.store.record = stored
        self.store.writes.append((self.store.clock.now, stored.holder))
        return stored


@dataclass
class Replica:
    name: str
    elector: LeaderElector
    fence: WriteFence
    events: list[str]
    next_tick: float = 0.0
    stopped: bool = False


def replica(store: FakeLeaseStore, name: str, timings: ElectionTimings = TIMINGS,
            jitter: Callable[[], float] = lambda: 0.0) -> Replica:
    fence = WriteFence(store.clock)
    events: list[str] = []
    elector = LeaderElector(
        store.client(name), name, timings, fence, clock=store.clock, jitter=jitter,
        on_started_leading=lambda: events.append("started"),
        on_stopped_leading=lambda reason: events.append(f"stopped: {reason}"),
    )
    return Replica(name, elector, fence, events)


def run(store: FakeLeaseStore, replicas: list[Replica], until: float, step: float = 0.1,
        on_step: Callable[[float], None] = lambda now: None) -> None:
    """Tick each replica when its elector asks to be ticked; after every step of the shared
    clock, at most one fence may be open (one writer at any instant)."""
    clock = store.clock
    while clock.now < until:
        for r in replicas:
            if not r.stopped and clock.now >= r.next_tick:
                wait = r.elector.tick()
                r.stopped = wait is None
                r.next_tick = clock.now + (wait or 0.0)
        on_step(clock.now)
        open_fences = [r.name for r in replicas if r.fence.is_open()]
        assert len(open_fences) <= 1, f"two writers at {clock.now}: {open_fences}"
        clock.advance(step)


def test_one_leader_the_other_stands_by_and_the_leader_renews() -> None:
    store = FakeLeaseStore(FakeClock())
    a, b = replica(store, "a"), replica(store, "b")
    run(store, [a, b], until=store.clock.now + 60)
    assert a.elector.leading and not b.elector.leading
    assert a.events == ["started"] and b.events == []
    assert store.record is not None and store.record.holder == "a" and store.record.transitions == 0
    renewals = [when for when, holder in store.writes if holder == "a"]
    assert len(renewals) >= 60 / TIMINGS.retry_period - 1


def test_a_leader_cut_off_stops_writing_at_its_renew_deadline_before_the_other_takes_over() -> None:
    store = FakeLeaseStore(FakeClock(), latency=0.05)
    a, b = replica(store, "a"), replica(store, "b")
    run(store, [a, b], until=store.clock.now + 10)
    assert a.elector.leading
    last_renew_sent = store.writes[-1][0] - store.latency
    store.unreachable.add("a")  # a keeps running, but can reach the apiserver no more
    fence_closed_at: list[float] = []
    b_leads_at: list[float] = []

    def watch(now: float) -> None:
        if not fence_closed_at and not a.fence.is_open():
            fence_closed_at.append(now)
        if not b_leads_at and b.fence.is_open():
            b_leads_at.append(now)

    run(store, [a, b], until=store.clock.now + 40, on_step=watch)
    assert fence_closed_at[0] <= last_renew_sent + TIMINGS.renew_deadline + 0.1
    assert len(a.events) == 2 and a.events[0] == "started" and "renew deadline" in a.events[1]
    assert b.elector.leading and b.events == ["started"]
    # b waited a full lease duration from its own last sighting of a's last renewal.
    assert b_leads_at[0] >= last_renew_sent + TIMINGS.lease_duration
    assert b_leads_at[0] - fence_closed_at[0] >= TIMINGS.lease_duration - TIMINGS.renew_deadline - 0.2
    assert store.record is not None and store.record.holder == "b" and store.record.transitions == 1


def test_a_paused_leader_finds_its_fence_closed_when_it_wakes() -> None:
    """A stop-the-world pause (SIGSTOP, a frozen VM): the process does not tick, the other takes
    over, and on waking every write is refused before the elector even runs."""
    store = FakeLeaseStore(FakeClock())
    a, b = replica(store, "a"), replica(store, "b")
    run(store, [a, b], until=store.clock.now + 10)
    assert a.elector.leading
    a.stopped = True  # frozen
    run(store, [a, b], until=store.clock.now + 30)
    assert b.elector.leading
    with pytest.raises(NotLeading), a.fence.writing("patch AppRelease/status"):
        pass
    a.stopped = False
    run(store, [a, b], until=store.clock.now + 5)
    assert not a.elector.leading and "stopped" in a.events[-1]


def test_release_lets_the_other_take_over_at_its_next_look() -> None:
    store = FakeLeaseStore(FakeClock())
    a, b = replica(store, "a"), replica(store, "b")
    run(store, [a, b], until=store.clock.now + 10)
    a.fence.close()  # stopping: no new writes first, then the release
    assert a.elector.release(drain_timeout=0.0)
    a.stopped = True
    assert store.record is not None and store.record.holder == ""
    released_at = store.clock.now
    run(store, [a, b], until=store.clock.now + 5)
    assert b.elector.leading
    b_first = next(when for when, holder in store.writes if holder == "b")
    assert b_first - released_at <= TIMINGS.retry_period + 0.2


def test_no_release_while_a_write_is_still_in_flight() -> None:
    store = FakeLeaseStore(FakeClock())
    a = replica(store, "a")
    run(store, [a], until=store.clock.now + 3)
    with a.fence.writing("patch Deployment"):
        a.fence.close()
        assert not a.elector.release(drain_timeout=0.0)
    assert store.record is not None and store.record.holder == "a"


def test_a_conflict_on_renewal_is_read_back_and_a_lost_lease_steps_down() -> None:
    store = FakeLeaseStore(FakeClock())
    a = replica(store, "a")
    run(store, [a], until=store.clock.now + 3)
    assert store.record is not None
    # Someone (an admin, or a replica with a broken clock) rewrote the lease.
    store.record = replace(store.record, holder="intruder", resource_version="999")
    run(store, [a], until=store.clock.now + 5)
    assert not a.elector.leading and not a.fence.is_open()
    assert "intruder" in a.events[-1]


def test_the_leader_gauge_and_transitions() -> None:
    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    store = FakeLeaseStore(FakeClock())
    before = value("apprelease_leader_transitions_total", {"event": "acquired"})
    a = replica(store, "a")
    run(store, [a], until=store.clock.now + 3)
    assert value("apprelease_leader") == 1.0
    assert value("apprelease_leader_transitions_total", {"event": "acquired"}) == before + 1
    store.unreachable.add("a")
    run(store, [a], until=store.clock.now + 15)
    assert value("apprelease_leader") == 0.0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.tuples(st.floats(0, 120), st.floats(0.5, 40), st.sampled_from("abc")), max_size=6),
    pauses=st.lists(st.tuples(st.floats(0, 120), st.floats(0.5, 40), st.sampled_from("abc")), max_size=4),
    latency=st.floats(0.0, 0.5),
)
def test_never_two_writers_whatever_fails(
    seed: int, cuts: list[tuple[float, float, str]], pauses: list[tuple[float, float, str]], latency: float,
) -> None:
    """Three replicas, partitions and stop-the-world pauses at random: at no instant are two
    fences open, and a replica stepping down never leads again (it exits and restarts)."""
    rng = random.Random(seed)
    store = FakeLeaseStore(FakeClock(0.0), latency=latency)
    replicas = [replica(store, name, jitter=lambda: rng.uniform(0, 0.4)) for name in "abc"]
    frozen: set[str] = set()

    def faults(now: float) -> None:
        store.unreachable = {name for start, length, name in cuts if start <= now < start + length}
        frozen_now = {name for start, length, name in pauses if start <= now < start + length}
        for r in replicas:
            if r.name in frozen_now:
                r.next_tick = max(r.next_tick, now + 0.1)  # no tick while frozen
        frozen.clear()
        frozen.update(frozen_now)

    run(store, replicas, until=180.0, step=0.1, on_step=faults)
    for r in replicas:
        starts = [e for e in r.events if e == "started"]
        assert len(starts) <= 1 and r.events[: len(starts)] == starts


# `apprelease run`'s flags -------------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str, pod_namespace: str = "") -> tuple[Any, list[Any]]:
    from click.testing import CliRunner

    from apprelease.cli.main import cli
    from apprelease.controller import run as run_module

    started: list[Any] = []
    monkeypatch.setattr(run_module, "run_operator", lambda options, **kw: started.append(options))
    monkeypatch.setenv("POD_NAMESPACE", pod_namespace)
    return CliRunner().invoke(cli, ["run", *args]), started


def test_run_elects_a_leader_by_default_with_client_gos_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = run_cli(monkeypatch, pod_namespace="apprelease-system")
    assert result.exit_code == 0, result.output
    options = started[0]
    assert options.leader_election and options.election == TIMINGS
    assert (options.lease_namespace, options.lease_name) == ("apprelease-system", "apprelease")


def test_run_takes_the_lease_and_its_timings_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = run_cli(monkeypatch, "--lease-name", "ops", "--lease-namespace", "team-a",
                              "--lease-duration", "30", "--renew-deadline", "20", "--retry-period", "4")
    assert result.exit_code == 0, result.output
    assert (started[0].lease_namespace, started[0].lease_name) == ("team-a", "ops")
    assert started[0].election == ElectionTimings(30.0, 20.0, 4.0)
    result, started = run_cli(monkeypatch, "--no-leader-elect")
    assert result.exit_code == 0 and not started[0].leader_election


def test_run_refuses_timings_that_cannot_fence(monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = run_cli(monkeypatch, "--lease-namespace", "a", "--lease-duration", "10", "--renew-deadline", "10")
    assert result.exit_code == 2 and not started
    assert "leaseDuration (10 s) must exceed renewDeadline (10 s)" in result.output
