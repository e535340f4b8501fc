"""Container logs for KWOK's simulated pods, so `kubectl logs` (and the console's log view)
reads a real stream through the apiserver → "kubelet" (KWOK's server) path.

KWOK serves a pod's log from a file in the CRI log format a kubelet reads
(`<RFC 3339 time> stdout F <line>`); one ClusterLogs rule gives every simulated container the
same file, followed as it grows. Tools and tests write to it with `append_pod_log`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

API_VERSION = "kwok.x-k8s.io/v1alpha1"


def logs_documents(log_file: Path) -> list[dict[str, object]]:
    return [{
        "apiVersion": API_VERSION,
        "kind": "ClusterLogs",
        "metadata": {"name": "every-container"},
        # No selector and no container list: every container of every simulated pod.
        "spec": {"logs": [{"logsFile": str(log_file), "follow": True}]},
    }]


def write_logs_config(path: Path, log_file: Path) -> Path:
    """KWOK's logs configuration (for `--config`), and the log file it serves, started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(logs_documents(log_file), sort_keys=False))
    if not log_file.exists():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        append_pod_log(log_file, "simulated container started (KWOK serves this file as every container's log)")
    return path


def cri_line(text: str, when: datetime | None = None, stream: str = "stdout") -> str:
    """One line in the CRI log format (`F`: a full line, not a partial one)."""
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {stream} F {text}\n"


def append_pod_log(log_file: Path, *lines: str) -> None:
    """What the simulated containers print next (every follower sees it)."""
    with log_file.open("a", encoding="utf-8") as handle:
        handle.writelines(cri_line(line) for line in lines)
