"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (fake nodes and pod lifecycles), all on 127.0.0.1; with the add-ons
also metrics-server over KWOK's simulated resource usage (metrics.k8s.io, so the
HPA controller works) and the Gateway API CRDs.

Processes are detached (own sessions) and recorded in a state file, so one command can
start the cluster and another, later, can inspect or stop it.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from apprelease_dev import addons
from apprelease_dev import components as c
from apprelease_dev.build import ensure_binaries
from apprelease_dev.certs import ClusterPki, ensure_pki
from apprelease_dev.fake_nodes import node_manifest, node_name
from apprelease_dev.go_runner import BuildError, download_modules
from apprelease_dev.kubeconfig import write_kubeconfig
from apprelease_dev.kwok_logs import write_logs_config
from apprelease_dev.kwok_metrics import write_metrics_config
from apprelease_dev.kwok_stages import write_stages_config
from apprelease_dev.paths import default_state_dir
from apprelease_dev.probes import AdminClient, ApiRequestError, etcd_healthy, http_ok
from apprelease_dev.processes import (
    DEFAULT_STOP_GRACE_SECONDS,
    free_ports,
    is_running,
    start_detached,
    stop_groups,
)
from apprelease_dev.state import ClusterState, ComponentState, load_state, remove_state, save_state

Progress = Callable[[str], None]

DEFAULT_NODES = 3
DEFAULT_START_TIMEOUT_SECONDS = 180.0
LOG_TAIL_LINES = 40
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
POLL_SECONDS = 0.25
# Which client identity each component's kubeconfig uses (see certs.CLIENT_IDENTITIES).
COMPONENT_CLIENTS = {
    c.CONTROLLER_MANAGER: "kube-controller-manager",
    c.SCHEDULER: "kube-scheduler",
    c.KWOK: "kwok",
    c.METRICS_SERVER: "metrics-server",
}


class ClusterError(RuntimeError):
    pass


class ClusterStartError(ClusterError):
    """A component did not come up; the message names it and ends with its log's tail."""

    def __init__(self, component: str, reason: str, log_tail: str) -> None:
        super().__init__(
            f"{component}: {reason}\n--- last lines of {component}'s log ---\n{log_tail}"
        )
        self.component = component
        self.reason = reason
        self.log_tail = log_tail


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    port: int | None
    running: bool
    healthy: bool
    log: str


