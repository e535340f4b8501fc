"""Re-check the fuzzing's findings (findings.yaml): which still fail, which are fixed.

    .venv/bin/python -m tests.fuzz.findings                      # offline
    .venv/bin/python -m tests.fuzz.findings --kubeconfig FILE    # and against an apiserver

Offline: emulated admission, then the pipeline (parse, render, plan, invariants). With a
cluster: each spec is created in a scratch namespace (admission for real), and its children
are dry-run as the operator's server-side applies.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.support import expand

from .admission import admit
from .apiserver import as_json, dry_run_rejection
from .cluster_states import Knobs
from .pipeline import Counts, exercise, signatures

FINDINGS = Path(__file__).with_name("findings.yaml")


def body_of(finding: dict[str, Any]) -> dict[str, Any]:
    name = expand(finding.get("metadata_name", finding["name"][:50].rstrip("-")))
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": name}, "spec": expand(finding["spec"])}


def offline(finding: dict[str, Any]) -> str:
    admission = admit(body_of(finding))
    if not admission.admitted:
        return f"rejected at (emulated) admission: {admission.errors[0][:160]}"
    try:
        return f"verdict {exercise(admission.body, Knobs(), Counts())}"
    except Exception as exc:  # every failure is a result here
        return f"FAILS: {'; '.join(signatures(exc))[:300]}"


def on_cluster(findings: list[dict[str, Any]], kubeconfig: str, kubectl: str) -> dict[str, str]:
    from kubernetes.config import new_client_from_config

    namespace = f"fuzz-findings-{uuid.uuid4().hex[:6]}"
    run = [kubectl, f"--kubeconfig={kubeconfig}"]
    subprocess.run([*run, "create", "namespace", namespace], check=True, capture_output=True)
    api = new_client_from_config(config_file=kubeconfig)
    results = {}
    try:
        for finding in findings:
            body = body_of(finding)
            created = subprocess.run([*run, "create", "-n", namespace, "-f", "-", "-o", "json"],
                                     input=as_json(body), capture_output=True, text=True)
            if created.returncode != 0:
                results[finding["name"]] = f"apiserver rejects: {created.stderr.strip()[:200]}"
                continue
            rejection = dry_run_rejection(api, json.loads(created.stdout))
            results[finding["name"]] = (f"children refused: {rejection[:300]}" if rejection
                                        else "admitted; children accepted")
    finally:
        subprocess.run([*run, "delete", "namespace", namespace, "--wait=false"], capture_output=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig")
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args()
    findings = yaml.safe_load(FINDINGS.read_text())
    real = on_cluster(findings, args.kubeconfig, args.kubectl) if args.kubeconfig else {}
    for finding in findings:
        print(f"{finding['name']} [{finding['check']}; {finding['layer']}]")
        print(f"    offline: {offline(finding)}")
        if finding["name"] in real:
            print(f"    apiserver: {real[finding['name']]}")


if __name__ == "__main__":
    main()
