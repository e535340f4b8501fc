"""pytest plugin: a real Nacos Java client as the consumer of a service, and its picks.

tests/java/nacos-consumer is a small program on `com.alibaba.nacos:nacos-client` (what Spring
Cloud Alibaba apps use) that subscribes to one service and calls selectOneHealthyInstance
every few milliseconds, logging each pick with its epoch milliseconds. Maven builds it once
per client version and source into ~/.cache/apprelease/java/nacos-consumer-<version>-<hash>/
(jar + dependency jars + classpath); later runs start `java` straight away, no Maven.

Fixtures:
  java_consumer  factory: java_consumer(endpoint, service_name=..., ...) -> a started
                 JavaConsumer, stopped after the test (its log kept in tmp_path).
Helpers:
  ensure_consumer_build(version)  build (or find) the consumer.
  ConsumerLog / Pick              the log parsed into picks, with the queries tests assert on.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.cluster import NotYet, wait_for
from tests.plugins.nacos import NacosEndpoint

NACOS_CLIENT_VERSION_ENV = "APPRELEASE_TEST_NACOS_CLIENT_VERSION"
# The newest 2.x client Maven resolves here; 2.x clients speak to 2.x and 3.x servers.
DEFAULT_NACOS_CLIENT_VERSION = "2.5.1"
SOURCE_DIR = Path(__file__).resolve().parents[1] / "java" / "nacos-consumer"
MAIN_CLASS = "apprelease.consumer.NacosConsumer"
COMPLETE_MARKER = "build.json"
DEFAULT_INTERVAL_MS = 3
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0


class ConsumerBuildError(RuntimeError):
    """Maven could not build the consumer."""


# --- build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerBuild:
    home: Path
    classpath: tuple[Path, ...]
    build_seconds: float | None  # None when it came from the cache


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in SOURCE_DIR.rglob("*") if p.is_file() and "target" not in p.parts):
        digest.update(str(path.relative_to(SOURCE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _load_build(home: Path) -> ConsumerBuild | None:
    try:
        marker = json.loads((home / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    classpath = tuple(home / entry for entry in marker["classpath"])
    if not classpath or not all(entry.exists() for entry in classpath):
        return None
    return ConsumerBuild(home, classpath, None)


def ensure_consumer_build(version: str | None = None) -> ConsumerBuild:
    """The consumer built against nacos-client `version`, from the cache or built now."""
    from apprelease_dev.locking import file_lock  # not when unit tests load this module
    from apprelease_dev.paths import cache_root

    version = version or os.environ.get(NACOS_CLIENT_VERSION_ENV) or DEFAULT_NACOS_CLIENT_VERSION
    home = cache_root() / "java" / f"nacos-consumer-{version}-{_source_digest()}"
    cached = _load_build(home)
    if cached is not None:
        return cached
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        cached = _load_build(home)
        if cached is not None:
            return cached
        return _build(home, version)


def _build(home: Path, version: str) -> ConsumerBuild:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConsumerBuildError("Maven (`mvn`) is not on PATH")
    started = time.monotonic()
    work = home / "src"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SOURCE_DIR, work, ignore=shutil.ignore_patterns("target"))
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(work / "pom.xml"),
        f"-Dnacos.client.version={version}",
        "package", "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise ConsumerBuildError(f"mvn exited {result.returncode}:\n" + "\n".join(output[-30:]))
    shutil.copy2(work / "target" / "nacos-consumer.jar", home / "nacos-consumer.jar")
    entries = ["nacos-consumer.jar", *sorted(f"lib/{jar.name}" for jar in lib.glob("*.jar"))]
    marker = {"nacos_client_version": version, "classpath": entries}
    (home / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    build = _load_build(home)
    if build is None:
        raise ConsumerBuildError(f"the consumer build in {home} is incomplete")
    return ConsumerBuild(home, build.classpath, time.monotonic() - started)


# --- the log ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """One selectOneHealthyInstance call: `instance` is "ip:port", None when nothing to pick."""

    at: float  # epoch seconds (the consumer's clock: this machine's)
    instance: str | None
    track: str | None = None
    revision: str | None = None
    reason: str | None = None  # why nothing was picked

    @property
    def ip(self) -> str | None:
        return self.instance.rsplit(":", 1)[0] if self.instance else None


@dataclass(frozen=True)
class Push:
    """A push from Nacos as the client's listener saw it: the instances it listed."""

    at: float
    instances: tuple[str, ...]  # "ip:port"
    detail: tuple[str, ...] = field(default=(), compare=False)  # ip:port:weight:healthy:enabled


