"""pytest plugin: simulated pods reading their Nacos config with the official Java client, the
judge of what each pod reads (issue 20).

tests/java/nacos-consumer's ConfigReaders gives each simulated pod its own nacos-client
ConfigService: it reads each dataId of the pod's group at "startup" (getConfig), then listens
(addListener), and logs every read and change as a JSON line. By default each pod is a JVM of
its own started with `-Dcom.alibaba.nacos.client.local.ip=<the pod's IP>`: nacos-client's
local IP is JVM-wide, so that is how a pod presents its own IP to Nacos, as a real one does;
`jvm_per_pod=False` runs every pod in one JVM (cheaper; Nacos then sees one IP for all).

Fixtures:
  config_readers  factory: config_readers(endpoint, [namespace, jvm_per_pod]) -> ConfigReaders,
                  stopped after the test (logs kept in tmp_path).
Use:
  readers.add_pod("orders-abc12", "10.244.0.7", "orders.rev-0a1b2c3d4e", ["orders.yaml"])
  readers.reads(pod="orders-abc12")      every read/change, in order
  readers.holding()                      what each (pod, dataId) holds now (its last read/change)
  readers.wait_until(lambda r: ..., timeout, message)
  readers.remove_pod("orders-abc12")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.plugins.cluster import NotYet, wait_for
from tests.plugins.java_consumer import ConsumerBuild, client_environment, java_command, new_lines
from tests.plugins.nacos import NacosEndpoint

MAIN_CLASS = "apprelease.consumer.ConfigReaders"
START_TIMEOUT_SECONDS = 60.0
# A pod's startup reads (a JVM's start included when it has its own).
ADD_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
SHARED = "shared"  # the one JVM's name when jvm_per_pod=False


@dataclass(frozen=True)
class ConfigRead:
    """A pod got a config's content: at startup ("read") or from its listener ("change")."""

    at: float  # epoch seconds (this machine's clock)
    event: str  # "read" | "change"
    pod: str
    ip: str
    group: str
    data_id: str
    md5: str | None  # hex md5 of the content as Nacos reports it; None: the dataId is absent


