"""HTTP probes of the control-plane components and a minimal admin client for bootstrapping."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from apprelease_dev.certs import ClusterPki

PROBE_TIMEOUT_SECONDS = 2.0
# Applying a large CRD (HTTPRoute's schema is ~0.5 MB) takes longer than a probe.
APPLY_TIMEOUT_SECONDS = 30.0
FIELD_MANAGER = "apprelease-dev"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# Where the kinds we apply at bootstrap live: kind -> (plural, namespaced).
BOOTSTRAP_KINDS: dict[str, tuple[str, bool]] = {
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "ValidatingAdmissionPolicy": ("validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("validatingadmissionpolicybindings", False),
    "APIService": ("apiservices", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ServiceAccount": ("serviceaccounts", True),
    "Service": ("services", True),
}
# Everything we probe is on 127.0.0.1: never route it through an HTTP(S)_PROXY from the env.
TRUST_ENV = False


class ApiRequestError(RuntimeError):
    """The API server answered a request with an error, or could not be reached."""


class AdminClient:
    """Just enough of the Kubernetes API, as the admin user, to bootstrap and check a cluster."""

    def __init__(self, server: str, pki: ClusterPki) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
        self._client = httpx.Client(
            base_url=server, verify=context, timeout=PROBE_TIMEOUT_SECONDS, trust_env=TRUST_ENV
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def text(self, path: str) -> tuple[int, str]:
        response = self._request("GET", path)
        return response.status_code, response.text

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist (404)."""
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        self._raise_for_status(response)
        result: dict[str, Any] = response.json()
        return result

    def create(self, path: str, body: dict[str, Any]) -> None:
        """POST `body`; an existing object of that name (409) counts as success."""
        response = self._request("POST", path, json=body)
        if response.status_code != 409:
            self._raise_for_status(response)

    def create_or_apply(self, body: dict[str, Any]) -> None:
        """Create `body`; if it exists, server-side apply it. A plain create costs the
        apiserver far less than an apply of a large object (a fresh cluster's case)."""
        plural_path = object_path(body).rsplit("/", 1)[0]
        response = self._request(
            "POST",
            plural_path,
            json=body,
            params={"fieldManager": FIELD_MANAGER},
            timeout=APPLY_TIMEOUT_SECONDS,
        )
        if response.status_code == 409:
            self.apply(body)
        else:
            self._raise_for_status(response)

    def apply(self, body: dict[str, Any]) -> None:
        """Server-side apply `body` as our field manager (idempotent; takes over conflicts)."""
        response = self._request(
            "PATCH",
            object_path(body),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(body),
            headers={"Content-Type": APPLY_CONTENT_TYPE},
            timeout=APPLY_TIMEOUT_SECONDS,
        )
        self._raise_for_status(response)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiRequestError(f"{method} {path}: {error}") from error

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.is_error:
            raise ApiRequestError(
                f"{response.request.method} {response.request.url.path} -> "
                f"{response.status_code}: {response.text}"
            )


def object_path(body: dict[str, Any]) -> str:
    """The REST path of `body` (one of BOOTSTRAP_KINDS)."""
    kind = body["kind"]
    if kind not in BOOTSTRAP_KINDS:
        raise ValueError(f"no REST path known for kind {kind!r}")
    plural, namespaced = BOOTSTRAP_KINDS[kind]
    api_version = body["apiVersion"]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    metadata = body["metadata"]
    namespace = f"/namespaces/{metadata['namespace']}" if namespaced else ""
    return f"{prefix}{namespace}/{plural}/{metadata['name']}"


def http_ok(url: str) -> bool:
    """True if `url` answers 200 now. Components' own serving certs are self-signed, and only
    the status matters here, so their certificates are not verified."""
    try:
        response = httpx.get(url, verify=False, timeout=PROBE_TIMEOUT_SECONDS, trust_env=TRUST_ENV)
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def etcd_healthy(port: int) -> bool:
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/health", timeout=PROBE_TIMEOUT_SECONDS, trust_env=TRUST_ENV
        )
        return response.status_code == 200 and response.json().get("health") == "true"
    except (httpx.HTTPError, ValueError):
        return False
