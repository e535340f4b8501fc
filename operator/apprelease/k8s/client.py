"""The one Kubernetes client of apprelease: a thin JSON client over the official client's
ApiClient, shared by the operator, the CLI and the console.

We use the official client for configuration, auth and transport, but skip its model
classes: deserialising every response into generated objects costs more CPU than the rest
of a reconcile, and server-side apply wants plain dicts anyway. Nothing is created at import
time: ``load_configuration`` (the one kubeconfig loader) finds the apiserver and credentials,
and each ``Kube`` acts as the ``Identity`` it was made with: the configuration's own
credentials, a user's bearer token passed through, or the own credentials impersonating a
user (the console acts as each browser's user this way). ``AsyncKube`` runs the same client
from asyncio code.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPHeaderDict

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
    "ReleasePipeline": ResourceType("apprelease.io/v1alpha1", "releasepipelines"),
    "ReleaseApproval": ResourceType("apprelease.io/v1alpha1", "releaseapprovals"),
    "AnalysisTemplate": ResourceType("apprelease.io/v1alpha1", "analysistemplates"),
    "ClusterAnalysisTemplate": ResourceType("apprelease.io/v1alpha1", "clusteranalysistemplates", namespaced=False),
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

    def __init__(self, status: int, reason: str, message: str, causes: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes or []  # a 422's details.causes: which field, and what is wrong with it

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
        causes: list[dict[str, Any]] = []
        try:
            payload = json.loads(body or "{}")
            message = payload.get("message", message)
            reason = payload.get("reason", reason)
            causes = list((payload.get("details") or {}).get("causes") or [])
        except (TypeError, ValueError, AttributeError):
            pass
        return cls(status, reason, message, causes)

    @classmethod
    def from_exception(cls, exc: ApiException) -> ApiError:
        return cls.from_body(int(exc.status or 0), str(exc.reason or ""), exc.body)


# Where the apiserver is and who we are ----------------------------------------------------


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s_client.Configuration:
    """The one kubeconfig loader (operator, CLI, console). In a pod, without a kubeconfig or
    context named, the pod's ServiceAccount; else the kubeconfig (the one named, else every
    file $KUBECONFIG lists, merged, else ~/.kube/config) with the context named (else its
    current one)."""
    configuration = k8s_client.Configuration()
    if not kubeconfig and not context:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return configuration
        except k8s_config.ConfigException:
            pass
    # $KUBECONFIG is read now: the official client reads it once, when it is first imported.
    k8s_config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG") or None, context=context,
                                client_configuration=configuration)
    return configuration


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace the kubeconfig's context names ("default" if none, or no kubeconfig)."""
    try:
        contexts, active = k8s_config.list_kube_config_contexts(
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None)
        if context:
            active = next(c for c in contexts if c["name"] == context)
        return str((active.get("context") or {}).get("namespace") or "default")
    except (k8s_config.ConfigException, StopIteration, OSError):
        return "default"


def api_client(
    configuration: k8s_client.Configuration, *, pool_size: int = 16, instance: str | None = None
) -> k8s_client.ApiClient:
    """A transport (a connection pool of ``pool_size``) for one configuration. ``instance``: this
    process's identity, carried in the User-Agent so that the apiserver's audit log tells the
    operator's replicas apart (they share one ServiceAccount)."""
    configuration = copy.deepcopy(configuration)  # the pool size is per client, not per configuration
    configuration.connection_pool_maxsize = pool_size
    api = k8s_client.ApiClient(configuration)
    api.user_agent = f"{USER_AGENT} ({instance})" if instance else USER_AGENT
    return api


def load_api_client(kubeconfig: str | None = None, context: str | None = None, *,
                    pool_size: int = 16, instance: str | None = None) -> k8s_client.ApiClient:
    return api_client(load_configuration(kubeconfig, context), pool_size=pool_size, instance=instance)


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


def without_own_credentials(configuration: k8s_client.Configuration) -> k8s_client.Configuration:
    """The same apiserver and CA, none of our credentials: for a user's token passed through.
    (With our client certificate on the connection too, the apiserver would see us.)"""
    bare = copy.deepcopy(configuration)
    bare.cert_file = bare.key_file = None
    bare.api_key, bare.api_key_prefix = {}, {}
    bare.refresh_api_key_hook = None
    bare.username = bare.password = None
    return bare


@dataclass(frozen=True)
class Identity:
    """Whose requests a Kube makes: the configuration's own credentials ("own"), a user's bearer
    token passed through ("bearer"), or the own credentials impersonating a user and groups
    ("impersonate"). ``key`` names it in caches, never the secret itself."""

    kind: Literal["own", "bearer", "impersonate"] = "own"
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        if self.kind == "bearer":
            return "bearer:" + hashlib.sha256((self.token or "").encode()).hexdigest()[:24]
        if self.kind == "impersonate":
            return f"as:{self.user}:{','.join(self.groups)}"
        return "own"


OWN = Identity()