class _Jvm:
    """One ConfigReaders process: commands on stdin, JSON lines into its log file."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "events.jsonl"
        self.stderr_path = workdir / "stderr.log"
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        with self.log_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
                                            cwd=workdir, start_new_session=True)

    def send(self, line: str) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def refresh(self) -> list[dict[str, Any]]:
        lines, self._offset = new_lines(self.log_path, self._offset)
        for line in lines:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
        return self.events

    def stderr_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.send("quit")
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_GRACE_SECONDS)
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.refresh()


class ConfigReaders:
    """Simulated pods reading config through the official Java client (see the module doc)."""

    def __init__(self, build: ConsumerBuild, workdir: Path, endpoint: NacosEndpoint, *,
                 namespace: str = "", jvm_per_pod: bool = True) -> None:
        self.build = build
        self.workdir = workdir
        self.endpoint = endpoint
        self.namespace = namespace
        self.jvm_per_pod = jvm_per_pod
        self._jvms: dict[str, _Jvm] = {}  # by pod name, or SHARED
        self._stopped: list[_Jvm] = []  # removed pods' JVMs: their events still count
        self._pod_jvm: dict[str, _Jvm] = {}

    def start(self) -> ConfigReaders:
        if not self.jvm_per_pod:
            self._jvms[SHARED] = self._launch(SHARED, ip=None)
        return self

    def add_pod(self, name: str, ip: str, group: str, data_ids: list[str], *,
                timeout: float = ADD_TIMEOUT_SECONDS) -> None:
        """Start a pod: it reads every dataId of `group`, then listens. Returns once it has."""
        assert name not in self._pod_jvm, f"pod {name} is already reading"
        assert data_ids and all(" " not in d and "," not in d for d in [name, ip, group, *data_ids])
        jvm = self._jvms[SHARED] if not self.jvm_per_pod else self._launch(name, ip=ip)
        if self.jvm_per_pod:
            self._jvms[name] = jvm
        self._pod_jvm[name] = jvm
        jvm.send(f"add {name} {ip} {group} {','.join(data_ids)}")
        self._wait_event(jvm, name, "added", timeout)

    def remove_pod(self, name: str, *, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop a pod's listeners and client (its JVM, when it has its own)."""
        jvm = self._pod_jvm.pop(name)
        jvm.send(f"remove {name}")
        self._wait_event(jvm, name, "removed", timeout)
        if self.jvm_per_pod:
            self._stopped.append(self._jvms.pop(name))
            jvm.stop()

    def pods(self) -> list[str]:
        return list(self._pod_jvm)

    def reads(self, pod: str | None = None, data_id: str | None = None) -> list[ConfigRead]:
        """Every read and change so far (removed pods' too), in time order."""
        found = [
            ConfigRead(e["at"] / 1000.0, e["event"], e["pod"], e["ip"], e["group"], e["dataId"], e["md5"])
            for jvm in [*self._stopped, *self._jvms.values()] for e in jvm.refresh()
            if e.get("event") in ("read", "change")
        ]
        return sorted((r for r in found if (pod is None or r.pod == pod) and (data_id is None or r.data_id == data_id)),
                      key=lambda r: r.at)

    def holding(self) -> dict[tuple[str, str], ConfigRead]:
        """What each running pod holds now for each dataId: its last read or change."""
        held: dict[tuple[str, str], ConfigRead] = {}
        for read in self.reads():
            if read.pod in self._pod_jvm:
                held[(read.pod, read.data_id)] = read
        return held

    def errors(self) -> list[dict[str, Any]]:
        return [e for jvm in [*self._stopped, *self._jvms.values()] for e in jvm.refresh() if e.get("event") == "error"]

    def wait_until(self, predicate: Callable[[ConfigReaders], Any], timeout: float, message: str) -> Any:
        def check() -> Any:
            result = predicate(self)
            return result if result else NotYet(self.reads()[-3:] or self.errors()[-3:])

        return wait_for(check, timeout, interval=0.1, message=message)

    def stop(self) -> None:
        for jvm in self._jvms.values():
            jvm.stop()
        self._stopped.extend(self._jvms.values())
        self._jvms.clear()
        self._pod_jvm.clear()

    # --- internals ------------------------------------------------------------------------

    def _launch(self, name: str, ip: str | None) -> _Jvm:
        options = [f"-Dcom.alibaba.nacos.client.local.ip={ip}"] if ip else []
        workdir = self.workdir / name
        command = [
            *java_command(self.build, workdir, *options), MAIN_CLASS,
            "--server-addr", self.endpoint.server_addr, "--namespace", self.namespace,
        ]
        jvm = _Jvm(command, client_environment(self.endpoint), workdir)
        self._wait_event(jvm, None, "started", START_TIMEOUT_SECONDS)
        return jvm

    def _wait_event(self, jvm: _Jvm, pod: str | None, event: str, timeout: float) -> None:
        def seen() -> bool | NotYet:
            events = jvm.refresh()
            for entry in events:
                if entry.get("event") == "error" and entry.get("pod") == pod:
                    raise AssertionError(f"pod {pod}: {entry.get('message')}")
            if any(e.get("event") == event and e.get("pod") == pod for e in events):
                return True
            if not jvm.running():
                raise AssertionError(f"the config readers' JVM exited with {jvm.process.returncode}: "
                                     f"{jvm.stderr_tail()}")
            return NotYet(jvm.stderr_tail(3))

        wait_for(seen, timeout, interval=0.05, message=f"{event} {pod or ''}".strip())


@pytest.fixture
def config_readers(java_consumer_build: ConsumerBuild, tmp_path: Path) -> Iterator[Callable[..., ConfigReaders]]:
    """Factory: config_readers(endpoint, [namespace="", jvm_per_pod=True]) -> started
    ConfigReaders; every one is stopped after the test."""
    started: list[ConfigReaders] = []

    def start(endpoint: NacosEndpoint, **options: Any) -> ConfigReaders:
        readers = ConfigReaders(java_consumer_build, tmp_path / f"config-readers-{len(started)}", endpoint, **options)
        started.append(readers)
        return readers.start()

    yield start
    for readers in started:
        readers.stop()



def nacos_listeners(endpoint: NacosEndpoint, namespace: str, group: str, data_id: str) -> dict[str, str]:
    """Who Nacos says listens to a config: client IP -> the md5 that client last reported.
    2.x: GET /v1/cs/configs/listener; 3.x: GET /v3/admin/cs/config/listener."""
    v3 = endpoint.major >= 3
    public = namespace in ("", "public")
    with httpx.Client(base_url=endpoint.base_url, timeout=10.0) as http:
        headers = {}
        if endpoint.username:
            login = http.post("/v3/auth/user/login" if v3 else "/v1/auth/login",
                              data={"username": endpoint.username, "password": endpoint.password})
            login.raise_for_status()
            headers["Authorization"] = f"Bearer {login.json()['accessToken']}"
        if v3:
            answer = http.get("/v3/admin/cs/config/listener", headers=headers, params={
                "namespaceId": "public" if public else namespace, "groupName": group, "dataId": data_id})
            answer.raise_for_status()
            return dict(answer.json()["data"]["listenersStatus"])
        answer = http.get("/v1/cs/configs/listener", headers=headers, params={
            "tenant": "" if public else namespace, "group": group, "dataId": data_id})
        answer.raise_for_status()
        return dict(answer.json()["lisentersGroupkeyStatus"])  # sic: Nacos' own spelling
