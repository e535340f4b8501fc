"""Two operator replicas, as the Deployment runs them: the production RBAC (deploy/10-rbac.yaml,
authenticated as its ServiceAccount), leader election on one Lease, each with its own identity.

Mid-canary the leader is SIGKILLed: the standby takes over within the lease time and carries
the canary on, no step skipped or repeated. Then the new leader is frozen (SIGSTOP) in a timed
pause: the other takes over and ends the pause on time; thawed, the frozen one writes nothing
and exits. Last, a SIGTERM (a rolling update) hands the lease over at once. The apiserver's
audit log (every write of the ServiceAccount, with the replica's
identity in its User-Agent) shows one writer at a time, and no write of a replica after its
renew deadline.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apprelease.controller.leader_election import ElectionTimings
from apprelease.rollout.timefmt import parse_time
from tests.plugins.audit import AuditedWrite, audited_writes, runs
from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess, service_account_kubeconfig
from tests.support import ROOT

pytestmark = pytest.mark.e2e

SYSTEM_NAMESPACE = "apprelease-system"
ACCOUNT = "apprelease"
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{ACCOUNT}"
LEASE = "apprelease"  # the name deploy/10-rbac.yaml grants
TIMINGS = ElectionTimings()  # the defaults, as deployed
PAUSE_SECONDS = 40
STEPS = [
    {"setWeight": 33},
    {"pause": {}},
    {"setWeight": 66},
    {"pause": {"duration": f"{PAUSE_SECONDS}s"}},
    {"setWeight": 100},
    {"pause": {}},
]
# After the lease expired: the standby's next look (retryPeriod + jitter) and one reconcile.
TAKEOVER_SLACK_SECONDS = 10.0


def app(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apprelease.io/v1alpha1",
        "kind": "AppRelease",
        "metadata": {"name": "ha"},
        "spec": {"image": image, "replicas": 3, "port": 8080, "strategy": {"canary": {"steps": STEPS}}},
    }


class Replica:
    """One `apprelease run` as a pod of the Deployment runs it: the ServiceAccount's token, its
    own POD_NAME, leader election on the shared Lease."""

    def __init__(self, pod: str, kubeconfig: Path, log_dir: Path):
        self.pod = pod
        log_dir.mkdir(parents=True)
        self.process = OperatorProcess(kubeconfig, log_dir)

    def start(self) -> None:
        self.process.start(leader_election=True, env={"POD_NAME": self.pod},
                           extra_args=("--lease-namespace", SYSTEM_NAMESPACE, "--lease-name", LEASE))

    @property
    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    @property
    def identity(self) -> str:
        found = re.search(r"leader election on lease \S+ as (\S+)", self.log)
        assert found, f"{self.pod}: no identity in its log:\n{self.process.log_tail()}"
        return found[1]

    def leading(self) -> bool:
        return self.process.metrics().get("apprelease_leader{}") == 1.0

    def standing_by(self) -> bool:
        return "standing by: lease" in self.log and not self.leading()

    def exited(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is not None


class StatusWatch:
    """`kubectl get -w -o json` of one AppRelease in the background: every version, and when
    it arrived."""

    def __init__(self, cluster: KubeCluster, namespace: str, name: str):
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._process = subprocess.Popen(
            [str(cluster.kubectl_binary), f"--kubeconfig={cluster.kubeconfig}", "get", "appreleases",
             name, "-n", namespace, "-w", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._process.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue  # the object goes on
            self.seen.append((time.time(), obj))
            buffer = buffer.lstrip()[end:]

    def canary_steps(self, revision: int) -> list[tuple[float, int, str | None]]:
        """(arrival, currentStepIndex, pauseStartTime) of each version during that canary."""
        return [(at, status["currentStepIndex"], status.get("pauseStartTime"))
                for at, obj in self.seen
                for status in [obj.get("status") or {}]
                if status.get("canaryRevision") == revision and status.get("currentStepIndex") is not None]

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


@pytest.fixture
def audit_log(kube_cluster: KubeCluster) -> Path:
    path = kube_cluster.audit_log
    if path is None or not path.exists():
        pytest.fail("this test reads the apiserver's audit log: run it on the cluster the session"
                    " starts, or set APPRELEASE_TEST_AUDIT_LOG for a reused one", pytrace=False)
    return path


@pytest.fixture
def replicas(
    kube_cluster: KubeCluster, crd: None, operator: OperatorProcess, tmp_path: Path,
) -> Iterator[Callable[[str], Replica]]:
    """Makes replicas under the production RBAC; the session's operator is stopped meanwhile
    (it would be a third writer, outside the election)."""
    kube_cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE, check=False)
    kube_cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "10-rbac.yaml"))
    kube_cluster.kubectl("delete", "lease", LEASE, "-n", SYSTEM_NAMESPACE, "--ignore-not-found")
    kubeconfig = service_account_kubeconfig(kube_cluster, SYSTEM_NAMESPACE, ACCOUNT, tmp_path)
    made: list[Replica] = []

    def make(pod: str) -> Replica:
        replica = Replica(pod, kubeconfig, tmp_path / f"{pod}-{len(made)}")
        made.append(replica)
        return replica

    operator.stop()
    try:
        yield make
    finally:
        for replica in made:
            if replica.process.process is not None and not replica.exited():
                replica.process.signal(signal.SIGCONT)
            replica.process.stop()
        # The production ClusterRoleBinding would outlive the test and grant that account
        # cluster-wide rights in later tests (test_install checks a namespaced install has none).
        kube_cluster.kubectl("delete", "-f", str(ROOT / "deploy" / "10-rbac.yaml"), "--ignore-not-found",
                             "--wait=false", check=False)
        operator.start()


def lease_holder(cluster: KubeCluster) -> str:
    lease = cluster.get_json("lease", LEASE, "-n", SYSTEM_NAMESPACE)
    return str(lease["spec"].get("holderIdentity") or "")


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def test_failover_mid_canary_with_one_writer_at_a_time(
    replicas: Callable[[str], Replica], arl: AppReleases, kube_cluster: KubeCluster, audit_log: Path,
    record_property: Callable[[str, object], None],
) -> None:
    began = datetime.now(UTC)
    a1 = replicas("replica-a")
    a1.start()
    wait_for(a1.leading, 30, 0.2, "replica-a to acquire the lease")
    b = replicas("replica-b")
    b.start()
    wait_for(b.standing_by, 30, 0.2, "replica-b to stand by")
    assert lease_holder(kube_cluster) == a1.identity

    arl.apply(app("registry.local/ha:v1"))
    watch = StatusWatch(kube_cluster, arl.namespace, "ha")
    try:
        arl.wait_phase("ha", "Healthy", timeout=60, stableRevision=1)
        arl.patch("ha", {"spec": {"image": "registry.local/ha:v2"}})
        arl.wait_phase("ha", "Paused", timeout=60, currentStepIndex=1)

        # 1: the leader dies at a pause; a promotion is asked for while no replica leads.
        killed_at = datetime.now(UTC)
        a1.process.kill()
        arl.cli("promote", "ha")
        status = arl.wait_phase("ha", "Paused", timeout=TIMINGS.lease_duration + 60, currentStepIndex=3)
        assert b.leading() and lease_holder(kube_cluster) == b.identity
        pause_started = status["pauseStartTime"]

        # 2: the new leader freezes in the timed pause (a stop-the-world pause, a frozen VM).
        a2 = replicas("replica-a")
        a2.start()
        wait_for(a2.standing_by, 30, 0.2, "the restarted replica-a to stand by")
        b.process.signal(signal.SIGSTOP)
        wait_for(lambda: lease_holder(kube_cluster) == a2.identity, TIMINGS.lease_duration + TAKEOVER_SLACK_SECONDS,
                 0.5, "replica-a to take the lease over from the frozen leader")
        arl.wait_phase("ha", "Paused", timeout=PAUSE_SECONDS + 30, currentStepIndex=5)
        # Thawed after the pause's end: its own timer for that end fires at once, on a cache
        # that has not seen the new leader's writes yet. Its fence is long closed: it writes
        # nothing, steps down and exits.
        b.process.signal(signal.SIGCONT)
        wait_for(b.exited, 45, 0.2, "the thawed replica-b to exit")
        assert b.process.process is not None and b.process.process.returncode == 1
        assert "stopped leading" in b.log

        arl.cli("promote", "ha")
        arl.wait_phase("ha", "Healthy", timeout=90, stableRevision=2)

        # 3: a rolling update's SIGTERM: the leader hands the lease back, a standby takes it
        # at its next look instead of a lease duration later.
        b2 = replicas("replica-b")
        b2.start()
        wait_for(b2.standing_by, 30, 0.2, "the restarted replica-b to stand by")
        terminated_at = datetime.now(UTC)
        a2.process.stop()
        wait_for(b2.leading, TIMINGS.retry_period * 2 + 5, 0.2, "replica-b to take the released lease")
        assert "released lease" in a2.log
    finally:
        watch.stop()

    # The status went through the steps forward only, the timed pause kept its start across
    # the hand-over and lasted its full length, not longer than a hand-over.
    steps = watch.canary_steps(2)
    indexes = [index for _, index, _ in steps]
    assert indexes == sorted(indexes) and {1, 3, 5} <= set(indexes), indexes
    assert {start for _, index, start in steps if index == 3} == {pause_started}
    resumed_at = datetime.fromtimestamp(min(at for at, index, _ in steps if index > 3), UTC)
    waited = seconds(resumed_at, parse_time(pause_started))
    assert PAUSE_SECONDS - 1 <= waited <= PAUSE_SECONDS + TAKEOVER_SLACK_SECONDS, waited

    # Every step once: a repeated step would post its Event twice, a skipped one none.
    events = arl.events("ha")
    completed = sorted(e["message"] for e in events if e["reason"] == "StepCompleted")
    assert completed == sorted([
        "step 1/6: setWeight 33 reached", "step 3/6: setWeight 66 reached",
        f"step 4/6: pause {PAUSE_SECONDS}s elapsed", "step 5/6: setWeight 100 reached",
    ]), completed
    reasons = Counter(e["reason"] for e in events)
    assert reasons["Promoted"] == 2 and reasons["PromotionCompleted"] == 1, reasons

    # The apiserver's side: who wrote, when.
    leaders = [a1.identity, b.identity, a2.identity]
    writes = [w for w in audited_writes(audit_log, OPERATOR_USER) if w.received >= began]
    everyone = [*leaders, b2.identity]
    assert all(w.identity in everyone for w in writes), {w.user_agent for w in writes if w.identity not in everyone}
    app_writes = [w for w in writes if w.namespace == arl.namespace]
    # (A create's audit record may not name the object yet.)
    lease_writes = [w for w in writes if w.resource == "leases" and w.namespace == SYSTEM_NAMESPACE
                    and w.name in (LEASE, "") and w.succeeded]
    # One writer per app at any moment: each replica's writes form one block, in leader order.
    assert runs([w.identity for w in app_writes]) in (leaders, everyone), _describe(app_writes)
    for old, new in itertools.pairwise(leaders):
        last_renewal = max(w.received for w in lease_writes if w.identity == old)
        last_write = max(w.received for w in writes if w.identity == old)
        acquired = min(w.received for w in lease_writes if w.identity == new)
        first_write = min(w.received for w in app_writes if w.identity == new)
        # The old one wrote nothing after its renew deadline...
        assert seconds(last_write, last_renewal) <= TIMINGS.renew_deadline, (old, last_write, last_renewal)
        # ... and the new one acquired only a full lease duration after that renewal.
        assert seconds(acquired, last_renewal) >= TIMINGS.lease_duration - 0.1, (new, acquired, last_renewal)
        assert first_write > last_write

    # After a release, the lease is taken at the standby's next look; nothing of the old
    # leader's lands after its release.
    released = max(w.received for w in lease_writes if w.identity == a2.identity)
    assert max(w.received for w in writes if w.identity == a2.identity) == released
    taken = min(w.received for w in lease_writes if w.identity == b2.identity)
    assert taken > released

    # Fail-over time: kill → the standby's acquisition → its first write to the app.
    acquired = min(w.received for w in lease_writes if w.identity == b.identity)
    first_write = min(w.received for w in app_writes if w.identity == b.identity)
    failover = {"kill_to_acquire_s": round(seconds(acquired, killed_at), 2),
                "kill_to_first_write_s": round(seconds(first_write, killed_at), 2),
                "sigterm_to_acquire_s": round(seconds(taken, terminated_at), 2)}
    record_property("failover", failover)
    print(f"fail-over: {failover}")
    assert failover["kill_to_first_write_s"] <= TIMINGS.lease_duration + TAKEOVER_SLACK_SECONDS, failover
    assert failover["sigterm_to_acquire_s"] <= TIMINGS.retry_period * 1.2 + 5, failover


def _describe(writes: list[AuditedWrite]) -> str:
    return "\n".join(f"{w.received.isoformat()} {w.identity} {w.verb} {w.resource} {w.name} {w.code}" for w in writes)
