"""Build and run a real Nacos server, resolved from Maven Central, for tests and development.

Where the server comes from. Alibaba publishes only Nacos' client-side modules to Maven Central
(`com.alibaba.nacos:nacos-client`, `nacos-api`, ...); the server modules (`nacos-console`,
`nacos-core`, `nacos-naming`, `nacos-server`, `nacos-bootstrap`) are not released there at all
(maintainers in alibaba/nacos#9944, #5090, #11814: "server part module will not release to mvn
repository"). Some projects that embed Nacos rebuild the unmodified sources and publish every
module under their own groupId. We use two of them, chosen because they are the newest of
each line that Maven Central (as reachable from this machine) serves:

* 2.x: `org.jeecgframework.nacos:nacos-console` (JeecgBoot; 2.0.4, 2.2.3, 2.3.2). Its
  `com.alibaba.nacos.Nacos` main class is the 2.x server with the console.
* 3.x: `io.github.pig-mesh.nacos:nacos-server` + `nacos-console` (pig-mesh; 3.1.0-bugfix).
  3.x starts through `com.alibaba.nacos.bootstrap.NacosBootstrap`, whose `nacos-bootstrap`
  module is not published; its ~20 lines (a core context, then the server-web context and
  optionally the console context as children) are compiled here as a tiny launcher.

They are third-party builds: pass `maven_group=` to use another publisher of the same modules.

Classpath order matters: the modules pull in two Hessian jars (com.caucho 4.x and the
com.alipay.sofa 3.x fork) with clashing classes, and Nacos only starts when 4.x comes first,
as it does in the official fat jar. `dependency:build-classpath` keeps Maven's resolution
order, so that order is recorded and used; a `lib/*` glob would not keep it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from apprelease_dev.locking import file_lock
from apprelease_dev.paths import cache_root

Progress = Callable[[str], None]

ADMIN_USERNAME = "nacos"
# The password Nacos <= 2.3 ships for its built-in admin user; replaced right after start.
LEGACY_DEFAULT_PASSWORD = "nacos"

MAVEN_GROUP_BY_MAJOR = {2: "org.jeecgframework.nacos", 3: "io.github.pig-mesh.nacos"}
ARTIFACTS_BY_MAJOR = {2: ("nacos-console",), 3: ("nacos-server", "nacos-console")}
NACOS2_MAIN_CLASS = "com.alibaba.nacos.Nacos"
LAUNCHER_CLASS = "AppReleaseNacosLauncher"
# What ensure_nacos("2") / ("3") resolved, reused for a day so a test session needs no Maven run.
LATEST_RESOLUTION_MAX_AGE_SECONDS = 24 * 3600

DEFAULT_JVM_HEAP = ("-Xms256m", "-Xmx512m")
DEFAULT_START_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 20.0
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 60
# gRPC ports are main+1000 (clients) and main+1001 (cluster); JRaft opens main-1000 even in
# standalone mode. All of them bind every interface, so they are checked on 0.0.0.0.
GRPC_CLIENT_PORT_OFFSET = 1000
PORT_OFFSETS = (0, GRPC_CLIENT_PORT_OFFSET, GRPC_CLIENT_PORT_OFFSET + 1, -1000)
PORT_RANGE = (20000, 40000)

COMPLETE_MARKER = "distribution.json"
CLASSPATH_FILE = "classpath.txt"
# In a workdir: the main port its Raft data belongs to, and that data (see _keep_raft_identity).
PORT_FILE = Path("conf") / "main.port"
RAFT_DATA_DIR = Path("data") / "protocol" / "raft"

# Mirrors NacosBootstrap (3.x's unpublished nacos-bootstrap module): core context, then the
# server web context (and the console, when merged) as its children.
LAUNCHER_SOURCE = """\
import com.alibaba.nacos.NacosServerBasicApplication;
import com.alibaba.nacos.NacosServerWebApplication;
import com.alibaba.nacos.console.NacosConsole;
import com.alibaba.nacos.core.listener.startup.NacosStartUp;
import com.alibaba.nacos.core.listener.startup.NacosStartUpManager;
import com.alibaba.nacos.sys.env.DeploymentType;
import com.alibaba.nacos.sys.env.EnvUtil;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ConfigurableApplicationContext;

