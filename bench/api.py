"""The benchmark's own API access: JSON requests and watch streams, as cluster admin.

Built on apprelease's JSON client (no generated models: the bench must stay cheap next to
the operator on two cores) with its own User-Agent, so the audit log never mixes it up
with the operator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apprelease.k8s.client import RESOURCES, ApiError, Kube, load_api_client

USER_AGENT = "apprelease-bench"
WATCH_SERVER_TIMEOUT_SECONDS = 240
WATCH_READ_TIMEOUT_SECONDS = 300.0
CHUNK_BYTES = 1 << 16


class Api:
    def __init__(self, kubeconfig: Path, *, pool_size: int = 16):
        self._client = load_api_client(str(kubeconfig), pool_size=pool_size)
        self._client.user_agent = USER_AGENT
        self.kube = Kube(self._client)

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> dict[str, Any]:
        """The whole list response (items and metadata.resourceVersion)."""
        result: dict[str, Any] = self.kube.request(
            "GET", RESOURCES[kind].path(namespace), query=query, resource=kind
        )
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.get(kind, namespace, name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        return self.kube.request(
            "PATCH",
            RESOURCES[kind].path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
            resource=kind,
        )

    def watch(
        self, kind: str, namespace: str | None, resource_version: str, **query: Any
    ) -> Iterator[dict[str, Any]]:
        """Watch events (parsed) until the server ends the stream."""
        params = {
            **query,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(WATCH_SERVER_TIMEOUT_SECONDS),
        }
        method, url, headers, body, post = self._client.param_serialize(
            "GET",
            RESOURCES[kind].path(namespace),
            query_params=list(params.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            method, url, headers, body, post, _request_timeout=(10, WATCH_READ_TIMEOUT_SECONDS)
        ).response
        try:
            if response.status >= 400:
                raise ApiError.from_body(response.status, response.reason or "", response.read())
            pending = b""
            for chunk in response.stream(CHUNK_BYTES, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()
