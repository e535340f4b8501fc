"""`apprelease run` as a subprocess: start, stop, metrics, memory (from /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

SOURCE_ROOT = Path(__file__).resolve().parent.parent / "operator"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
WRITE_VERBS = frozenset({"post", "put", "patch", "delete"})
API_REQUESTS = "apprelease_api_requests_total"
PHASE_GAUGE = "apprelease_appreleases"
QUEUE_DEPTH = "apprelease_workqueue_depth"
RECONCILES = "apprelease_reconcile_total"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Memory:
    rss_kib: int  # VmRSS
    hwm_kib: int  # VmHWM: peak RSS of the process so far

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


@dataclass(frozen=True)
class Metrics:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= set(ls))

    def writes_by_resource(self) -> dict[str, int]:
        """Writes by "verb resource", e.g. "patch Deployment"."""
        found: dict[str, int] = defaultdict(int)
        for (name, labels), value in self.samples.items():
            as_dict = dict(labels)
            if name == API_REQUESTS and as_dict.get("verb") in WRITE_VERBS:
                found[f"{as_dict['verb']} {as_dict.get('resource', '')}"] += int(value)
        return dict(found)

    def writes(self) -> int:
        return sum(self.writes_by_resource().values())

    def resynced(self) -> int:
        """AppReleases reconciled at least once by this process (its phase gauge)."""
        return int(self.value(PHASE_GAUGE))


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(keys) if after.get(k, 0) != before.get(k, 0)}


class OperatorProcess:
    def __init__(
        self, kubeconfig: Path, log_dir: Path, *, workers: int, source_root: Path = SOURCE_ROOT,
        launcher: tuple[str, ...] = ("-m", "apprelease.cli.main"), extra_args: tuple[str, ...] = (),
    ):
        """`source_root` and `launcher` let `bench.memory` run another checkout's operator, or
        the same one under a diagnostic wrapper script (`launcher=(script,)`); `extra_args` go
        to `apprelease run` (e.g. `--allow-metric-server`)."""
        self.kubeconfig = kubeconfig
        self.source_root = source_root
        self.launcher = launcher
        self.extra_args = extra_args
        self.log_dir = log_dir
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.liveness_port = 0
        self.starts = 0
        self.started_at = 0.0
        self.log_path = log_dir / "operator-0.log"

    def start(self, *, wait: bool = True) -> None:
        assert self.process is None, "operator already running"
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.log_path = self.log_dir / f"operator-{self.starts}.log"
        self.starts += 1
        command = [
            sys.executable, *self.launcher,
            "--kubeconfig", str(self.kubeconfig),
            "run",
            "--metrics-port", str(self.metrics_port),
            "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--workers", str(self.workers),
            # One process: no Lease, whose renewals (every 2 s) would count as idle writes.
            "--no-leader-elect",
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONPATH": str(self.source_root)}
        self.started_at = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if wait:
            self.wait_healthy()

    @property
    def pid(self) -> int:
        assert self.process is not None, "operator not running"
        return self.process.pid

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise AssertionError(f"operator not healthy after {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2).raise_for_status()
            httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).raise_for_status()
            return True
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def metrics(self) -> Metrics:
        self.check_alive()
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return Metrics(samples)

    def memory(self) -> Memory:
        self.check_alive()
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])  # kB
        return Memory(rss_kib=fields["VmRSS"], hwm_kib=fields["VmHWM"])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the operator process so far (/proc/<pid>/stat)."""
        self.check_alive()
        # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no operator log)"
