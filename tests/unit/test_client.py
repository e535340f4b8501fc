"""The one Kubernetes client: its request bodies, its kubeconfig loader, and the identities it
acts as (the apiserver itself: tests/e2e; here a scripted one over real HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from apprelease.k8s.client import (
    ApiError,
    Apiserver,
    Identity,
    Kube,
    api_client,
    apply_patch_body,
    context_namespace,
    load_configuration,
    without_own_credentials,
)
from tests.unit.fake_apiserver import FakeApiserver, serving


class RecordingApiClient:
    """Stands in for the kubernetes ApiClient: records what would be sent, answers 200."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    configuration = type("Configuration", (), {"cert_file": None, "api_key": {}})()

    def param_serialize(self, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
        self.sent.append({"method": method, "path": path, **kwargs})
        return (method, path, kwargs.get("header_params") or {}, kwargs.get("body"), None)

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


# The one kubeconfig loader --------------------------------------------------------------


def _kubeconfig(path: Path, current: bool = True, **contexts: str) -> Path:
    """A kubeconfig with one context (and cluster, and user) per name → server."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", **({"current-context": next(iter(contexts))} if current else {}),
        "clusters": [{"name": n, "cluster": {"server": server}} for n, server in contexts.items()],
        "users": [{"name": n, "user": {"token": f"{n}-token"}} for n in contexts],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n, "namespace": f"{n}-ns"}} for n in contexts],
    }))
    return path


@pytest.fixture
def outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_the_loader_takes_the_context_named(tmp_path: Path, outside_a_pod: None) -> None:
    config = _kubeconfig(tmp_path / "config", dev="https://dev.example:6443", prod="https://prod.example:6443")
    current = load_configuration(str(config))
    chosen = load_configuration(str(config), "prod")
    assert current.host == "https://dev.example:6443"
    assert chosen.host == "https://prod.example:6443"
    assert chosen.get_api_key_with_prefix("BearerToken", alias="authorization") == "Bearer prod-token"
    assert context_namespace(str(config), "prod") == "prod-ns" and context_namespace(str(config)) == "dev-ns"
    assert context_namespace(str(tmp_path / "missing")) == "default"


def test_kubeconfig_lists_every_file_merged_as_kubectl_does(tmp_path: Path, outside_a_pod: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """$KUBECONFIG=a:b is read when the loader runs, every file of it (the operator read only
    the first)."""
    first = _kubeconfig(tmp_path / "a", dev="https://dev.example:6443")
    second = _kubeconfig(tmp_path / "b", current=False, prod="https://prod.example:6443")
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    assert load_configuration(context="prod").host == "https://prod.example:6443"
    assert load_configuration().host == "https://dev.example:6443"


def test_apprelease_run_connects_with_the_context_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`apprelease run --context X` was accepted and ignored (the operator had a loader of its own)."""
    from apprelease.cli.main import cli
    from apprelease.controller import run as run_module

    started: list[Any] = []
    monkeypatch.setattr(run_module, "run_operator", lambda options, **_: started.append(options))
    result = CliRunner().invoke(cli, ["run", "--kubeconfig", str(tmp_path / "config"), "--context", "prod"])
    assert result.exit_code == 0, result.output
    assert (started[0].kubeconfig, started[0].context) == (str(tmp_path / "config"), "prod")


# Identities: whose request it is ----------------------------------------------------------


def test_each_identity_reaches_the_apiserver_as_itself(tmp_path: Path, outside_a_pod: None) -> None:
    with serving(FakeApiserver()) as served:
        apiserver = Apiserver(load_configuration(str(served.kubeconfig(tmp_path))))
        try:
            apiserver.as_().can("list", "pods", "shop")
            apiserver.as_(Identity("bearer", token="user-token")).can("list", "pods", "shop")
            apiserver.as_(Identity("impersonate", user="bob", groups=("dev", "ops"))).whoami()
        finally:
            apiserver.close()
        own, bearer, impersonating = served.apiserver.requests
    assert own.header("Authorization") == ["Bearer alice-token"] and own.header("Impersonate-User") == []
    assert bearer.header("Authorization") == ["Bearer user-token"]  # never ours as well
    assert impersonating.header("Authorization") == ["Bearer alice-token"]
    assert impersonating.header("Impersonate-User") == ["bob"]
    assert impersonating.header("Impersonate-Group") == ["dev", "ops"]  # one header per group
    assert own.body["spec"]["resourceAttributes"] == {"namespace": "shop", "verb": "list", "group": "",
                                                       "resource": "pods"}


def test_a_passed_through_token_never_travels_with_our_credentials(tmp_path: Path, outside_a_pod: None) -> None:
    configuration = load_configuration(str(_kubeconfig(tmp_path / "config", dev="https://dev.example:6443")))
    configuration.cert_file, configuration.key_file = "/our/client.crt", "/our/client.key"
    with pytest.raises(ValueError, match="own credentials"):
        Kube(api_client(configuration), Identity("bearer", token="user-token"))
    bare = without_own_credentials(configuration)
    assert (bare.cert_file, bare.key_file, bare.api_key, bare.refresh_api_key_hook) == (None, None, {}, None)
    assert bare.host == configuration.host and bare.ssl_ca_cert == configuration.ssl_ca_cert
    assert Identity("bearer", token="secret").key.startswith("bearer:") and "secret" not in repr(
        Identity("bearer", token="secret"))


def test_an_invalid_objects_causes_come_with_the_error() -> None:
    body = json.dumps({"kind": "Status", "reason": "Invalid", "message": "AppRelease.apprelease.io \"x\" is invalid",
                       "details": {"causes": [{"field": "spec.image", "message": "Required value"}]}})
    error = ApiError.from_body(422, "Unprocessable Entity", body)
    assert error.causes == [{"field": "spec.image", "message": "Required value"}] and error.invalid
    assert ApiError.from_body(500, "x", "not json").causes == []