def _metadata(value: str) -> str | None:
    return None if value == "-" else value


def parse_line(line: str) -> Pick | Push | None:
    parts = line.rstrip("\n").split(" ")
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    at, kind = int(parts[0]) / 1000.0, parts[1]
    if kind == "pick" and len(parts) >= 5:
        return Pick(at, parts[2], _metadata(parts[3]), _metadata(parts[4]))
    if kind == "none":
        return Pick(at, None, reason=" ".join(parts[2:]))
    if kind == "push" and len(parts) >= 3:
        detail = tuple(parts[3].split(",")) if len(parts) > 3 and parts[3] else ()
        return Push(at, tuple(d.rsplit(":", 3)[0] for d in detail), detail)
    return None


class ConsumerLog:
    """The consumer's log, parsed (re-read on each refresh(): the consumer keeps appending)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.picks: list[Pick] = []
        self.pushes: list[Push] = []
        self._offset = 0

    def refresh(self) -> ConsumerLog:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            self._offset += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                entry = parse_line(line)
                if isinstance(entry, Pick):
                    self.picks.append(entry)
                elif isinstance(entry, Push):
                    self.pushes.append(entry)
        return self

    # --- queries (times are epoch seconds, as time.time()) ---------------------------------

    def between(self, start: float | None = None, end: float | None = None) -> list[Pick]:
        low, high = start if start is not None else float("-inf"), end if end is not None else float("inf")
        return [p for p in self.picks if low <= p.at <= high]

    def by_instance(self, start: float | None = None, end: float | None = None) -> Counter[str]:
        """Picks per "ip:port" in the window."""
        return Counter(p.instance for p in self.between(start, end) if p.instance)

    def first_pick(self, ip: str) -> float | None:
        return next((p.at for p in self.picks if p.ip == ip), None)

    def last_pick(self, ip: str) -> float | None:
        return next((p.at for p in reversed(self.picks) if p.ip == ip), None)

    def first_pick_after(self, ip: str, since: float) -> float | None:
        return next((p.at for p in self.picks if p.ip == ip and p.at >= since), None)

    def first_and_last_by_ip(self) -> dict[str, tuple[float, float]]:
        spans: dict[str, tuple[float, float]] = {}
        for pick in self.picks:
            if pick.ip:
                first = spans.get(pick.ip, (pick.at, pick.at))[0]
                spans[pick.ip] = (first, pick.at)
        return spans

    def unavailable(self, start: float | None = None, end: float | None = None) -> list[Pick]:
        return [p for p in self.between(start, end) if p.instance is None]

    def longest_unavailable(self, start: float | None = None, end: float | None = None) -> float:
        """Seconds of the longest run of "no instance" answers in the window: from its first
        failed pick to the next successful one (or its last failed one, if none followed)."""
        longest, run_start, previous = 0.0, None, None
        for pick in self.between(start, end):
            if pick.instance is None and run_start is None:
                run_start = pick.at
            elif pick.instance is not None and run_start is not None:
                longest, run_start = max(longest, pick.at - run_start), None
            previous = pick
        if run_start is not None and previous is not None:
            longest = max(longest, previous.at - run_start)
        return longest

    def longest_silence(self, start: float | None = None, end: float | None = None) -> float:
        """Longest gap between two log lines in the window (a stalled consumer picks nothing)."""
        times = [p.at for p in self.between(start, end)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def share(self, track: str, start: float | None = None, end: float | None = None) -> float:
        """Fraction of the window's successful picks that went to instances of `track`."""
        picked = [p for p in self.between(start, end) if p.instance]
        return sum(1 for p in picked if p.track == track) / len(picked) if picked else 0.0

    def share_of(self, instances: set[str], start: float | None = None, end: float | None = None) -> float:
        """Fraction of the window's successful picks that went to the given "ip:port"s."""
        picked = [p for p in self.between(start, end) if p.instance]
        return sum(1 for p in picked if p.instance in instances) / len(picked) if picked else 0.0


