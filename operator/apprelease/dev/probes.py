"""HTTP probes of the control-plane components and a minimal admin client for bootstrapping."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from apprelease.dev.certs import ClusterPki

PROBE_TIMEOUT_SECONDS = 2.0


class AdminClient:
    """Just enough of the Kubernetes API, as the admin user, to bootstrap and check a cluster."""

    def __init__(self, server: str, pki: ClusterPki) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
        self._client = httpx.Client(base_url=server, verify=context, timeout=PROBE_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def text(self, path: str) -> tuple[int, str]:
        response = self._client.get(path)
        return response.status_code, response.text

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None if it does not exist (404)."""
        response = self._client.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def create(self, path: str, body: dict[str, Any]) -> None:
        """POST `body`; an existing object of that name (409) counts as success."""
        response = self._client.post(path, json=body)
        if response.status_code == 409:
            return
        if response.is_error:
            raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text}")


def http_ok(url: str) -> bool:
    """True if `url` answers 200 now. Components' own serving certs are self-signed, and only
    the status matters here, so their certificates are not verified."""
    try:
        return httpx.get(url, verify=False, timeout=PROBE_TIMEOUT_SECONDS).status_code == 200
    except httpx.HTTPError:
        return False


def etcd_healthy(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("health") == "true"
