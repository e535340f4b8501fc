"""The JSON client's request bodies (the apiserver itself: tests/e2e)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apprelease.k8s.client import ApiError, Kube, apply_patch_body


class RecordingApiClient:
    """Stands in for the kubernetes ApiClient: records what would be sent, answers 200."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
        self.sent.append({"method": method, "path": path, **kwargs})
        return (method, path)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        class Response:
            status, reason = 200, "OK"

            def read(self) -> bytes:
                return b"{}"

        return Response()


def test_apply_bodies_carry_characters_beyond_the_bmp_as_utf8() -> None:
    """Surrogate-pair escapes (json.dumps' default) are refused by the apiserver's YAML reader
    (fuzzing finding 22); raw UTF-8 is read as written."""
    obj = {"kind": "Deployment", "metadata": {"name": "a", "namespace": "n"},
           "spec": {"value": "hi \U0001F600", "accent": "é"}}
    body = apply_patch_body(obj)
    assert isinstance(body, bytes)
    assert "hi \U0001F600".encode() in body and b"\\ud83d" not in body
    assert json.loads(body) == obj


@pytest.mark.parametrize("char", ["\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff"])
def test_characters_yaml_cannot_hold_raw_stay_escaped(char: str) -> None:
    body = apply_patch_body({"v": f"a{char}b"})
    assert char.encode() not in body
    assert f"\\u{ord(char):04x}".encode() in body
    assert json.loads(body) == {"v": f"a{char}b"}


def test_numbers_past_64_bits_are_written_as_they_are() -> None:
    assert json.loads(apply_patch_body({"n": 2**64})) == {"n": 2**64}


def test_kube_apply_sends_the_utf8_body_as_an_apply_patch() -> None:
    api = RecordingApiClient()
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"},
           "data": {"greeting": "hi \U0001F600"}}
    Kube(api).apply(obj)  # type: ignore[arg-type]
    (request,) = api.sent
    assert request["method"] == "PATCH"
    assert request["path"] == "/api/v1/namespaces/n/configmaps/c"
    assert request["header_params"]["Content-Type"] == "application/apply-patch+yaml"
    assert request["body"] == apply_patch_body(obj)


def test_a_typed_patch_failure_is_not_a_transient_500() -> None:
    typed = ApiError(500, "InternalError", "failed to create typed patch object (n/a; apps/v1, Kind=Deployment):"
                     " .spec.template.spec.hostNetwork: expected boolean")
    assert typed.unappliable
    assert ApiError(500, "InternalError", "failed to convert new object (n/a; apps/v1, Kind=Deployment) to proper"
                    " version: unable to convert unstructured object to apps/v1, Kind=Deployment: cannot convert"
                    " float64 to int64").unappliable
    assert not ApiError(500, "InternalError", "etcdserver: request timed out").unappliable


def test_the_fence_is_asked_before_every_write_but_not_before_reads() -> None:
    """Leader election: a replica not holding the lease (or past its renew deadline) sends no
    write at all; reads go on (warm caches)."""
    from apprelease.k8s.fence import NotLeading, WriteFence

    now = [1000.0]
    fence = WriteFence(lambda: now[0])
    api = RecordingApiClient()
    kube = Kube(api, fence=fence)  # type: ignore[arg-type]
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"}}
    kube.get("Deployment", "ns", "web")
    with pytest.raises(NotLeading):
        kube.apply(deployment)
    with pytest.raises(NotLeading):
        kube.delete("Deployment", "ns", "web")
    assert [s["method"] for s in api.sent] == ["GET"]  # refused writes never reach the transport
    fence.extend(now[0] + 5)
    kube.apply(deployment)
    now[0] += 5
    with pytest.raises(NotLeading, match="renew deadline"):
        kube.create({"kind": "Event", "metadata": {"namespace": "ns"}})
    assert [s["method"] for s in api.sent] == ["GET", "PATCH"]
