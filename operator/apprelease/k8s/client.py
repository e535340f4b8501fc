"""A thin JSON client over the official kubernetes client's ApiClient.

We use the official client for configuration, auth and transport, but skip its model
classes: deserialising every response into generated objects costs more CPU than the rest
of a reconcile, and server-side apply wants plain dicts anyway. Created lazily, never at
import time.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .. import metrics
from .fence import WriteFence

FIELD_MANAGER = "apprelease"
REQUEST_TIMEOUT = (10, 60)  # connect, read: a hung apiserver must not hang a worker
USER_AGENT = "apprelease-operator"


@dataclass(frozen=True)
class ResourceType:
    group_version: str  # "v1" or "apps/v1"
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


RESOURCES: dict[str, ResourceType] = {
    "ConfigMap": ResourceType("v1", "configmaps"),
    "Service": ResourceType("v1", "services"),
    "Pod": ResourceType("v1", "pods"),
    "Secret": ResourceType("v1", "secrets"),
    "Event": ResourceType("v1", "events"),
    "Namespace": ResourceType("v1", "namespaces", namespaced=False),
    "Deployment": ResourceType("apps/v1", "deployments"),
    "ControllerRevision": ResourceType("apps/v1", "controllerrevisions"),
    "Ingress": ResourceType("networking.k8s.io/v1", "ingresses"),
    "EndpointSlice": ResourceType("discovery.k8s.io/v1", "endpointslices"),
    "Lease": ResourceType("coordination.k8s.io/v1", "leases"),
    "HorizontalPodAutoscaler": ResourceType("autoscaling/v2", "horizontalpodautoscalers"),
    "HTTPRoute": ResourceType("gateway.networking.k8s.io/v1", "httproutes"),
    "AppRelease": ResourceType("apprelease.io/v1alpha1", "appreleases"),
    "CustomResourceDefinition": ResourceType(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
}


# Characters Go's YAML reader refuses raw (C1 controls, DEL, BOM, non-characters) or folds
# into a space (NEL, line and paragraph separators): an apply patch carries them as \u escapes.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def apply_patch_body(obj: dict[str, Any]) -> bytes:
    """An apply patch as JSON the apiserver's YAML reader takes unchanged: raw UTF-8, because
    a character beyond the BMP written as a \\ud83d\\ude00 surrogate pair (what json.dumps,
    and so the kubernetes client, writes by default) is refused ("found invalid Unicode
    character escape code"); the characters YAML cannot hold raw stay escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


_UNAPPLIABLE = ("failed to create typed patch object", "failed to convert new typed object",
                "failed to convert new object", "failed to convert to unversioned")


class ApiError(Exception):
    """An API call failed; ``message`` is the apiserver's own explanation."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing we write there will last."""
        return self.status == 403 and "being terminated" in self.message

    @property
    def unappliable(self) -> bool:
        """A server-side apply whose body does not fit the kind's schema (a string where a
        boolean belongs, 1.5 where an integer does): the apiserver answers 500 although
        retrying cannot help (apimachinery's structuredmerge.go, errors about the patch)."""
        return self.status == 500 and self.message.startswith(_UNAPPLIABLE)

    @property
    def invalid(self) -> bool:
        """The request itself is wrong (fix the spec), as opposed to a transient failure."""
        return self.status in (400, 403, 422)

    @classmethod
    def from_body(cls, status: int, reason: str, body: bytes | str | None) -> ApiError:
        message = reason
        try:
            payload = json.loads(body or "{}")
            message = payload.get("message", message)
            reason = payload.get("reason", reason)
        except (TypeError, ValueError):
            pass
        return cls(status, reason, message)

    @classmethod
    def from_exception(cls, exc: ApiException) -> ApiError:
        return cls.from_body(int(exc.status or 0), str(exc.reason or ""), exc.body)


def load_configuration(kubeconfig: str | None = None) -> k8s_client.Configuration:
    """In-cluster config when running in a pod, else the kubeconfig (explicit or default)."""
    configuration = k8s_client.Configuration()
    if not kubeconfig:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return configuration
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(
        config_file=kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None,
        client_configuration=configuration,
    )
    return configuration


def load_api_client(
    kubeconfig: str | None = None, *, pool_size: int = 16, instance: str | None = None
) -> k8s_client.ApiClient:
    """``instance``: this process's identity, carried in the User-Agent so that the apiserver's
    audit log tells the operator's replicas apart (they share one ServiceAccount)."""
    configuration = load_configuration(kubeconfig)
    configuration.connection_pool_maxsize = pool_size
    api = k8s_client.ApiClient(configuration)
    api.user_agent = f"{USER_AGENT} ({instance})" if instance else USER_AGENT
    return api


IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace() -> str | None:
    """The namespace this process runs in, when it runs in a pod ($POD_NAMESPACE, else its
    ServiceAccount's namespace); None outside a cluster."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return open(IN_CLUSTER_NAMESPACE_FILE).read().strip() or None
    except OSError:
        return None


def connection_info(configuration: k8s_client.Configuration) -> Any:
    """The same credentials, in the shape kopf's own (aiohttp) client wants."""
    import kopf

    header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    scheme, _, token = header.partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme or None,
        token=token or None,
    )