public final class AppReleaseNacosLauncher {
    public static void main(String[] args) {
        boolean merged = "merged".equals(System.getProperty("nacos.deployment.type", "merged"));
        EnvUtil.setDeploymentType(merged ? DeploymentType.MERGED : DeploymentType.SERVER);
        NacosStartUpManager.start(NacosStartUp.CORE_START_UP_PHASE);
        ConfigurableApplicationContext core = new SpringApplicationBuilder(
                NacosServerBasicApplication.class).web(WebApplicationType.NONE).run(args);
        NacosStartUpManager.start(NacosStartUp.WEB_START_UP_PHASE);
        new SpringApplicationBuilder(NacosServerWebApplication.class).parent(core).run(args);
        if (merged) {
            NacosStartUpManager.start(NacosStartUp.CONSOLE_START_UP_PHASE);
            new SpringApplicationBuilder(NacosConsole.class).parent(core).run(args);
        }
    }
}
"""


class NacosError(RuntimeError):
    """Resolving, building or starting the Nacos server failed."""


class NacosStartError(NacosError):
    """The server did not become healthy; the message ends with the tail of its log."""


@dataclass(frozen=True)
class NacosDistribution:
    """A resolved Nacos server: its jars in classpath order and how to start it."""

    version: str
    major: int
    maven_group: str
    home: Path
    classpath: tuple[Path, ...]
    main_class: str
    # Seconds the Maven resolution took when this call built it; None when it came from cache.
    resolve_seconds: float | None = None

    def java_classpath(self) -> str:
        return os.pathsep.join(str(entry) for entry in self.classpath)


@dataclass
class NacosServer:
    """A running Nacos server started by start_nacos(); stop() (or `with`) ends the JVM."""

    version: str
    major: int
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    pid: int
    log_path: Path
    workdir: Path
    start_seconds: float
    console_url: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def server_addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/nacos"

    @property
    def grpc_port(self) -> int:
        return self.port + GRPC_CLIENT_PORT_OFFSET

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Terminate the JVM's process group, escalate to SIGKILL after the grace period, and
        wait for it; calling it again is harmless."""
        process = self._process
        if process is None:
            return
        _stop_process_group(process, grace_seconds)
        self._process = None

    def __enter__(self) -> NacosServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Resolution and build


def nacos_home(version: str) -> Path:
    return cache_root() / "nacos" / version


def ensure_nacos(
    version: str = "2",
    *,
    maven_group: str | None = None,
    progress: Progress = print,
) -> NacosDistribution:
    """Return the Nacos distribution for `version`, resolving it with Maven if not cached.

    `version` is an exact version ("2.3.2", "3.1.0-bugfix") or a major line ("2", "3"), which
    means the newest release of that line Maven Central has for the publisher. Jars are copied
    to `<cache>/nacos/<version>/lib` by `mvn dependency:copy-dependencies` run on a generated
    pom, so the machine's Maven settings (mirrors, proxies, local repository) apply.
    """
    if version.isdigit():
        version = resolve_latest_version(int(version), maven_group=maven_group, progress=progress)
    major = _major_of(version)
    group = maven_group or MAVEN_GROUP_BY_MAJOR[major]
    home = nacos_home(version)
    cached = _load_distribution(home, version, group)
    if cached is not None:
        return cached
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        cached = _load_distribution(home, version, group)
        if cached is not None:  # built by another process while we waited
            return cached
        return _build_distribution(home, version, major, group, progress)