def tail_of(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", errors="replace") as handle:
            return "".join(collections.deque(handle, maxlen=lines)).rstrip() or "(log is empty)"
    except FileNotFoundError:
        return f"(no log at {path})"


class LocalCluster:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        nodes: int = DEFAULT_NODES,
        bin_dir: Path | None = None,
        audit_policy: dict[str, Any] | None = None,
        with_addons: bool = False,
    ) -> None:
        """`audit_policy` (opt-in, e.g. components.metadata_audit_policy()): the apiserver
        writes an audit log to `audit_log`. `with_addons` (opt-in; `dev up`, `dev run` and the
        tests' cluster turn it on, benchmarks leave it off): metrics-server over KWOK's
        simulated resource metrics, and the Gateway API CRDs (see addons.py)."""
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self.layout = c.Layout(self.state_dir)
        self.nodes = nodes
        self._bin_dir = bin_dir
        self.audit_policy = audit_policy
        self.with_addons = with_addons
        # Our own children (when started from this process), kept so they can be reaped.
        self._children: list[subprocess.Popen[bytes]] = []

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs_dir

    @property
    def audit_log(self) -> Path:
        return self.layout.audit_log

    @property
    def pod_log(self) -> Path:
        """The file KWOK serves as every simulated container's log (kwok_logs.append_pod_log)."""
        return self.layout.pod_log

    def state(self) -> ClusterState | None:
        return load_state(self.state_dir)

    def log_tail(self, component: str, lines: int = LOG_TAIL_LINES) -> str:
        return tail_of(self.layout.log(component), lines)

    def is_running(self) -> bool:
        state = self.state()
        return state is not None and any(
            is_running(comp.identity) for comp in state.components.values()
        )

    # --- start -------------------------------------------------------------------------

    def up(
        self,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_START_TIMEOUT_SECONDS,
        progress: Progress = print,
    ) -> ClusterState:
        """Start every component; with `wait`, return only once the cluster is usable."""
        if self.is_running():
            raise ClusterError(
                f"a cluster is already running from {self.state_dir} (run `down` first)"
            )
        if self.state() is not None:
            # Left by a cluster that died without `down` (`down --keep-data` removes the state
            # file): its etcd data may be mid-write, so start from scratch.
            progress(
                f"Removing leftovers of a cluster that stopped without `down` in {self.state_dir}"
            )
            remove_state(self.state_dir)
            shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        bin_dir = self._bin_dir or ensure_binaries(progress)
        started = time.monotonic()
        deadline = started + timeout
        had_data = self.layout.etcd_data_dir.exists()
        shutil.rmtree(self.layout.logs_dir, ignore_errors=True)
        for directory in (self.layout.logs_dir, self.layout.config_dir):
            directory.mkdir(parents=True, exist_ok=True)
        pki = ensure_pki(self.layout.pki_dir)
        ports = c.Ports(*free_ports(7))
        modules = self._addon_modules() if self.with_addons else None
        self._write_configs(pki, ports, modules)
        gateway_api = addons.gateway_api_documents(modules.gateway_api) if modules else []
        metrics_server = (
            addons.metrics_server_documents(
                modules.metrics_server, port=ports.metrics_server, ca_cert=pki.ca_cert
            )
            if modules
            else []
        )
        state = ClusterState(
            state_dir=str(self.state_dir),
            kubeconfig=str(self.kubeconfig),
            apiserver_url=c.apiserver_url(ports),
            bin_dir=str(bin_dir),
            node_names=[node_name(index) for index in range(self.nodes)],
            started_at=time.time(),
            addon_crds=addons.crd_names(gateway_api),
        )
        try:
            self._launch(c.ETCD, bin_dir, pki, ports, state)
            self._wait_for(
                c.ETCD, lambda: etcd_healthy(ports.etcd_client), "etcd /health", deadline, state
            )
            self._launch(c.APISERVER, bin_dir, pki, ports, state)
            with ThreadPoolExecutor(max_workers=1) as background:
                with AdminClient(state.apiserver_url, pki) as api:
                    self._wait_for(
                        c.APISERVER, lambda: _apiserver_ready(api), "/readyz", deadline, state
                    )
                    for component in (c.CONTROLLER_MANAGER, c.SCHEDULER, c.KWOK):
                        self._launch(component, bin_dir, pki, ports, state)
                    self._register_nodes(api)
                    # metrics-server reads RBAC-guarded configuration when it starts.
                    self._apply(api, metrics_server)
                    if self.with_addons:
                        self._launch(c.METRICS_SERVER, bin_dir, pki, ports, state)
                # Large CRDs cost the apiserver seconds (schemas, CEL rules): created while
                # the nodes become Ready; the health check waits for them to be Established.
                crds_applied = background.submit(self._apply_separately, state, pki, gateway_api)
                progress(f"Control plane processes started; API server at {state.apiserver_url}")
                if wait:
                    self.wait_until_healthy(
                        deadline - time.monotonic(), state=state, alongside=crds_applied
                    )
                    progress(f"Cluster healthy in {time.monotonic() - started:.1f} s")
                crds_applied.result()
        except BaseException:
            self.down(keep_data=had_data)
            raise
        return state

    def _addon_modules(self) -> addons.ModuleDirs:
        try:
            found = download_modules(addons.addon_modules(), cwd=self.state_dir)
        except BuildError as error:
            raise ClusterError(f"the add-ons' Go modules are not available: {error}") from error
        return addons.module_dirs_from(found)

    def _apply_separately(
        self, state: ClusterState, pki: ClusterPki, documents: list[dict[str, Any]]
    ) -> None:
        with AdminClient(state.apiserver_url, pki) as api:
            self._apply(api, documents)

    def _apply(self, api: AdminClient, documents: list[dict[str, Any]]) -> None:
        for document in documents:
            try:
                api.create_or_apply(document)
            except ApiRequestError as error:
                raise ClusterStartError(
                    c.APISERVER,
                    f"applying {document['kind']} {document['metadata']['name']} failed: {error}",
                    self.log_tail(c.APISERVER),
                ) from error

    def _register_nodes(self, api: AdminClient) -> None:
        for index in range(self.nodes):
            try:
                api.create("/api/v1/nodes", node_manifest(index))
            except ApiRequestError as error:
                raise ClusterStartError(
                    c.APISERVER,
                    f"registering node {node_name(index)} failed: {error}",
                    self.log_tail(c.APISERVER),
                ) from error

    def _write_configs(
        self, pki: ClusterPki, ports: c.Ports, modules: addons.ModuleDirs | None
    ) -> None:
        server = c.apiserver_url(ports)
        write_kubeconfig(self.kubeconfig, server, pki, "admin")
        for component, client in COMPONENT_CLIENTS.items():
            write_kubeconfig(self.layout.component_kubeconfig(component), server, pki, client)
        write_stages_config(self.layout.kwok_stages)
        write_logs_config(self.layout.kwok_logs, self.layout.pod_log)
        if modules is not None:
            write_metrics_config(self.layout.kwok_metrics, modules.kwok)
        if self.audit_policy is not None:
            self.layout.audit_policy.write_text(yaml.safe_dump(self.audit_policy, sort_keys=False))

    def _launch(
        self, component: str, bin_dir: Path, pki: ClusterPki, ports: c.Ports, state: ClusterState
    ) -> None:
        command = c.command_line(
            component,
            bin_dir,
            self.layout,
            pki,
            ports,
            audit=self.audit_policy is not None,
            kwok_metrics=self.with_addons,
        )
        log = self.layout.log(component)
        process, identity = start_detached(command, log_path=log, cwd=self.state_dir)
        self._children.append(process)
        state.components[component] = ComponentState(
            name=component,
            pid=identity.pid,
            start_ticks=identity.start_ticks,
            port=ports.of(component),
            log=str(log),
            command=command,
        )
        save_state(state)  # at once: a failing start must still be stoppable from elsewhere

    def _wait_for(
        self,
        component: str,
        check: Callable[[], bool],
        what: str,
        deadline: float,
        state: ClusterState,
    ) -> None:
        while True:
            self._raise_if_dead(state)
            if check():
                return
            if time.monotonic() >= deadline:
                raise ClusterStartError(
                    component, f"{what} not healthy before the timeout", self.log_tail(component)
                )
            time.sleep(POLL_SECONDS)

    def _raise_if_dead(self, state: ClusterState) -> None:
        for component in state.components.values():
            if not is_running(component.identity):
                raise ClusterStartError(
                    component.name, f"process {component.pid} exited", self.log_tail(component.name)
                )

    # --- health ------------------------------------------------------------------------

    def wait_until_healthy(
        self,
        timeout: float,
        *,
        state: ClusterState | None = None,
        alongside: Future[None] | None = None,
    ) -> None:
        """Poll until every component is healthy, all nodes are Ready, pods can be created
        (the `default` ServiceAccount exists) and the add-ons' CRDs are Established; raise
        ClusterStartError naming what is not. A failure of `alongside` (work the health
        depends on) is raised as soon as it happens."""
        state = state or self.state()
        if state is None:
            raise ClusterError(f"no cluster state in {self.state_dir}")
        deadline = time.monotonic() + timeout
        pki = ClusterPki(self.layout.pki_dir)
        with AdminClient(state.apiserver_url, pki) as api:
            while True:
                self._raise_if_dead(state)
                if alongside is not None and alongside.done():
                    alongside.result()
                failure = self._first_unhealthy(api, state)
                if failure is None:
                    return
                if time.monotonic() >= deadline:
                    component, reason = failure
                    raise ClusterStartError(component, reason, self.log_tail(component))
                time.sleep(POLL_SECONDS)

    def _first_unhealthy(self, api: AdminClient, state: ClusterState) -> tuple[str, str] | None:
        try:
            return self._first_unhealthy_or_raise(api, state)
        except ApiRequestError as error:  # e.g. a restart of the apiserver: keep polling
            return c.APISERVER, str(error)

    def _first_unhealthy_or_raise(
        self, api: AdminClient, state: ClusterState
    ) -> tuple[str, str] | None:
        for component in state.components.values():
            if not _component_healthy(component, api):
                return component.name, "health endpoint not answering 200"
        nodes = {
            node["metadata"]["name"]: node
            for node in (api.get("/api/v1/nodes") or {"items": []})["items"]
        }
        not_ready = [name for name in state.node_names if not _node_ready(nodes.get(name))]
        if not_ready:
            return c.KWOK, f"nodes not Ready: {', '.join(not_ready)}"
        tainted = [name for name in state.node_names if _not_ready_taint(nodes[name])]
        if tainted:
            return (
                c.CONTROLLER_MANAGER,
                f"nodes still tainted {NOT_READY_TAINT}: {', '.join(tainted)}",
            )
        if api.get("/api/v1/namespaces/default/serviceaccounts/default") is None:
            return c.CONTROLLER_MANAGER, "ServiceAccount default/default not created"
        not_established = [name for name in state.addon_crds if not _crd_established(api, name)]
        if not_established:
            return c.APISERVER, f"CRDs not Established: {', '.join(not_established)}"
        return None

    def status(self) -> list[ComponentStatus]:
        state = self.state()
        if state is None:
            return []
        statuses = []
        with AdminClient(state.apiserver_url, ClusterPki(self.layout.pki_dir)) as api:
            for component in state.components.values():
                running = is_running(component.identity)
                statuses.append(
                    ComponentStatus(
                        name=component.name,
                        pid=component.pid,
                        port=component.port,
                        running=running,
                        healthy=running and _component_healthy(component, api),
                        log=component.log,
                    )
                )
        return statuses

    # --- processes started for the cluster (operator, Nacos) ---------------------------

    def start_attached(
        self, name: str, command: list[str], *, env: dict[str, str] | None = None
    ) -> ComponentState:
        """Start `command` detached, like the components, and record it in the cluster's
        state: `down` (from this or any later process) stops it first, before the cluster."""
        state = self.state()
        if state is None:
            raise ClusterError(f"no cluster recorded in {self.state_dir}; start it first")
        recorded = state.components.get(name)
        if recorded is not None and is_running(recorded.identity):
            raise ClusterError(f"{name} is already running (pid {recorded.pid})")
        log = self.layout.log(name)
        process, identity = start_detached(command, log_path=log, env=env, cwd=self.state_dir)
        self._children.append(process)
        state.components.pop(name, None)  # re-inserted last: stopped first
        state.components[name] = ComponentState(
            name=name,
            pid=identity.pid,
            start_ticks=identity.start_ticks,
            port=None,
            log=str(log),
            command=command,
        )
        save_state(state)
        return state.components[name]

    def attached(self, name: str) -> ComponentState | None:
        """The recorded process `name` if it is running."""
        state = self.state()
        recorded = state.components.get(name) if state else None
        return recorded if recorded is not None and is_running(recorded.identity) else None

    def stop_attached(self, name: str, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> None:
        """Stop a process recorded by start_attached and forget it."""
        state = self.state()
        recorded = state.components.get(name) if state else None
        if state is None or recorded is None:
            return
        survivors = stop_groups([recorded.identity], grace_seconds)
        self._reap_children(survivors, only_pid=recorded.pid)
        if survivors:
            raise ClusterError(f"{name}: processes still alive after SIGKILL: {survivors}")
        del state.components[name]
        save_state(state)

    def _reap_children(self, survivors: list[int], only_pid: int | None = None) -> None:
        """Collect the exit status of stopped children of ours (all, or just `only_pid`)."""
        for child in self._children:
            if only_pid is not None and child.pid != only_pid:
                continue
            if child.poll() is None and child.pid not in survivors:
                child.wait(timeout=5)
        self._children = [child for child in self._children if child.poll() is None]

    # --- stop --------------------------------------------------------------------------

    def down(
        self, *, keep_data: bool = False, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS
    ) -> list[int]:
        """Stop every recorded process (SIGTERM, SIGKILL after the grace); return PIDs that
        survived (normally none). etcd data is removed unless `keep_data`; logs stay."""
        state = self.state()
        survivors: list[int] = []
        if state is not None:
            identities = [
                component.identity for component in reversed(list(state.components.values()))
            ]
            survivors = stop_groups(identities, grace_seconds)
        self._reap_children(survivors)
        if survivors:
            raise ClusterError(f"processes still alive after SIGKILL: {survivors}")
        remove_state(self.state_dir)
        if not keep_data:
            shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        return survivors


def _apiserver_ready(api: AdminClient) -> bool:
    try:
        status, _ = api.text("/readyz")
    except ApiRequestError:
        return False
    return status == 200


def _component_healthy(component: ComponentState, api: AdminClient) -> bool:
    if component.port is None:
        return is_running(component.identity)
    if component.name == c.ETCD:
        return etcd_healthy(component.port)
    if component.name == c.APISERVER:
        return _apiserver_ready(api)
    return http_ok(c.health_url(component.name, component.port))


def _crd_established(api: AdminClient, name: str) -> bool:
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    conditions = (crd or {}).get("status", {}).get("conditions") or []
    return any(
        cond.get("type") == "Established" and cond.get("status") == "True" for cond in conditions
    )


def _node_ready(node: dict[str, Any] | None) -> bool:
    conditions = (node or {}).get("status", {}).get("conditions") or []
    return any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in conditions)


def _not_ready_taint(node: dict[str, Any]) -> bool:
    """The apiserver taints new Nodes not-ready; the node-lifecycle controller lifts it."""
    return any(
        taint.get("key") == NOT_READY_TAINT for taint in node.get("spec", {}).get("taints") or []
    )
