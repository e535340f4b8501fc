"""A real Prometheus server for the analysis tests: built from its Go module, cached, started
on 127.0.0.1 with a config that scrapes the tests' exporters every second.

Built with `go install github.com/prometheus/prometheus/cmd/prometheus@<version>` (its own
go.mod, no replace directives) and two build tags:
- no `builtinassets`: the web UI's compiled assets are not embedded (the release build embeds
  them); the query API, all the tests need, is the same;
- `remove_all_sd`: leaves out the cloud service-discovery plugins (plugins/plugin_*.go are
  `//go:build !remove_all_sd || enable_<name>_sd`), the tests use static targets only.

The binary lands in `<cache>/prometheus/<version>/bin/prometheus`, built once per version under
a file lock (parallel sessions wait for one build) and swapped in with a rename.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from apprelease_dev import versions
from apprelease_dev.go_runner import BuildError, Progress, run_go
from apprelease_dev.locking import file_lock
from apprelease_dev.paths import cache_root
from apprelease_dev.processes import ProcessIdentity, free_port, start_detached, stop_groups

BINARY = "prometheus"
BUILD_TAGS = ("remove_all_sd", "netgo")
BUILD_INFO_FILE = "build-info.json"
START_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1
# The tests change values and expect to read them within seconds.
SCRAPE_INTERVAL = "1s"
EVALUATION_INTERVAL = "1s"


class PrometheusError(RuntimeError):
    """Prometheus could not be started or reached; the message says why and where its log is."""


def prometheus_home(version: str = versions.PROMETHEUS_VERSION) -> Path:
    return cache_root() / "prometheus" / version


def prometheus_binary(version: str = versions.PROMETHEUS_VERSION) -> Path:
    return prometheus_home(version) / "bin" / BINARY


def ensure_prometheus(
    progress: Progress = print, *, version: str = versions.PROMETHEUS_VERSION, force: bool = False
) -> Path:
    """The path of the cached Prometheus binary, built first if missing (or with `force`).

    BuildError names the failing step and ends with go's output when it cannot be built.
    """
    binary = prometheus_binary(version)
    if not force and os.access(binary, os.X_OK):
        return binary
    home = prometheus_home(version)
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        if not force and os.access(binary, os.X_OK):  # another process built it meanwhile
            return binary
        release = versions.prometheus_release(version)
        progress(f"Building Prometheus {release} ({versions.PROMETHEUS_MODULE}@{version}) into {binary.parent}")
        started = time.monotonic()
        staging = home / f"bin.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            run_go(
                [
                    "install",
                    "-v",
                    "-trimpath",
                    "-tags",
                    ",".join(BUILD_TAGS),
                    "-ldflags",
                    " ".join(["-s", "-w", *_version_ldflags(release)]),
                    f"{versions.PROMETHEUS_MODULE}/cmd/prometheus@{version}",
                ],
                step=f"compiling Prometheus {release} (go install; a cold Go cache takes minutes)",
                cwd=home,
                progress=progress,
                env={"GOBIN": str(staging)},
            )
            _verify(staging / BINARY, release)
            seconds = time.monotonic() - started
            (staging / BUILD_INFO_FILE).write_text(json.dumps({
                "module": f"{versions.PROMETHEUS_MODULE}@{version}",
                "release": release,
                "tags": list(BUILD_TAGS),
                "buildSeconds": round(seconds, 1),
                "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }, indent=2) + "\n")
            _install(staging, binary.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        progress(f"Built Prometheus {release} in {time.monotonic() - started:.0f} s: {binary}")
    return binary


def _version_ldflags(release: str) -> list[str]:
    """Stamp the version as Prometheus' release build (promu) does: a module build has none."""
    return [f"-X github.com/prometheus/common/version.Version={release}",
            "-X github.com/prometheus/common/version.Branch=module",
            "-X github.com/prometheus/common/version.BuildUser=apprelease-dev"]


def _verify(binary: Path, release: str) -> None:
    if not os.access(binary, os.X_OK):
        raise BuildError("compiling Prometheus (go install)", f"no binary at {binary}")
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or release not in output:
        raise BuildError("checking `prometheus --version`",
                         f"expected {release!r} in its output, got (exit {result.returncode}): {output}")


def _install(staging: Path, target: Path) -> None:
    """Swap the new binary in with renames: a reader sees the old one or the new one."""
    if target.exists():
        retired = target.with_name(f"{target.name}.old-{os.getpid()}")
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)


@dataclass
class PrometheusServer:
    """One Prometheus process on 127.0.0.1 scraping `targets` (host:port of /metrics
    endpoints). `stop()` and `start()` keep the data directory and the port, as an outage and
    a recovery of the same server would."""

    binary: Path
    workdir: Path
    targets: list[str] = field(default_factory=list)
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _identity: ProcessIdentity | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start it (again) and wait until its query API answers; PrometheusError otherwise."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self._write_config()
        command = [
            str(self.binary),
            f"--config.file={self._config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            # POST /-/reload picks up new scrape targets without a restart.
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        self._process, self._identity = start_detached(command, log_path=self.log_path, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(
                    f"Prometheus exited with {self._process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(POLL_SECONDS)
        self.stop()
        raise PrometheusError(f"Prometheus not ready on {self.url} within {timeout:.0f} s; log: {self.log_path}\n"
                              f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after a grace); its data and port are kept."""
        if self._identity is not None:
            stop_groups([self._identity])
        if self._process is not None:
            self._process.wait(timeout=10)
        self._process = self._identity = None

    def set_targets(self, targets: Sequence[str]) -> None:
        """Scrape these targets from now on (the config is rewritten and reloaded)."""
        self.targets = list(targets)
        self._write_config()
        if self.running:
            response = httpx.post(f"{self.url}/-/reload", timeout=10)
            if response.status_code != 200:
                raise PrometheusError(f"reloading the config failed: HTTP {response.status_code} {response.text}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def _config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL,
                       "scrape_timeout": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": "exporter", "static_configs": [{"targets": list(self.targets)}]},
            ],
        }
        self._config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