def resolve_latest_version(
    major: int, *, maven_group: str | None = None, progress: Progress = print
) -> str:
    """Newest version of the `major` line on Maven Central, via a Maven version range."""
    group = maven_group or MAVEN_GROUP_BY_MAJOR.get(major)
    if group is None:
        raise NacosError(f"no Maven publisher of Nacos {major}.x server modules is known")
    record = cache_root() / "nacos" / f"latest-{major}-{group}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        remembered = json.loads(record.read_text())
        if time.time() - float(remembered["resolved_at"]) < LATEST_RESOLUTION_MAX_AGE_SECONDS:
            return str(remembered["version"])
    artifact = ARTIFACTS_BY_MAJOR[major][0]
    # "[2,3-alpha)" keeps 3.0.0-ALPHA/BETA out of the 2.x line (Maven orders them below 3).
    version_range = f"[{major},{major + 1}-alpha)"
    progress(f"Resolving the newest {group}:{artifact} in {version_range} with Maven")
    work = cache_root() / "nacos" / f"resolve-{major}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_pom([(group, artifact, version_range)], packaging="pom"))
    listing = work / "resolved.txt"
    listing.unlink(missing_ok=True)
    _run_maven(
        work,
        ["dependency:list", "-DexcludeTransitive=true", f"-DoutputFile={listing}"],
        step=f"resolving the newest Nacos {major}.x",
    )
    prefix = f"{group}:{artifact}:jar:"
    for line in listing.read_text().splitlines():
        entry = line.strip()
        if entry.startswith(prefix):
            version = entry[len(prefix) :].split(":")[0]
            record.write_text(json.dumps({"version": version, "resolved_at": time.time()}))
            return version
    raise NacosError(f"Maven resolved no {group}:{artifact} in {version_range}")


def _major_of(version: str) -> int:
    head = version.split(".", 1)[0]
    if not head.isdigit() or int(head) not in MAVEN_GROUP_BY_MAJOR:
        raise NacosError(f"unsupported Nacos version {version!r}: only 2.x and 3.x are supported")
    return int(head)


