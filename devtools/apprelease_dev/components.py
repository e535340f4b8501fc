"""Command lines of the control-plane components, all on 127.0.0.1.

Flags follow what kwokctl's binary runtime and kubeadm use, minus what a dev cluster on a
2-core machine does not need (leader election, cloud and storage controllers, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apprelease_dev.certs import SERVICE_CLUSTER_IP_RANGE, ClusterPki
from apprelease_dev.fake_nodes import KWOK_NODE_SELECTOR

LOOPBACK = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Fallback pod CIDR for nodes without spec.podCIDR (ours always have one).
KWOK_FALLBACK_POD_CIDR = "10.244.0.0/16"
KWOK_NODE_LEASE_SECONDS = 40
# metrics-server's minimum; a pod's CPU rate needs two scrapes, so metrics appear ~20 s
# after a pod starts (or its simulated usage changes).
METRIC_RESOLUTION = "10s"
# Must stay under 90% of the resolution (metrics-server validates it).
KUBELET_REQUEST_TIMEOUT = "5s"
# How often the HPA controller recomputes (the default is 15 s): tests see a scale decision
# within one or two metric resolutions.
HPA_SYNC_PERIOD = "5s"

# The controllers an app-release operator leans on; the rest of the defaults (cloud,
# volumes, CSR signing, node IPAM, taint eviction) have nothing to do without real nodes.
CONTROLLERS: tuple[str, ...] = (
    # Removes the not-ready taint the apiserver puts on every new Node once it is Ready.
    "node-lifecycle-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "garbage-collector-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "namespace-controller",
    "pod-garbage-collector-controller",
    "ttl-controller",
    "ttl-after-finished-controller",
    "disruption-controller",
    "resourcequota-controller",
    "horizontal-pod-autoscaler-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
    "service-cidr-controller",
)

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kwok"
METRICS_SERVER = "metrics-server"
# Start order (stop order is the reverse).
COMPONENTS: tuple[str, ...] = (ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER, KWOK, METRICS_SERVER)
# Started only when the cluster runs its add-ons (see LocalCluster).
ADDON_COMPONENTS: tuple[str, ...] = (METRICS_SERVER,)


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    metrics_server: int

    def of(self, component: str) -> int:
        return {
            ETCD: self.etcd_client,
            APISERVER: self.apiserver,
            CONTROLLER_MANAGER: self.controller_manager,
            SCHEDULER: self.scheduler,
            KWOK: self.kwok,
            METRICS_SERVER: self.metrics_server,
        }[component]


@dataclass(frozen=True)
class Layout:
    """Where a cluster's files live inside its state directory."""

    state_dir: Path

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def etcd_data_dir(self) -> Path:
        return self.state_dir / "etcd-data"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def kwok_stages(self) -> Path:
        return self.config_dir / "kwok-stages.yaml"

    @property
    def kwok_metrics(self) -> Path:
        return self.config_dir / "kwok-metrics.yaml"

    @property
    def audit_policy(self) -> Path:
        return self.config_dir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log (JSON lines), written only when auditing is enabled."""
        return self.logs_dir / "kube-apiserver-audit.log"

    def component_kubeconfig(self, component: str) -> Path:
        return self.config_dir / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"


def apiserver_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def health_url(component: str, port: int) -> str:
    """Unauthenticated health endpoint of a component (the apiserver's is probed as admin)."""
    if component == ETCD:
        return f"http://{LOOPBACK}:{port}/health"
    if component == KWOK:
        return f"http://{LOOPBACK}:{port}/healthz"
    if component == METRICS_SERVER:
        # Not /readyz: that waits for the first full scrape, which `up` need not wait for.
        return f"https://{LOOPBACK}:{port}/livez"
    return f"https://{LOOPBACK}:{port}/healthz"


def command_line(
    component: str,
    bin_dir: Path,
    layout: Layout,
    pki: ClusterPki,
    ports: Ports,
    *,
    audit: bool = False,
    kwok_metrics: bool = False,
) -> list[str]:
    """`audit`: the apiserver writes an audit log (policy at layout.audit_policy).
    `kwok_metrics`: KWOK also serves resource metrics (config at layout.kwok_metrics)."""
    binary = str(bin_dir / component)
    if component == ETCD:
        return [binary, *_etcd_args(layout, ports)]
    if component == APISERVER:
        return [binary, *_apiserver_args(pki, ports), *(_audit_args(layout) if audit else [])]
    if component == CONTROLLER_MANAGER:
        return [binary, *_controller_manager_args(layout, pki, ports)]
    if component == SCHEDULER:
        return [binary, *_scheduler_args(layout, ports)]
    if component == KWOK:
        metrics_config = [f"--config={layout.kwok_metrics}"] if kwok_metrics else []
        return [binary, *_kwok_args(layout, pki, ports), *metrics_config]
    if component == METRICS_SERVER:
        return [binary, *_metrics_server_args(layout, pki, ports)]
    raise ValueError(f"unknown component {component!r}")


def _etcd_args(layout: Layout, ports: Ports) -> list[str]:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        "--name=apprelease-dev",
        f"--data-dir={layout.etcd_data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=apprelease-dev={peer}",
        "--auto-compaction-retention=1",
        "--quota-backend-bytes=8589934592",
        # Throwaway data: skipping fsync keeps etcd fast on a busy or slow disk.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def _apiserver_args(pki: ClusterPki, ports: Ports) -> list[str]:
    return [
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # Front proxy (as kubeadm sets it up, one CA here): aggregated API servers can trust
        # forwarded users, and components' delegated authn finds the CA it looks for.
        f"--requestheader-client-ca-file={pki.ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.cert('front-proxy-client')}",
        f"--proxy-client-key-file={pki.key('front-proxy-client')}",
        "--allow-privileged=true",
        # logs/exec/port-forward go to the node's InternalIP (127.0.0.1): KWOK's server.
        f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP",
        # Endpoints may not be loopback addresses, so the `kubernetes` Service gets none;
        # everything reaches the apiserver through the kubeconfig instead.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


# Opt-in audit log (benchmarks count every request a client makes, from the server's side).
AUDIT_LOG_MAX_SIZE_MB = 4096  # rotation would split the log; one file is easier to read


def metadata_audit_policy(users: Sequence[str] = ()) -> dict[str, Any]:
    """An audit Policy at Metadata level (who, verb, resource, code; no bodies).

    With `users`, only their requests are logged: exact per-client accounting without
    the volume of every controller and kubelet lease. The RequestReceived stage is
    dropped, so each request yields one event (two for long-running ones such as watches).
    """
    rule: dict[str, Any] = {"level": "Metadata"}
    if users:
        rule["users"] = list(users)
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [rule, {"level": "None"}],
    }


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def service_account_writes_audit_policy() -> dict[str, Any]:
    """An audit Policy at Metadata level for the writes of ServiceAccounts outside kube-system:
    who (user and User-Agent), what, when, the answer; no bodies. The tests' cluster runs with
    it, so an operator running as its ServiceAccount can be checked from the apiserver's side
    (which replica wrote what, and when: tests/e2e/test_high_availability.py). The controllers'
    own accounts in kube-system, and every read, are left out: a few lines per test."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"], "verbs": list(WRITE_VERBS)},
            {"level": "None"},
        ],
    }


def _audit_args(layout: Layout) -> list[str]:
    return [
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        f"--audit-log-maxsize={AUDIT_LOG_MAX_SIZE_MB}",
        # Blocking: each event is written as it happens, not buffered in batches.
        "--audit-log-mode=blocking",
    ]


def _controller_manager_args(layout: Layout, pki: ClusterPki, ports: Ports) -> list[str]:
    kubeconfig = layout.component_kubeconfig(CONTROLLER_MANAGER)
    return [
        f"--kubeconfig={kubeconfig}",
        # Delegated authn/z (as kubeadm sets up): /metrics accepts cluster credentials.
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        f"--controllers={','.join(CONTROLLERS)}",
        # Each controller acts as its own service account, as in production clusters: RBAC
        # mistakes in what our operator expects from them show up here too.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--leader-elect=false",
        "--profiling=false",
        f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
    ]


def _scheduler_args(layout: Layout, ports: Ports) -> list[str]:
    kubeconfig = layout.component_kubeconfig(SCHEDULER)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def _kwok_args(layout: Layout, pki: ClusterPki, ports: Ports) -> list[str]:
    return [
        f"--kubeconfig={layout.component_kubeconfig(KWOK)}",
        f"--config={layout.kwok_stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
        # Nodes get InternalIP 127.0.0.1 and KWOK's port as kubelet port, so anything the
        # apiserver proxies to "the kubelet" stays on this machine.
        f"--node-ip={LOOPBACK}",
        f"--node-port={ports.kwok}",
        f"--server-address={LOOPBACK}:{ports.kwok}",
        f"--tls-cert-file={pki.cert('kwok-serving')}",
        f"--tls-private-key-file={pki.key('kwok-serving')}",
        f"--cidr={KWOK_FALLBACK_POD_CIDR}",
        f"--node-lease-duration-seconds={KWOK_NODE_LEASE_SECONDS}",
    ]


def _metrics_server_args(layout: Layout, pki: ClusterPki, ports: Ports) -> list[str]:
    kubeconfig = layout.component_kubeconfig(METRICS_SERVER)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.metrics_server}",
        f"--tls-cert-file={pki.cert('metrics-server-serving')}",
        f"--tls-private-key-file={pki.key('metrics-server-serving')}",
        # "Kubelets" are KWOK's server: the nodes' InternalIP and daemon port, verified
        # against our CA; the path per node comes from the node's resource-metrics-path.
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        f"--kubelet-request-timeout={KUBELET_REQUEST_TIMEOUT}",
        f"--metric-resolution={METRIC_RESOLUTION}",
    ]
