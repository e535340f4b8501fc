"""HTTP probes of the control-plane components and a minimal admin client for bootstrapping."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from apprelease_dev.certs import ClusterPki

PROBE_TIMEOUT_SECONDS = 2.0
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