def _build_distribution(
    home: Path, version: str, major: int, group: str, progress: Progress
) -> NacosDistribution:
    progress(f"Resolving Nacos {version} ({group}) with Maven into {home}")
    started = time.monotonic()
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    coordinates = [(group, artifact, version) for artifact in ARTIFACTS_BY_MAJOR[major]]
    (home / "pom.xml").write_text(_pom(coordinates, packaging="pom"))
    _run_maven(
        home,
        [
            "dependency:copy-dependencies",
            "dependency:build-classpath",
            f"-DoutputDirectory={lib}",
            f"-Dmdep.outputFile={home / CLASSPATH_FILE}",
            # Relative entries keep the cache relocatable; they are resolved against `home`.
            "-Dmdep.prefix=lib",
            "-Dmdep.includeScope=runtime",
        ],
        step=f"resolving Nacos {version}",
    )
    main_class = NACOS2_MAIN_CLASS
    if major >= 3:
        progress("Compiling the Nacos 3 launcher (nacos-bootstrap is not published)")
        _compile_launcher(home)
        main_class = LAUNCHER_CLASS
    seconds = time.monotonic() - started
    marker = {"version": version, "major": major, "maven_group": group, "main_class": main_class}
    (home / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    distribution = _load_distribution(home, version, group)
    if distribution is None:
        raise NacosError(f"the Nacos {version} build in {home} is incomplete")
    progress(f"Nacos {version} ready in {seconds:.1f} s: {len(distribution.classpath)} jars")
    return dataclasses.replace(distribution, resolve_seconds=seconds)


def _load_distribution(home: Path, version: str, group: str) -> NacosDistribution | None:
    try:
        marker = json.loads((home / COMPLETE_MARKER).read_text())
        entries = (home / CLASSPATH_FILE).read_text().strip().split(os.pathsep)
    except (OSError, ValueError):
        return None
    if marker.get("maven_group") != group:
        return None
    classpath = [home / entry for entry in entries if entry]
    if marker["main_class"] == LAUNCHER_CLASS:
        classpath.insert(0, home / "launcher")
    if not classpath or not all(entry.exists() for entry in classpath):
        return None
    return NacosDistribution(
        version=version,
        major=int(marker["major"]),
        maven_group=group,
        home=home,
        classpath=tuple(classpath),
        main_class=str(marker["main_class"]),
    )


def _pom(coordinates: list[tuple[str, str, str]], *, packaging: str) -> str:
    dependencies = "\n".join(
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>"
        for group, artifact, version in coordinates
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by apprelease_dev.nacos: resolves a Nacos server with the machine's Maven. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>apprelease.local</groupId>
  <artifactId>nacos-server-resolver</artifactId>
  <version>1</version>
  <packaging>{packaging}</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


def _run_maven(workdir: Path, goals: list[str], *, step: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NacosError(f"{step}: Maven (`mvn`) is not on PATH")
    command = [mvn, "-B", "-q", "-f", str(workdir / "pom.xml"), *goals]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise NacosError(f"{step}: mvn exited {result.returncode}:\n" + "\n".join(output[-30:]))


def _compile_launcher(home: Path) -> None:
    javac = _java_tool("javac")
    source_dir = home / "launcher-src"
    classes = home / "launcher"
    shutil.rmtree(classes, ignore_errors=True)
    source_dir.mkdir(exist_ok=True)
    classes.mkdir()
    source = source_dir / f"{LAUNCHER_CLASS}.java"
    source.write_text(LAUNCHER_SOURCE)
    entries = (home / CLASSPATH_FILE).read_text().strip().split(os.pathsep)
    classpath = os.pathsep.join(str(home / entry) for entry in entries)
    command = [javac, "-nowarn", "-d", str(classes), "-cp", classpath, str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NacosError(f"compiling the Nacos launcher failed:\n{result.stderr[-3000:]}")


def _java_tool(name: str) -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / name, os.X_OK):
        return str(Path(java_home) / "bin" / name)
    found = shutil.which(name)
    if found is None:
        raise NacosError(f"`{name}` not found (set JAVA_HOME or put a JDK 17+ on PATH)")
    return found


# ---------------------------------------------------------------------------------------------
# Start and stop


def start_nacos(
    distribution: NacosDistribution,
    workdir: Path,
    *,
    password: str | None = None,
    with_console: bool = False,
    timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
    jvm_options: tuple[str, ...] = DEFAULT_JVM_HEAP,
    progress: Progress = print,
    port: int | None = None,
) -> NacosServer:
    """Start a standalone Nacos (embedded Derby, auth on) on 127.0.0.1 and wait until it serves.

    Everything it writes (conf/, data/, logs/, nacos.out.log) goes under `workdir`; a reused
    workdir keeps its data. The admin user is `nacos` with `password` (if None: the one
    remembered in the workdir's conf/admin.password, else a random one). `port` pins the main
    port; without it a reused workdir restarts on the port it had, which its Raft data needs
    (see _keep_raft_identity), or else on free ports with that data reset. Secrets go into conf/
    (mode 0600), not onto the command line. `with_console` also starts the 3.x console on its own port.
    Raises NacosStartError, with the tail of the log, if it is not healthy within the timeout.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "conf" / "admin.password"
    if password is None and password_file.exists():  # a reused workdir keeps its database
        password = password_file.read_text().strip() or None
    password = password or secrets.token_urlsafe(18)
    last_error: NacosStartError | None = None
    for _attempt in range(3):  # ports are probed before the JVM binds them: retry a lost race
        try:
            return _start_once(
                distribution,
                workdir,
                password,
                with_console,
                timeout_seconds,
                jvm_options,
                progress,
                port,
            )
        except NacosStartError as error:
            if port is not None or "Address already in use" not in str(error):
                raise
            last_error = error
            progress("A Nacos port was taken meanwhile; retrying on other ports")
    assert last_error is not None
    raise last_error


def _start_once(
    distribution: NacosDistribution,
    workdir: Path,
    password: str,
    with_console: bool,
    timeout_seconds: float,
    jvm_options: tuple[str, ...],
    progress: Progress,
    port: int | None = None,
) -> NacosServer:
    host = "127.0.0.1"
    port = port or _previous_port_if_free(workdir) or _free_main_port()
    _keep_raft_identity(workdir, port, progress)
    console_port = _free_port() if with_console and distribution.major >= 3 else None
    secret_values = _write_configuration(workdir, port, console_port, distribution.major)
    log_path = workdir / "nacos.out.log"
    command = [
        _java_tool("java"),
        *jvm_options,
        "-XX:+UseSerialGC",  # fewest GC threads: the machine has two cores
        "-Dnacos.standalone=true",
        f"-Dnacos.home={workdir}",
        "-Dnacos.inetutils.ip-address=127.0.0.1",
        f"-Dnacos.deployment.type={'merged' if console_port else 'server'}",
        "-Dfile.encoding=UTF-8",
        "-cp",
        distribution.java_classpath(),
        distribution.main_class,
        f"--spring.config.additional-location=file:{workdir / 'conf'}/",
    ]
    progress(f"Starting Nacos {distribution.version} on {host}:{port} (logs: {log_path})")
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() takes all of it, Ctrl-C does not
            preexec_fn=_die_with_parent,
        )
    server = NacosServer(
        version=distribution.version,
        major=distribution.major,
        host=host,
        port=port,
        username=ADMIN_USERNAME,
        password=password,
        pid=process.pid,
        log_path=log_path,
        workdir=workdir,
        start_seconds=0.0,
        console_url=f"http://{host}:{console_port}" if console_port else None,
        _process=process,
    )
    redact = (*secret_values, password)
    try:
        deadline = started + timeout_seconds
        _wait_until_ready(server, process, deadline)
        _set_admin_password(server, deadline)
    except NacosStartError as error:
        server.stop()
        tail = _log_tail(server, redact)
        raise NacosStartError(f"{error}\n--- tail of {log_path} ---\n{tail}") from None
    server.start_seconds = time.monotonic() - started
    (workdir / PORT_FILE).write_text(f"{port}\n")
    progress(
        f"Nacos {distribution.version} ready at {server.base_url} in {server.start_seconds:.1f} s"
    )
    return server


def _previous_port_if_free(workdir: Path) -> int | None:
    """The main port this workdir's server last ran on, if it and its companions are free."""
    try:
        previous = int((workdir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if all(_port_is_free(previous + offset) for offset in PORT_OFFSETS):
        return previous
    return None


def _keep_raft_identity(workdir: Path, port: int, progress: Progress) -> None:
    """Drop the workdir's JRaft data when the server is about to start on another port.

    Even standalone, Nacos 2.x/3.x keep CP data (instance enabled/weight overrides, service
    metadata, persistent instances) in JRaft groups whose only peer is 127.0.0.1:<port - 1000>,
    written into the Raft log. Restarted on another port, the node is not in the configuration
    its log holds, so no group ever elects a leader: registration (AP, over gRPC) still works,
    but every override write fails with HTTP 500 "The Raft Group [naming_instance_metadata]
    did not find the Leader node" (seen after `apprelease dev down` + `dev up --nacos`,
    which used to pick a new random port). Same port: the data is kept.
    """
    raft_data = workdir / RAFT_DATA_DIR
    try:
        previous = int((workdir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        previous = None
    if previous == port or not raft_data.exists():
        return
    progress(
        f"Nacos moves from port {previous or 'unknown'} to {port}: resetting its Raft data "
        "(overrides, service metadata, persistent instances), which cannot follow the port"
    )
    shutil.rmtree(raft_data)


def _write_configuration(
    workdir: Path, port: int, console_port: int | None, major: int
) -> tuple[str, ...]:
    """Write conf/application.properties; returns the secrets in it (to redact from logs)."""
    token_key = base64.b64encode(secrets.token_bytes(48)).decode()  # >= 32 bytes for HS384
    identity_value = secrets.token_urlsafe(24)
    lines = [
        "server.address=127.0.0.1",
        "server.error.include-message=ALWAYS",
        "nacos.core.auth.system.type=nacos",
        "nacos.core.auth.enabled=true",
        "nacos.core.auth.admin.enabled=true",
        "nacos.core.auth.console.enabled=true",
        # Uncached users: a password change and the admin's first login work at once.
        "nacos.core.auth.caching.enabled=false",
        f"nacos.core.auth.plugin.nacos.token.secret.key={token_key}",
        "nacos.core.auth.server.identity.key=apprelease-dev",
        f"nacos.core.auth.server.identity.value={identity_value}",
        "nacos.istio.mcp.server.enabled=false",
        "nacos.k8s.sync.enabled=false",
        # The embedded Derby's first connection boots and creates the database; Nacos' pool
        # gives it 3 s, which a busy 2-core machine overruns (exit: "Login timeout exceeded").
        "db.pool.config.connectionTimeout=60000",
        # Its own logs (JRaft's among them) in the workdir, not ~/nacos/logs shared by all.
        f"nacos.logs.path={workdir / 'logs'}",
    ]
    if major >= 3:
        lines += [f"nacos.server.main.port={port}", "nacos.server.contextPath=/nacos"]
        if console_port:
            lines += [f"nacos.console.port={console_port}", "nacos.console.contextPath="]
    else:
        lines += [f"server.port={port}", "server.servlet.contextPath=/nacos"]
    conf = workdir / "conf"
    conf.mkdir(exist_ok=True)
    path = conf / "application.properties"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")
    return token_key, identity_value


def _wait_until_ready(
    server: NacosServer, process: subprocess.Popen[bytes], deadline: float
) -> None:
    path = "/v3/admin/core/state/readiness" if server.major >= 3 else "/v1/console/health/readiness"
    urls = [server.base_url + path]
    if server.console_url:  # the console context starts after the server's
        urls.append(server.console_url + "/v3/console/health/readiness")
    with httpx.Client(timeout=2.0) as http:
        for url in urls:
            _wait_for_200(http, url, process, deadline)


def _wait_for_200(
    http: httpx.Client, url: str, process: subprocess.Popen[bytes], deadline: float
) -> None:
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NacosStartError(f"Nacos exited with code {process.returncode} while starting")
        try:
            response = http.get(url)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as error:
            last = type(error).__name__
        time.sleep(POLL_SECONDS)
    raise NacosStartError(f"Nacos was not ready at {url} in time (last: {last})")


def _set_admin_password(server: NacosServer, deadline: float) -> None:
    """Give the admin user our password, whichever way this Nacos version wants it.

    3.x and 2.4+ create no default user: the first POST of .../auth/user(s)/admin creates
    `nacos` with the given password (409 once it exists). 2.3 and older answer 404 there and
    ship `nacos`/`nacos` (inserted by derby-schema.sql). When the admin exists with another
    password (2.3's default, or a reused workdir's previous one), log in with that and change it.
    """
    v3 = server.major >= 3
    password_file = server.workdir / "conf" / "admin.password"
    previous = password_file.read_text().strip() if password_file.exists() else None
    admin_path = "/v3/auth/user/admin" if v3 else "/v1/auth/users/admin"
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        answer = _post_until_answered(http, admin_path, {"password": server.password}, deadline)
        # "Admin exists" is HTTP 409, or HTTP 200 with {"code": 409} in the body (3.x).
        outcome = _result_code(answer) if answer.status_code == 200 else answer.status_code
        if outcome not in (0, 404, 409):
            raise NacosStartError(f"initialising the admin user failed (status {outcome})")
        if outcome != 0 and _admin_token(http, server, server.password) is None:
            old_token = None
            for old in (previous, LEGACY_DEFAULT_PASSWORD):
                old_token = _admin_token(http, server, old) if old else None
                if old_token:
                    break
            if old_token is None:
                raise NacosStartError(
                    "the admin user exists with an unknown password (a workdir from another "
                    "run without its conf/admin.password?): use a fresh workdir"
                )
            change = http.put(
                "/v3/auth/user" if v3 else "/v1/auth/users",
                params={"username": ADMIN_USERNAME, "newPassword": server.password},
                headers={"Authorization": f"Bearer {old_token}"},
            )
            if change.status_code != 200:
                raise NacosStartError(
                    f"changing the admin password failed (HTTP {change.status_code})"
                )
        if _admin_token(http, server, server.password) is None:
            raise NacosStartError("the admin cannot log in with the new password")
    # The workdir's database now holds this password: remember it for a later start there.
    password_file.touch(mode=0o600)
    password_file.write_text(server.password + "\n")


def _result_code(response: httpx.Response) -> int:
    """The `code` of a `{"code": ..., "data": ...}` answer (0 = success), 0 if there is none."""
    try:
        body = response.json()
    except ValueError:
        return 0
    code = body.get("code", 0) if isinstance(body, dict) else 0
    return code if isinstance(code, int) else 0


def _admin_token(http: httpx.Client, server: NacosServer, password: str) -> str | None:
    """The admin's access token, or None if that password is refused (2.x: 403, 3.x: 500)."""
    path = "/v3/auth/user/login" if server.major >= 3 else "/v1/auth/login"
    try:
        response = http.post(path, data={"username": ADMIN_USERNAME, "password": password})
    except httpx.TransportError as error:
        raise NacosStartError(f"logging in to Nacos failed: {type(error).__name__}") from None
    if response.status_code != 200:
        return None
    return str(response.json()["accessToken"])


def _post_until_answered(
    http: httpx.Client, path: str, form: dict[str, str], deadline: float
) -> httpx.Response:
    """POST, retrying while the server is still wiring up (connection errors, 5xx)."""
    while True:
        try:
            response = http.post(path, data=form)
            if response.status_code < 500 or time.monotonic() >= deadline:
                return response
        except httpx.TransportError as error:
            if time.monotonic() >= deadline:
                raise NacosStartError(f"POST {path} failed: {type(error).__name__}") from None
        time.sleep(POLL_SECONDS)


def _log_tail(server: NacosServer, redact: tuple[str, ...]) -> str:
    text = ""
    with contextlib.suppress(OSError):
        lines = server.log_path.read_text(errors="replace").splitlines()
        text = "\n".join(lines[-LOG_TAIL_LINES:])
    for secret in redact:
        text = text.replace(secret, "***")
    return text or "(empty)"


def _free_main_port() -> int:
    """A main port whose gRPC (+1000, +1001) and Raft (-1000) companions are free as well."""
    low, high = PORT_RANGE
    for _ in range(200):
        port = low + secrets.randbelow(high - low)
        if all(_port_is_free(port + offset) for offset in PORT_OFFSETS):
            return port
    raise NacosError(f"no free Nacos port set found in {low}-{high}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM's servers bind: connections of a stopped server's clients lingering in
        # TIME_WAIT do not keep its ports from being reused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM the JVM if the process that started it dies, so a
    killed test run leaves no server behind (Linux only; elsewhere stop() is the only way)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_process_group(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_seconds)
    # Anything the JVM forked into its group goes too (the group id is the JVM's pid).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Command line: python -m apprelease_dev.nacos --version 3 --workdir /tmp/nacos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Nacos server until Ctrl-C.")
    parser.add_argument("--version", default="2", help='"2", "3" or an exact version')
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--console", action="store_true", help="3.x: also start the console")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as cleanly as Ctrl-C
    distribution = ensure_nacos(args.version)
    with start_nacos(distribution, args.workdir, with_console=args.console) as server:
        print(f"Nacos {server.version}: {server.base_url} (gRPC port {server.grpc_port})", flush=True)
        if server.console_url:
            print(f"Console: {server.console_url}")
        # The password stays in its 0600 file: this output may end up in a log.
        print(f"User {server.username}, password in {args.workdir / 'conf' / 'admin.password'};"
              " Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.is_running():
                time.sleep(1)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