# --- the process -----------------------------------------------------------------------------


class JavaConsumer:
    """One running consumer JVM; its stdout is the log."""

    def __init__(self, build: ConsumerBuild, workdir: Path) -> None:
        self.build = build
        self.workdir = workdir
        self.log_path = workdir / "picks.log"
        self.stderr_path = workdir / "stderr.log"
        self.log = ConsumerLog(self.log_path)
        self.start_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    def start(
        self,
        endpoint: NacosEndpoint,
        *,
        service_name: str,
        namespace: str = "public",
        group: str = "DEFAULT_GROUP",
        interval_ms: int = DEFAULT_INTERVAL_MS,
        server_addr: str | None = None,
    ) -> JavaConsumer:
        java_home = os.environ.get("JAVA_HOME")
        java = shutil.which("java", path=str(Path(java_home) / "bin")) if java_home else None
        java = java or shutil.which("java")
        if java is None:
            raise ConsumerBuildError("`java` not found (set JAVA_HOME or put a JDK 17+ on PATH)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_")}
        if endpoint.username:
            env["NACOS_USERNAME"] = endpoint.username
            env["NACOS_PASSWORD"] = endpoint.password or ""
        command = [
            java,
            "-XX:+UseSerialGC", "-Xmx128m", "-XX:TieredStopAtLevel=1",  # small and quick to start
            # The client's own logs and service cache go to the workdir, not ~/logs, ~/nacos.
            f"-DJM.LOG.PATH={self.workdir / 'client-logs'}",
            f"-DJM.SNAPSHOT.PATH={self.workdir / 'client-cache'}",
            "-cp", os.pathsep.join(str(entry) for entry in self.build.classpath),
            MAIN_CLASS,
            "--server-addr", server_addr or endpoint.server_addr,
            "--namespace", namespace,
            "--group", group,
            "--service", service_name,
            "--interval-ms", str(interval_ms),
        ]
        started = time.monotonic()
        with self.log_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                cwd=self.workdir, start_new_session=True,
            )
        wait_for(self._started, START_TIMEOUT_SECONDS, interval=0.1, message="the Java consumer to start")
        self.start_seconds = time.monotonic() - started
        return self

    def _started(self) -> bool | NotYet:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"the Java consumer exited with {self._process.returncode}: {self.stderr_tail()}"
            )
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return True if " started" in text else NotYet(self.stderr_tail())

    def stderr_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def picks(self) -> ConsumerLog:
        """The log as far as the consumer has written it."""
        return self.log.refresh()

    def wait_for_picks(
        self, predicate: Callable[[ConsumerLog], Any], timeout: float, message: str
    ) -> ConsumerLog:
        def check() -> ConsumerLog | NotYet:
            log = self.picks()
            return log if predicate(log) else NotYet(log.picks[-1:] if log.picks else self.stderr_tail())

        result: ConsumerLog = wait_for(check, timeout, interval=0.1, message=message)
        return result

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_SECONDS)
        self.log.refresh()


@pytest.fixture(scope="session")
def java_consumer_build() -> ConsumerBuild:
    try:
        return ensure_consumer_build()
    except (ConsumerBuildError, OSError) as error:
        pytest.fail(f"could not build the Java Nacos consumer: {error}", pytrace=False)


@pytest.fixture
def java_consumer(
    java_consumer_build: ConsumerBuild, tmp_path: Path
) -> Iterator[Callable[..., JavaConsumer]]:
    """Factory: java_consumer(endpoint, service_name=..., [namespace, group, interval_ms,
    server_addr]) -> a started consumer; every one is stopped after the test."""
    started: list[JavaConsumer] = []

    def start(endpoint: NacosEndpoint, **options: Any) -> JavaConsumer:
        consumer = JavaConsumer(java_consumer_build, tmp_path / f"java-consumer-{len(started)}")
        started.append(consumer)
        return consumer.start(endpoint, **options)

    yield start
    for consumer in started:
        consumer.stop()
