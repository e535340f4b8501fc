"""KWOK pods behave like a kubelet's where lossless releases depend on it (no operator here):
containers start before they are ready, readiness gates hold Ready and are never
overwritten by KWOK, the Deployment controller waits for them, and a deleted pod keeps
running until its preStop sleep is over (capped by its grace period)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from apprelease.k8s.client import Kube, load_api_client
from apprelease_dev.kwok_stages import CONTAINERS_STOP_AT_ANNOTATION, READY_AFTER_ANNOTATION
from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.pod_timeline import PodTimeline, condition_status

pytestmark = pytest.mark.e2e

GATE = "apprelease.io/registered"
TIMEOUT = 60.0
# How late the watch may see a pod gone after its preStop ended: KWOK's reaction plus the
# API round trips, on a machine shared with other clusters and JVMs.
STOP_TOLERANCE_SECONDS = 1.5


def _pod(
    name: str,
    *,
    gates: bool = False,
    pre_stop_seconds: int | None = None,
    grace_seconds: int | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.example/app:1"}
    if pre_stop_seconds is not None:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop_seconds}}}
    spec: dict[str, Any] = {"containers": [container]}
    if gates:
        spec["readinessGates"] = [{"conditionType": GATE}]
    if grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = grace_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"test": "kwok-lifecycle", **(labels or {})},
            "annotations": annotations or {},
        },
        "spec": spec,
    }


def _set_gate(
    kube: KubeCluster, namespace: str, pod: str, status: bool, *, server_side: bool = False
) -> None:
    """What the operator does: write its readiness-gate condition to pods/status, as a
    strategic merge patch, or (server_side) with server-side apply through the operator's own
    client and field manager."""
    condition = {
        "type": GATE,
        "status": "True" if status else "False",
        "reason": "InstanceListed" if status else "InstanceNotListed",
        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if server_side:
        api_client = load_api_client(str(kube.kubeconfig), pool_size=1)
        try:
            Kube(api_client).apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod, "namespace": namespace},
                    "status": {"conditions": [condition]},
                },
                subresource="status",
            )
        finally:
            api_client.close()
        return
    kube.kubectl(
        "patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=strategic",
        "-p", json.dumps({"status": {"conditions": [condition]}}),
    )


def _gate_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == GATE), None)


@pytest.fixture
def pods(kube_cluster: KubeCluster, namespace: str) -> Iterator[PodTimeline]:
    with PodTimeline(str(kube_cluster.kubeconfig), namespace) as timeline:
        yield timeline
    assert not timeline.errors, timeline.errors


def _wait(timeline: PodTimeline, name: str, what: str, check: Any, timeout: float = TIMEOUT) -> Any:
    def probe() -> Any:
        record = timeline.records.get(name)
        return record if record is not None and check(record) else NotYet(record and record.last.get("status"))

    return wait_for(probe, timeout, interval=0.05, message=f"pod {name}: {what}")


def _holds(seconds: float, check: Any, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), f"stopped holding: {what}"
        time.sleep(0.1)


def test_containers_start_unready_then_ready_after_the_start_delay(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    kube_cluster.apply(
        _pod("starting", annotations={READY_AFTER_ANNOTATION: "2s"}),
        _pod("quick"),
        namespace=namespace,
    )
    running = _wait(pods, "starting", "Running with an IP", lambda r: r.running_at)
    assert condition_status(running.last, "ContainersReady") == "False"
    assert condition_status(running.last, "Ready") == "False"
    statuses = running.last["status"]["containerStatuses"]
    assert statuses[0]["started"] is True and statuses[0]["ready"] is False
    assert "running" in statuses[0]["state"]

    ready = _wait(pods, "starting", "Ready", lambda r: r.ready_at)
    assert ready.ready_at - ready.running_at >= 1.0, "containers ready before ready-after"
    assert ready.containers_ready_at is not None
    # A pod without the annotation is ready after the short default (300 ms).
    quick = _wait(pods, "quick", "Ready", lambda r: r.ready_at)
    assert quick.ready_at - quick.running_at < 1.5


def test_readiness_gate_holds_ready_and_ready_follows_it(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    kube_cluster.apply(_pod("gated", gates=True), namespace=namespace)
    record = _wait(pods, "gated", "containers ready", lambda r: r.containers_ready_at)
    # Containers ready, gate condition absent: not Ready, with the kubelet's reason.
    _holds(2.0, lambda: not pods.record("gated").ready, "Ready held by the readiness gate")
    ready = next(c for c in record.last["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ReadinessGatesNotReady"
    assert GATE in ready["message"] and "does not exist" in ready["message"]
    assert _gate_condition(record.last) is None, "KWOK wrote the gate condition itself"

    _set_gate(kube_cluster, namespace, "gated", True)
    record = _wait(pods, "gated", "Ready once the gate is True", lambda r: r.ready)
    ready = next(c for c in record.last["status"]["conditions"] if c["type"] == "Ready")
    assert "reason" not in ready and "message" not in ready

    _set_gate(kube_cluster, namespace, "gated", False)
    record = _wait(pods, "gated", "not Ready once the gate is False", lambda r: not r.ready)
    assert condition_status(record.last, "ContainersReady") == "True"
    assert _gate_condition(record.last)["status"] == "False"  # type: ignore[index]
    _holds(1.5, lambda: not pods.record("gated").ready, "Ready stays False with the gate")

    _set_gate(kube_cluster, namespace, "gated", True)
    record = _wait(pods, "gated", "Ready again once the gate is True", lambda r: r.ready)
    assert [ready for _, ready in record.ready_changes] == [False, True, False, True]


def test_gate_condition_written_before_kwok_transitions_survives_them(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    """The operator may write its condition while KWOK still has status patches to make (the
    containers-ready transition, termination): KWOK must leave it as written. Written with
    server-side apply, as the operator does."""
    kube_cluster.apply(
        _pod("early", gates=True, pre_stop_seconds=2, annotations={READY_AFTER_ANNOTATION: "3s"}),
        namespace=namespace,
    )
    running = _wait(pods, "early", "Running", lambda r: r.running_at)
    assert condition_status(running.last, "ContainersReady") == "False"
    _set_gate(kube_cluster, namespace, "early", True, server_side=True)
    written = _wait(pods, "early", "gate condition visible", _gate_condition_of("True"))
    written_condition = _gate_condition(written.last)

    record = _wait(pods, "early", "containers ready, hence Ready", lambda r: r.ready)
    assert condition_status(record.last, "ContainersReady") == "True"
    assert _gate_condition(record.last) == written_condition

    kube_cluster.kubectl("delete", "pod", "early", "-n", namespace, "--wait=false")
    terminating = _wait(
        pods, "early", "stop time recorded",
        lambda r: CONTAINERS_STOP_AT_ANNOTATION in (r.last["metadata"].get("annotations") or {}),
    )
    assert _gate_condition(terminating.last) == written_condition
    pods.wait_gone("early", TIMEOUT)


def _gate_condition_of(status: str) -> Any:
    return lambda record: (_gate_condition(record.last) or {}).get("status") == status


def test_rolling_update_waits_for_the_readiness_gate(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    replicas = 2
    template = _pod("unused", gates=True)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gated"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "gated"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "gated"}, "annotations": {"revision": "1"}},
                "spec": template["spec"],
            },
        },
    }
    kube_cluster.apply(deployment, namespace=namespace)

    def containers_ready_pods() -> list[str]:
        return [
            name for name in pods.names()
            if pods.record(name).containers_ready_at and not pods.record(name).deletion_requested_at
        ]

    def open_gates(count: int) -> list[str]:
        """Set the gate True on pods whose containers are ready, `count` of them in all."""
        names = wait_for(
            lambda: containers_ready_pods() if len(containers_ready_pods()) >= count else NotYet(containers_ready_pods()),
            TIMEOUT, message=f"{count} pods with ready containers",
        )
        for name in names:
            if _gate_condition(pods.record(name).last) is None:
                _set_gate(kube_cluster, namespace, name, True)
        return list(names)

    first = open_gates(replicas)
    wait_for(lambda: _available(kube_cluster, namespace) == replicas or NotYet(_available(kube_cluster, namespace)),
             TIMEOUT, message="the first revision available")

    kube_cluster.kubectl(
        "patch", "deployment", "gated", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"template": {"metadata": {"annotations": {"revision": "2"}}}}}),
    )
    surge = wait_for(
        lambda: [n for n in containers_ready_pods() if n not in first] or NotYet(pods.names()),
        TIMEOUT, message="the surge pod of revision 2 with ready containers",
    )
    assert len(surge) == 1

    def held() -> bool:
        live = [n for n in pods.names() if not pods.record(n).deletion_requested_at]
        return (
            all(not pods.record(n).deletion_requested_at for n in first)
            and not pods.record(surge[0]).ready
            and len(live) == replicas + 1  # maxSurge 1: no second new pod either
        )

    # The new pod's containers are ready but its gate is not: the rollout must not move.
    _holds(4.0, held, "old pods kept and no further new pod while the gate is False")

    _set_gate(kube_cluster, namespace, surge[0], True)
    old_leaving = wait_for(
        lambda: [n for n in first if pods.record(n).deletion_requested_at] or NotYet(None),
        TIMEOUT, message="an old pod to be deleted once the new one is Ready",
    )
    assert len(old_leaving) == 1
    assert pods.record(old_leaving[0]).deletion_requested_at >= pods.record(surge[0]).ready_at

    second = wait_for(
        lambda: [n for n in containers_ready_pods() if n not in first and n not in surge] or NotYet(None),
        TIMEOUT, message="the second pod of revision 2",
    )
    _holds(2.0, lambda: not all(pods.record(n).deletion_requested_at for n in first),
           "the last old pod kept while the second new pod's gate is False")
    _set_gate(kube_cluster, namespace, second[0], True)
    wait_for(
        lambda: all(pods.record(n).gone_at for n in first) or NotYet(None),
        TIMEOUT, message="every pod of revision 1 gone",
    )
    assert _available(kube_cluster, namespace) == replicas


def _available(kube: KubeCluster, namespace: str) -> int:
    status = kube.get_json("deployment", "gated", "-n", namespace).get("status", {})
    return int(status.get("availableReplicas") or 0)


def _service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _endpoint_conditions(kube: KubeCluster, namespace: str, service: str, ip: str) -> dict[str, Any] | None:
    slices = kube.get_json(
        "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            if ip in endpoint.get("addresses", []):
                return dict(endpoint.get("conditions") or {})
    return None


def test_termination_waits_for_the_prestop_sleep(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    sleep_seconds = 4
    kube_cluster.apply(
        _pod("draining", pre_stop_seconds=sleep_seconds, labels={"app": "draining"}),
        _service("draining", {"app": "draining"}),
        namespace=namespace,
    )
    record = _wait(pods, "draining", "Ready", lambda r: r.ready)
    ip = record.ip
    wait_for(
        lambda: (_endpoint_conditions(kube_cluster, namespace, "draining", ip) or {}).get("ready") or NotYet(None),
        TIMEOUT, message="the pod listed ready in its EndpointSlice",
    )

    requested = time.time()
    kube_cluster.kubectl("delete", "pod", "draining", "-n", namespace, "--wait=false")
    terminating = _wait(pods, "draining", "terminating", lambda r: r.deletion_requested_at)
    # While the preStop runs the containers keep running and, with no probe failing, the pod
    # stays Ready (a kubelet keeps probing); the EndpointSlice takes it out of `ready`.
    def endpoint_terminating() -> dict[str, Any] | NotYet:
        conditions = _endpoint_conditions(kube_cluster, namespace, "draining", ip)
        return conditions if conditions and conditions.get("terminating") else NotYet(conditions)

    conditions = wait_for(endpoint_terminating, TIMEOUT, message="the endpoint marked terminating")
    assert conditions == {"ready": False, "serving": True, "terminating": True}
    assert terminating.last["status"]["phase"] == "Running"
    assert condition_status(pods.record("draining").last, "Ready") == "True"

    gone = pods.wait_gone("draining", sleep_seconds + TIMEOUT)
    took = gone.gone_at - requested
    print(f"\npreStop sleep {sleep_seconds} s: pod gone {took:.2f} s after the delete request")
    assert sleep_seconds - 0.2 <= took <= sleep_seconds + STOP_TOLERANCE_SECONDS


def test_a_gate_change_during_termination_neither_drops_nor_delays_the_stop(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    """The operator sets its gate False when a pod starts terminating: Ready goes False at
    once, the pod stays until its preStop is over, and the update does not restart the wait."""
    sleep_seconds = 4
    kube_cluster.apply(_pod("leaving", gates=True, pre_stop_seconds=sleep_seconds), namespace=namespace)
    _wait(pods, "leaving", "containers ready", lambda r: r.containers_ready_at)
    _set_gate(kube_cluster, namespace, "leaving", True)
    _wait(pods, "leaving", "Ready", lambda r: r.ready)

    requested = time.time()
    kube_cluster.kubectl("delete", "pod", "leaving", "-n", namespace, "--wait=false")
    _wait(pods, "leaving", "terminating", lambda r: r.deletion_requested_at)
    _set_gate(kube_cluster, namespace, "leaving", False)
    not_ready = _wait(pods, "leaving", "not Ready", lambda r: not r.ready)
    assert not_ready.gone_at is None, "the pod left before its preStop was over"
    assert time.time() - requested < sleep_seconds - 1, "too slow to tell"

    gone = pods.wait_gone("leaving", sleep_seconds + TIMEOUT)
    took = gone.gone_at - requested
    print(f"\npreStop sleep {sleep_seconds} s with a gate change: gone after {took:.2f} s")
    assert sleep_seconds - 0.2 <= took <= sleep_seconds + STOP_TOLERANCE_SECONDS


def test_prestop_is_capped_by_the_grace_period_and_no_prestop_is_quick(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    # The API wants preStop.sleep < terminationGracePeriodSeconds; a delete may shorten it.
    grace_seconds = 2
    kube_cluster.apply(
        _pod("capped", pre_stop_seconds=30, grace_seconds=60),
        _pod("plain"),
        namespace=namespace,
    )
    _wait(pods, "capped", "Ready", lambda r: r.ready)
    _wait(pods, "plain", "Ready", lambda r: r.ready)

    requested = time.time()
    kube_cluster.kubectl("delete", "pod", "plain", "-n", namespace, "--wait=false")
    kube_cluster.kubectl(
        "delete", "pod", "capped", "-n", namespace, "--wait=false", f"--grace-period={grace_seconds}"
    )
    plain = pods.wait_gone("plain", TIMEOUT)
    capped = pods.wait_gone("capped", TIMEOUT)
    plain_took, capped_took = plain.gone_at - requested, capped.gone_at - requested
    assert capped.terminating["metadata"]["deletionGracePeriodSeconds"] == grace_seconds
    print(f"\nno preStop: gone after {plain_took:.2f} s; preStop 30 s, grace {grace_seconds} s:"
          f" gone after {capped_took:.2f} s")
    assert plain_took <= 1 + STOP_TOLERANCE_SECONDS
    assert grace_seconds - 0.2 <= capped_took <= grace_seconds + STOP_TOLERANCE_SECONDS


def test_kubectl_logs_follows_what_the_simulated_container_prints(
    kube_cluster: KubeCluster, namespace: str, pods: PodTimeline
) -> None:
    """`kubectl logs -f` goes apiserver → "kubelet" (KWOK's server) and follows as lines come."""
    kube_cluster.apply(_pod("talker"), namespace=namespace)
    _wait(pods, "talker", "Running with an IP", lambda r: r.running_at)
    before = f"before-{namespace}"
    kube_cluster.print_to_pod_logs(before)
    assert before in kube_cluster.kubectl("logs", "talker", "-n", namespace, "--tail=20").stdout

    follower = subprocess.Popen(
        [str(kube_cluster.kubectl_binary), f"--kubeconfig={kube_cluster.kubeconfig}",
         "logs", "-f", "talker", "-n", namespace, "--tail=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        received: list[str] = []
        reader = threading.Thread(target=lambda: received.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        wait_for(lambda: any(before in line for line in received) or NotYet(received), TIMEOUT,
                 message="the followed log's first line")
        after = f"after-{namespace}"
        kube_cluster.print_to_pod_logs(after)
        wait_for(lambda: any(after in line for line in received) or NotYet(received), TIMEOUT,
                 message="a line printed while following")
        assert follower.poll() is None, "kubectl logs -f ended on its own"
    finally:
        follower.kill()
        follower.wait()