class Kube:
    """JSON requests with metrics by verb and resource; one field manager for every apply.

    With a ``fence`` (the operator under leader election), every write asks it first and is
    refused (NotLeading) unless this replica holds the lease; reads are never fenced.
    """

    def __init__(
        self, api_client: k8s_client.ApiClient, *, fence: WriteFence | None = None,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ):
        self._api = api_client
        self._lock = threading.Lock()
        self._fence = fence
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
    ) -> Any:
        if self._fence is None or method == "GET":
            return self._send(method, path, query, body, content_type, resource)
        with self._fence.writing(f"{method} {resource or path}"):
            return self._send(method, path, query, body, content_type, resource)

    def _send(
        self, method: str, path: str, query: dict[str, Any] | None, body: Any, content_type: str,
        resource: str,
    ) -> Any:
        verb = method.lower()
        serialized = self._api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*serialized, _request_timeout=self._timeout)
        except ApiException as exc:
            metrics.API_REQUESTS.labels(verb, resource, str(exc.status)).inc()
            raise ApiError.from_exception(exc) from None
        data = response.read()
        metrics.API_REQUESTS.labels(verb, resource, str(response.status)).inc()
        if response.status >= 400:
            raise ApiError.from_body(response.status, response.reason or "", data)
        return orjson.loads(data) if data else None  # list pages: 2-3x faster than json

    def open_stream(
        self, path: str, *, query: dict[str, Any], resource: str, read_timeout: float
    ) -> Any:
        """A GET whose body is read as it arrives (a watch): the urllib3 response."""
        serialized = self._api.param_serialize(
            "GET",
            path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*serialized, _request_timeout=(self._timeout[0], read_timeout))
        except ApiException as exc:
            metrics.API_REQUESTS.labels("watch", resource, str(exc.status)).inc()
            raise ApiError.from_exception(exc) from None
        metrics.API_REQUESTS.labels("watch", resource, str(response.status)).inc()
        if response.status >= 400 and response.status != 410:
            raise ApiError.from_body(response.status, response.reason or "", response.read())
        return response.response

    # Convenience wrappers ----------------------------------------------------------------

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.request("GET", RESOURCES[kind].path(namespace, name), resource=kind)

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        result = self.request("GET", RESOURCES[kind].path(namespace), query=query, resource=kind)
        return list(result.get("items", []))

    def apply(
        self, obj: dict[str, Any], *, subresource: str | None = None, manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply with our field manager; force takes back fields we own."""
        kind = obj["kind"]
        meta = obj["metadata"]
        path = RESOURCES[kind].path(meta.get("namespace"), meta["name"], subresource)
        return self.request(
            "PATCH",
            path,
            query={"fieldManager": manager, "force": "true"},
            body=apply_patch_body(obj),
            content_type="application/apply-patch+yaml",
            resource=kind + (f"/{subresource}" if subresource else ""),
        )

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any]) -> Any:
        return self.request(
            "PATCH",
            RESOURCES[kind].path(namespace, name),
            query={"fieldManager": FIELD_MANAGER},
            body=patch,
            content_type="application/merge-patch+json",
            resource=kind,
        )

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = obj["kind"]
        return self.request(
            "POST",
            RESOURCES[kind].path(obj["metadata"].get("namespace")),
            query={"fieldManager": FIELD_MANAGER},
            body=obj,
            resource=kind,
        )

    def delete(self, kind: str, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        """Delete (background propagation); a precondition on uid avoids deleting a successor."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", RESOURCES[kind].path(namespace, name), body=body, resource=kind)
        except ApiError as exc:
            if not exc.not_found:
                raise