class Apiserver:
    """One apiserver, and clients acting as anyone there; the clients acting the same way share
    a connection pool (one for the own credentials, one without them for passed-through
    tokens)."""

    def __init__(self, configuration: k8s_client.Configuration, *, pool_size: int = 16):
        self._configuration = configuration
        self._pool_size = pool_size
        self._own = api_client(configuration, pool_size=pool_size)
        self._passthrough: k8s_client.ApiClient | None = None
        self._lock = threading.Lock()

    def as_(self, identity: Identity = OWN) -> Kube:
        if identity.kind != "bearer":
            return Kube(self._own, identity)
        with self._lock:
            if self._passthrough is None:
                self._passthrough = api_client(without_own_credentials(self._configuration),
                                               pool_size=self._pool_size)
        return Kube(self._passthrough, identity)

    def close(self) -> None:
        for api in (self._own, self._passthrough):
            if api is not None:
                api.close()


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
    """JSON requests as one identity, with metrics by verb and resource; one field manager for
    every apply.

    With a ``fence`` (the operator under leader election), every write asks it first and is
    refused (NotLeading) unless this replica holds the lease; reads are never fenced.
    """

    def __init__(
        self, api_client: k8s_client.ApiClient, identity: Identity = OWN, *,
        fence: WriteFence | None = None, timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ):
        if identity.kind == "bearer" and (api_client.configuration.cert_file or api_client.configuration.api_key):
            raise ValueError("a passed-through token must not travel with our own credentials: "
                             "use Apiserver.as_(identity)")
        self._api = api_client
        self.identity = identity
        self._fence = fence
        self._timeout = timeout
        # The configuration's credentials, unless the request carries a user's token.
        self._auth_settings = [] if identity.kind == "bearer" else ["BearerToken"]

    def _serialize(self, method: str, path: str, query: dict[str, Any] | None, headers: dict[str, str],
                   body: Any = None) -> tuple[str, str, HTTPHeaderDict, Any, Any]:
        method, url, header_params, body, post_params = self._api.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=self._auth_settings)
        # A multi-valued header dict: impersonation sends one Impersonate-Group per group.
        sent = HTTPHeaderDict(header_params)
        if self.identity.kind == "bearer":
            sent["Authorization"] = f"Bearer {self.identity.token}"
        elif self.identity.kind == "impersonate":
            sent["Impersonate-User"] = self.identity.user or ""
            for group in self.identity.groups:
                sent.add("Impersonate-Group", group)
        return method, url, sent, body, post_params

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
        serialized = self._serialize(method, path, query, {"Content-Type": content_type, "Accept": "application/json"},
                                     body)
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
        self, path: str, *, query: dict[str, Any], resource: str, read_timeout: float | None,
        accept: str = "application/json",
    ) -> Any:
        """A GET whose body is read as it arrives (a watch, a followed log): the urllib3
        response. ``read_timeout`` None: wait for data as long as the caller keeps it open."""
        serialized = self._serialize("GET", path, query, {"Accept": accept})
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
        self, obj: dict[str, Any], *, subresource: str | None = None, manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply with our field manager; force takes back fields we own. A dry run
        returns what the object would become (defaults and merge included), writing nothing."""
        kind = obj["kind"]
        meta = obj["metadata"]
        path = RESOURCES[kind].path(meta.get("namespace"), meta["name"], subresource)
        return self.request(
            "PATCH",
            path,
            query={"fieldManager": manager, "force": "true", **({"dryRun": "All"} if dry_run else {})},
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

    # Who may do what (the console asks these as each user) --------------------------------

    def can(self, verb: str, resource: str, namespace: str, group: str = "") -> bool:
        """SelfSubjectAccessReview: may this identity do ``verb`` on ``resource`` here
        (namespace "" = in every namespace)? A subresource is named as RBAC names it
        ("pods/log")."""
        plural, _, subresource = resource.partition("/")
        attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": plural}
        if subresource:
            attributes["subresource"] = subresource
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        result = self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review,
                              resource="SelfSubjectAccessReview")
        return bool((result.get("status") or {}).get("allowed"))

    def whoami(self) -> str:
        """The user name the apiserver sees (SelfSubjectReview)."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        result = self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review,
                              resource="SelfSubjectReview")
        return str(((result.get("status") or {}).get("userInfo") or {}).get("username", "?"))


P = ParamSpec("P")
T = TypeVar("T")


class AsyncKube:
    """The same client for asyncio code (the console): each call runs on a thread of
    ``executor``, so the event loop never waits for the apiserver."""

    def __init__(self, kube: Kube, executor: Executor):
        self.kube = kube
        self._executor = executor

    async def call(self, function: Callable[Concatenate[Kube, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(kube, *args, **kwargs)`` on the pool: a Kube method, or any function
        that takes the client first (``actions.perform``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, self.kube, *args, **kwargs))

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.call(Kube.request, method, path, **kwargs)

    async def can(self, verb: str, resource: str, namespace: str, group: str = "") -> bool:
        return await self.call(Kube.can, verb, resource, namespace, group)

    async def whoami(self) -> str:
        return await self.call(Kube.whoami)
