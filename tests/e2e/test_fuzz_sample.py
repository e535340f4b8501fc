"""A sample of CRD-generated AppReleases through the real apiserver with the operator running.

The specs come from the same strategies as tests/unit/test_fuzz_admitted_specs.py and pass
the emulated admission. Here: the real apiserver must admit every one of them (a rejection
is a bug in the emulation), the operator must reach a verdict for each (status for the
current generation, with a phase; Degraded means a Stalled condition with a message and a
Warning Event, and never InternalError), everything it would render for the spec must be
accepted by a server-side dry run unless the AppRelease is Stalled (and if it is Stalled
because a child was rejected, the dry run must agree), deleting them all must finish, and
the operator's log must hold no traceback.

Sample size: APPRELEASE_FUZZ_E2E_SAMPLE (default 30), derandomized; half of it with
printable ASCII strings only, so that some rollouts can succeed. Three overrides keep the
sample safe on a shared machine: at most 3 replicas (KWOK runs every pod asked for), Nacos
server addresses on the loopback (the operator connects to what the spec names), and
deletionTimeout of at most 15 s, set when not drawn (the namespace must go when the test ends).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from kubernetes.config import new_client_from_config

from tests.fuzz.admission import admit
from tests.fuzz.apiserver import as_json, dry_run_rejection
from tests.fuzz.strategies import appreleases
from tests.plugins.cluster import KubeCluster, NotYet, wait_for
from tests.plugins.operator import AppReleases, OperatorProcess

pytestmark = pytest.mark.e2e

SAMPLE = int(os.environ.get("APPRELEASE_FUZZ_E2E_SAMPLE", "30"))
VERDICT_TIMEOUT = 120.0
DELETION_TIMEOUT = 90.0
SAFE_FOR_A_SHARED_MACHINE = {
    "spec.replicas": st.integers(0, 3),
    # Deleting an app whose Nacos never answers waits deletionTimeout (up to 24h admitted):
    # the namespace, and the idleness tests that wait for it, would wait as long.
    "spec.registry.deletionTimeout": st.sampled_from(["0s", "1s", "5s", "15s"]),
    "spec.registry.nacos.serverAddr": st.sampled_from(
        ["127.0.0.1:1", "127.0.0.1:9,127.0.0.1:1", "http://127.0.0.1:2", "localhost:3"]
    ),
}


def sample_specs(size: int) -> list[dict[str, Any]]:
    """``size`` admitted specs, the same ones every run, each with its own name: half with
    printable ASCII strings (rollouts that can succeed), half with anything the CRD admits."""
    bodies: list[dict[str, Any]] = []
    for plain, count in ((True, size // 2), (False, size - size // 2)):
        wanted = len(bodies) + count

        @settings(max_examples=count * 3, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(appreleases(overrides=SAFE_FOR_A_SHARED_MACHINE, plain=plain))
        def collect(body: dict[str, Any]) -> None:
            if len(bodies) >= wanted:  # noqa: B023 - run at once, inside this iteration
                return
            body["metadata"]["name"] = f"{body['metadata']['name'][:52]}-{len(bodies):02d}"
            registry = body["spec"].get("registry")
            if registry is not None and "deletionTimeout" not in registry:
                # Not drawn, it defaults to 2m: deleting an app whose registry never answers
                # then waits 2 minutes (9 of 29 apps outlived the deletion bound that way).
                registry["deletionTimeout"] = "5s"
            assume(admit(body).admitted)
            bodies.append(body)

        collect()
    assert len(bodies) == size, f"only {len(bodies)} of {size} generated specs were admitted"
    return bodies


# What an apiserver dry run cannot see: it checks a nodePort only against ports in use, not
# against --service-node-port-range (PortAllocationOperation.Allocate in dry-run mode), so a
# real apply is refused where the dry run of the same Service is accepted.
DRY_RUN_BLIND_SPOTS = ("nodePort: Invalid value", "provided port is not in the valid range")


def _dry_run_blind_spot(condition: dict[str, Any] | None) -> bool:
    message = (condition or {}).get("message", "")
    return all(part in message for part in DRY_RUN_BLIND_SPOTS)


def _stalled(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or []
                 if c.get("type") == "Stalled" and c.get("status") == "True"), None)


def _verdicts(arl: AppReleases, names: list[str]) -> dict[str, dict[str, Any]] | NotYet:
    items = {i["metadata"]["name"]: i for i in arl.kubectl_json("appreleases")["items"]}
    pending = [
        n for n in names
        if not (items[n].get("status") or {}).get("phase")
        or (items[n].get("status") or {}).get("observedGeneration") != items[n]["metadata"]["generation"]
    ]
    return NotYet(pending) if pending else items


def _warnings_by_object(arl: AppReleases) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in arl.kubectl_json("events")["items"]:
        if event.get("type") == "Warning":
            found.setdefault(event["involvedObject"]["name"], []).append(event.get("reason", ""))
    return found


TRANSIENT = ("(Timeout)", "(ServiceUnavailable)", "(InternalError)", "(TooManyRequests)",
             "context deadline exceeded")


def _create(cluster: KubeCluster, namespace: str, body: dict[str, Any]) -> str | None:
    """Create one AppRelease; the apiserver's refusal, or None. A busy apiserver's timeouts
    are retried (a timed-out create may have landed: AlreadyExists then counts as created)."""
    # create (a JSON POST), not server-side apply: an apply patch is read as YAML, which
    # cannot carry some characters a spec may hold (the operator's own applies can't either).
    for attempt in range(3):
        result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=as_json(body), check=False)
        if result.returncode == 0 or (attempt and "(AlreadyExists)" in result.stderr):
            return None
        if not any(mark in result.stderr for mark in TRANSIENT):
            break
    return result.stderr.strip()[:600]


def _deleted(cluster: KubeCluster, arl: AppReleases) -> list[str]:
    """Delete the sample: every AppRelease must go (finalizers released) within the bound;
    any left is a problem, and loses its finalizers so the namespace can go."""
    cluster.kubectl("delete", "appreleases", "--all", "-n", arl.namespace, "--wait=false")

    def gone() -> bool | NotYet:
        left = [i["metadata"]["name"] for i in arl.kubectl_json("appreleases")["items"]]
        return NotYet(left) if left else True

    try:
        wait_for(gone, DELETION_TIMEOUT, 1.0, "every AppRelease of the sample to be deleted")
        return []
    except AssertionError as exc:
        for item in arl.kubectl_json("appreleases")["items"]:
            arl.patch(item["metadata"]["name"], {"metadata": {"finalizers": None}})
        return [str(exc)]
    finally:
        # A generated spec may give its pods a termination grace period of hours: KWOK honours
        # it, and the namespace would stay Terminating while later tests wait for it to go.
        cluster.kubectl("delete", "pods", "--all", "-n", arl.namespace, "--grace-period=0", "--force",
                        "--wait=false", check=False)


def test_generated_appreleases_are_admitted_and_reach_a_verdict(
    kube_cluster: KubeCluster, arl: AppReleases, operator: OperatorProcess
) -> None:
    started = time.monotonic()
    log_offset = operator.log_path.stat().st_size
    bodies = sample_specs(SAMPLE)
    generated = time.monotonic()

    rejected = {}
    for body in bodies:
        rejection = _create(kube_cluster, arl.namespace, body)
        if rejection:
            rejected[body["metadata"]["name"]] = rejection
    names = [b["metadata"]["name"] for b in bodies if b["metadata"]["name"] not in rejected]
    applied = time.monotonic()

    # A refusal is an emulation bug (or a busy apiserver); the other specs are still checked.
    problems: list[str] = [f"the apiserver refused what the emulated admission admitted: {k}: {v}"
                           for k, v in rejected.items()]
    sampled = len(names)
    try:
        items = wait_for(lambda: _verdicts(arl, names), VERDICT_TIMEOUT, 1.0,
                         "a verdict (phase for the current generation) for every AppRelease")
    except AssertionError as exc:
        problems.append(str(exc))
        items = {i["metadata"]["name"]: i for i in arl.kubectl_json("appreleases")["items"]}
        names = [n for n in names if not isinstance(_verdicts(arl, [n]), NotYet)]
    verdicts_at = time.monotonic()

    stalled = {n: _stalled(items[n]["status"]) for n in names}
    for name, condition in stalled.items():
        if condition is None:
            if items[name]["status"]["phase"] == "Degraded":
                problems.append(f"{name}: Degraded without a Stalled condition")
            continue
        if not condition.get("message"):
            problems.append(f"{name}: Stalled ({condition.get('reason')}) with no message")
        if condition.get("reason") == "InternalError":
            problems.append(f"{name}: InternalError: {condition.get('message')}")
    needs_warning = [n for n, c in stalled.items() if c is not None]

    def warned() -> bool | NotYet:
        warnings = _warnings_by_object(arl)
        missing = [n for n in needs_warning if not warnings.get(n)]
        return NotYet(missing) if missing else True

    try:
        wait_for(warned, 30, 1.0, "a Warning Event for every Stalled AppRelease")
    except AssertionError as exc:
        problems.append(str(exc))

    dry_runs = 0
    api = new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    for name in names:
        rejection = dry_run_rejection(api, items[name])
        dry_runs += 1
        reason = (stalled[name] or {}).get("reason")
        if rejection is not None and stalled[name] is None:
            problems.append(f"{name}: not Stalled, but the apiserver refuses its children: {rejection}")
        if rejection is None and reason == "ChildRejected" and not _dry_run_blind_spot(stalled[name]):
            problems.append(f"{name}: Stalled ChildRejected, but a server-side apply dry run of the same"
                            f" children is accepted: {stalled[name]['message'][:300]}")

    problems += _deleted(kube_cluster, arl)

    log = operator.log_path.read_text(errors="replace")[log_offset:]
    if "Traceback" in log:
        first = log.index("Traceback")
        problems.append(f"operator log has a traceback:\n{log[first:first + 3000]}")

    phases: dict[str, int] = {}
    for name in names:
        status = items[name]["status"]
        key = status["phase"] + (f" ({stalled[name]['reason']})" if stalled[name] else "")
        phases[key] = phases.get(key, 0) + 1
    print(  # the sample's numbers, for docs/fuzzing.md
        f"fuzz e2e: {sampled} specs, all admitted, {len(names)} with a verdict:"
        f" {json.dumps(phases, sort_keys=True)};"
        f" {dry_runs} dry runs; generate {generated - started:.1f} s, apply {applied - generated:.1f} s,"
        f" verdicts {verdicts_at - applied:.1f} s, total {time.monotonic() - started:.1f} s"
    )
    assert not problems, "\n\n".join(problems)
