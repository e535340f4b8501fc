"""The CLI as pipelines call it: `status` (a watch, its verdicts and exit codes), `list`,
`set image`, `-o wide|name|json|yaml|jsonpath=...`, `render -n`, readable errors.

A fake apiserver client serves LIST pages and watch streams; what the commands do against
the real apiserver is covered by tests/e2e/test_cli.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from apprelease.cli import common
from apprelease.cli.common import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CliError
from apprelease.cli.main import _register_subcommands, cli
from apprelease.cli.output import human_age, render_template, table
from apprelease.cli.status import assess, wait_for_verdict
from apprelease.k8s.client import ApiError
from apprelease.k8s.watch import watch
from tests.support import EXAMPLE


def app(generation: int = 2, observed: int | None = 2, phase: str | None = "Healthy", message: str = "",
        stalled: bool = False, name: str = "shop", namespace: str = "team-a", **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Stalled", "status": "True" if stalled else "False"}]
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
            "metadata": {"name": name, "namespace": namespace, "generation": generation,
                         "resourceVersion": "10", "creationTimestamp": "2026-11-23T09:00:00Z"},
            "spec": {"image": "registry/shop:v2"},
            "status": {**({"observedGeneration": observed} if observed is not None else {}),
                       **({"phase": phase} if phase else {}), "message": message,
                       "conditions": conditions, **status}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Stream:
    """A watch response: the given events as JSON lines; at its end the server's timeout
    has passed (the clock moves on by it)."""

    def __init__(self, events: list[dict[str, Any]], clock: Clock, query: dict[str, Any], status: int = 200):
        self.events, self.clock, self.query, self.status = events, clock, query, status
        self.closed = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"
        self.clock.now += float(self.query["timeoutSeconds"])

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class FakeApiserver:
    """LIST answers (one per call, the last repeated) and watch streams (one per call)."""

    def __init__(self, lists: list[list[dict[str, Any]] | Exception], streams: list[list[dict[str, Any]] | int],
                 clock: Clock | None = None):
        self.lists, self.streams = lists, streams
        self.clock = clock or Clock()
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None, **_: Any) -> Any:
        self.calls.append((method, path, dict(query or {})))
        answer = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        if isinstance(answer, Exception):
            raise answer
        return {"metadata": {"resourceVersion": "10"}, "items": answer}

    def open_stream(self, path: str, *, query: dict[str, Any], resource: str, read_timeout: float) -> Stream:
        self.calls.append(("WATCH", path, dict(query)))
        events = self.streams.pop(0) if self.streams else []
        if isinstance(events, int):
            return Stream([], self.clock, query, status=events)
        return Stream(events, self.clock, query)

    def watches(self) -> list[dict[str, Any]]:
        return [q for verb, _, q in self.calls if verb == "WATCH"]


def modified(obj: dict[str, Any], version: str = "11") -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = version
    return {"type": "MODIFIED", "object": obj}


# assess: the verdict table ------------------------------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    (app(phase="Healthy"), EXIT_OK),
    (app(phase="TakenDown"), EXIT_OK),
    (app(phase="Degraded", message="aborted: CanaryNotReady"), EXIT_FAILED),
    (app(phase="Progressing", stalled=True), EXIT_FAILED),
    (app(phase="Progressing"), None),
    (app(phase="Paused"), None),
    (app(phase="Healthy", observed=1), None),  # the previous spec's verdict: not this one
    (app(phase="Degraded", observed=1), None),
    (app(phase=None, observed=None), None),
])
def test_assess_judges_only_the_generation_it_started_with(body: dict[str, Any], code: int | None) -> None:
    assert assess(body, generation=2)[1] == code


def test_assess_says_what_it_waits_for() -> None:
    assert assess(app(observed=1), 2)[0] == "waiting for the operator to observe generation 2 (observed: 1)"
    assert assess(app(phase="Paused", message="paused at step 2/4: promote"), 2)[0] == \
        "Paused: paused at step 2/4: promote"


# wait_for_verdict: one watch --------------------------------------------------------------


def test_status_waits_through_a_watch_for_the_new_generation_then_healthy() -> None:
    api = FakeApiserver(
        lists=[[app(phase="Healthy", observed=1)]],
        streams=[[modified(app(phase="Progressing", message="canary step 1/2")),
                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                  modified(app(phase="Healthy", message="revision 2 promoted"), "13")]],
    )
    lines: list[str] = []
    code = wait_for_verdict(api, "team-a", "shop", 60, echo=lambda text, **_: lines.append(text),  # type: ignore[arg-type]
                            clock=api.clock, sleep=api.clock.sleep)
    assert code == EXIT_OK
    assert lines == ["waiting for the operator to observe generation 2 (observed: 1)",
                     "Progressing: canary step 1/2", "Healthy: revision 2 promoted"]
    # One LIST and one WATCH from its version, on this object only: no polling.
    assert [verb for verb, _, _ in api.calls] == ["GET", "WATCH"]
    assert api.calls[0][2] == {"fieldSelector": "metadata.name=shop"}
    assert api.watches()[0]["resourceVersion"] == "10"
    assert api.watches()[0]["timeoutSeconds"] == 60


def test_status_fails_when_degraded_or_stalled() -> None:
    for failed in (app(phase="Degraded", message="aborted"), app(phase="Progressing", stalled=True, message="x")):
        api = FakeApiserver(lists=[[app(phase="Progressing")]], streams=[[modified(failed)]])
        assert wait_for_verdict(api, "team-a", "shop", None, echo=lambda *a, **k: None,
                                clock=api.clock, sleep=api.clock.sleep) == EXIT_FAILED


def test_status_times_out_while_paused_and_the_watch_ends_by_then() -> None:
    api = FakeApiserver(lists=[[app(phase="Paused")]], streams=[[], []])
    errors: list[str] = []

    def echo(text: str, err: bool = False) -> None:
        if err:
            errors.append(text)

    assert wait_for_verdict(api, "team-a", "shop", 30, echo=echo, clock=api.clock,  # type: ignore[arg-type]
                            sleep=api.clock.sleep) == EXIT_TIMEOUT
    assert api.watches()[0]["timeoutSeconds"] == 30  # the apiserver ends the stream at the deadline
    assert len(api.watches()) == 1
    assert errors == ["error: timed out after 30s waiting for shop (Paused)"]


def test_status_resumes_a_watch_the_server_ended_and_relists_after_410() -> None:
    api = FakeApiserver(
        lists=[[app(phase="Progressing")], [app(phase="Progressing", message="relisted")]],
        streams=[[modified(app(phase="Progressing", message="a"), "20")],  # ends (server timeout)
                 [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
                 [modified(app(phase="Healthy"), "40")]],
    )
    assert wait_for_verdict(api, "team-a", "shop", 3600, echo=lambda *a, **k: None,
                            clock=api.clock, sleep=api.clock.sleep) == EXIT_OK
    assert [verb for verb, _, _ in api.calls] == ["GET", "WATCH", "WATCH", "GET", "WATCH"]
    assert [q["resourceVersion"] for q in api.watches()] == ["10", "20", "10"]


def test_status_of_a_missing_app_is_an_error() -> None:
    api = FakeApiserver(lists=[[]], streams=[])
    with pytest.raises(CliError, match='"shop" not found in namespace team-a'):
        wait_for_verdict(api, "team-a", "shop", 10, echo=lambda *a, **k: None, clock=api.clock, sleep=api.clock.sleep)


def test_a_dropped_watch_is_retried_but_a_refused_list_is_raised() -> None:
    clock = Clock()
    api = FakeApiserver(lists=[[app()]], streams=[500, [modified(app(), "12")]], clock=clock)

    def flaky(path: str, **kwargs: Any) -> Stream:
        stream = FakeApiserver.open_stream(api, path, **kwargs)
        if stream.status == 500:
            raise ApiError(500, "InternalError", "etcd leader changed")
        return stream

    api.open_stream = flaky  # type: ignore[method-assign]
    retried: list[Exception] = []
    events = list(watch(api, "AppRelease", "team-a", until=clock.now + 100, clock=clock,  # type: ignore[arg-type]
                        sleep=clock.sleep, on_retry=retried.append))
    assert [e.type for e in events] == ["LISTED", "MODIFIED"]
    assert len(retried) == 1
    refused = FakeApiserver(lists=[ApiError(403, "Forbidden", "no list")], streams=[])
    with pytest.raises(ApiError):
        list(watch(refused, "AppRelease", "team-a"))  # type: ignore[arg-type]


# The commands -----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def commands() -> None:
    _register_subcommands()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApiserver:
    api = FakeApiserver(lists=[[app(name="web", namespace="b"), app(name="shop", phase="Paused", step="2/4",
                                                                   actualWeight=25, ready="3/3")]],
                        streams=[])

    class Kube:
        def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
            api.calls.append(("GET", f"{namespace}/{name}", {}))
            return app(name=name, namespace=namespace or "")

        def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
            return list(api.request("GET", str(namespace), query=query)["items"])

        def request(self, method: str, path: str, **kwargs: Any) -> Any:
            if method == "GET":
                return api.request(method, path, **kwargs)
            api.calls.append((method, path, kwargs))
            return None

        def open_stream(self, path: str, **kwargs: Any) -> Stream:
            return api.open_stream(path, **kwargs)

    monkeypatch.setattr(common.Context, "kube", property(lambda self: Kube()))
    return api


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="apprelease", env={"KUBECONFIG": None, **(env or {})})


@pytest.mark.parametrize(("final", "code"), [("Healthy", 0), ("Degraded", 1)])
def test_status_command_exit_codes(fake: FakeApiserver, final: str, code: int) -> None:
    fake.lists = [[app(phase="Progressing", observed=1)]]
    fake.streams = [[modified(app(phase=final))]]
    result = invoke("status", "shop", "-n", "team-a", "--timeout", "5m")
    assert result.exit_code == code, result.output
    assert fake.watches()[0]["timeoutSeconds"] == 300


def test_status_timeout_is_exit_3(fake: FakeApiserver, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.lists = [[app(phase="Paused")]]
    fake.streams = [[]]
    monkeypatch.setattr("apprelease.cli.status.time.monotonic", fake.clock)
    monkeypatch.setattr("apprelease.k8s.watch.time.monotonic", fake.clock)
    result = invoke("status", "shop", "--timeout", "2s")
    assert result.exit_code == EXIT_TIMEOUT, result.output
    assert "timed out after 2s" in result.output


def test_status_help_documents_the_exit_codes() -> None:
    result = invoke("status", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for part in ("0 done", "1 status: Degraded or Stalled", "2 usage error", "3 status: timed out", "4 error"):
        assert part in text, text


def test_list_prints_the_printer_columns(fake: FakeApiserver) -> None:
    result = invoke("list", "-n", "team-a")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["NAME", "PHASE", "READY", "STEP", "WEIGHT", "REGISTERED", "AGE"]
    shop = next(row.split() for row in rows if row.startswith("shop "))
    assert shop[:6] == ["shop", "Paused", "3/3", "2/4", "25", "<none>"]
    assert fake.calls[0][1] == "team-a"


def test_list_all_namespaces_and_wide(fake: FakeApiserver) -> None:
    result = invoke("list", "-A", "-o", "wide")
    header, first, second = result.output.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "IMAGE", "PHASE", "READY", "STEP", "WEIGHT", "REGISTERED",
                              "REVISION", "MESSAGE", "AGE"]
    assert (first.split()[:3], second.split()[:2]) == (["b", "web", "registry/shop:v2"], ["team-a", "shop"])
    assert fake.calls[0][1] == "None"  # no namespace in the path: every namespace


@pytest.mark.parametrize(("command", "output", "expected"), [
    (["list", "-A"], "name", "apprelease.apprelease.io/web\napprelease.apprelease.io/shop\n"),
    (["list", "-A"], "jsonpath={.items[*].metadata.name}", "web shop"),
    (["list", "-A"], "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}",
     "web=Healthy\nshop=Paused\n"),
    (["get", "shop"], "jsonpath={.status.phase}", "Healthy"),
    (["get", "shop"], "jsonpath='{.metadata.name} is {.status.phase}'", "shop is Healthy"),
    (["get", "shop"], 'jsonpath={.status.conditions[?(@.type=="Stalled")].status}', "False"),
    (["get", "shop"], "name", "apprelease.apprelease.io/shop\n"),
])
def test_output_formats(fake: FakeApiserver, command: list[str], output: str, expected: str) -> None:
    result = invoke(*command, "-o", output)
    assert result.exit_code == 0, result.output
    assert result.output == expected


def test_list_as_json_and_yaml_is_a_list(fake: FakeApiserver) -> None:
    as_json = json.loads(invoke("list", "-o", "json").output)
    assert as_json["kind"] == "List" and [i["metadata"]["name"] for i in as_json["items"]] == ["web", "shop"]
    assert yaml.safe_load(invoke("list", "-o", "yaml").output) == as_json


@pytest.mark.parametrize("output", ["jsonpath={.status.phase", "jsonpath={range .items[*]}", "xml", "jsonpath"])
def test_bad_output_formats_are_usage_errors(fake: FakeApiserver, output: str) -> None:
    result = invoke("get", "shop", "-o", output)
    assert result.exit_code == 2, result.output


def test_set_image_patches_spec_image(fake: FakeApiserver) -> None:
    result = invoke("set", "image", "shop", "registry/shop:v3", "-n", "team-a")
    assert result.exit_code == 0, result.output
    method, path, kwargs = fake.calls[-1]
    assert (method, path) == ("PATCH", "/apis/apprelease.io/v1alpha1/namespaces/team-a/appreleases/shop")
    assert kwargs["body"] == {"spec": {"image": "registry/shop:v3"}}
    assert kwargs["content_type"] == "application/merge-patch+json"
    assert "shop: image set to registry/shop:v3" in result.output


def test_get_timeout_needs_watch(fake: FakeApiserver) -> None:
    result = invoke("get", "shop", "--timeout", "10s")
    assert result.exit_code == 2 and "--timeout goes with -w" in result.output


# render -n ------------------------------------------------------------------------------


def _rendered_namespaces(output: str) -> set[str]:
    return {doc["metadata"]["namespace"] for doc in yaml.safe_load_all(output) if doc}


def test_render_puts_the_objects_in_the_namespace_of_dash_n(tmp_path: Path) -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    del body["metadata"]["namespace"]
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(body))
    result = invoke("render", "-f", str(path), "-n", "staging")
    assert result.exit_code == 0, result.output
    assert _rendered_namespaces(result.output) == {"staging"}
    assert _rendered_namespaces(invoke("render", "-f", str(EXAMPLE)).output) == {"order-proj"}


def test_render_refuses_a_file_of_another_namespace_than_dash_n() -> None:
    result = invoke("render", "-f", str(EXAMPLE), "-n", "staging")
    assert result.exit_code == 2
    assert "order-service is in namespace order-proj, not staging (-n)" in result.output


# Readable errors ------------------------------------------------------------------------


def _one_line_error(result: Any, expected: str) -> None:
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert expected in result.output


def test_a_missing_kubeconfig_is_one_line(tmp_path: Path) -> None:
    result = invoke("list", "--kubeconfig", str(tmp_path / "nothing"), env={"HOME": str(tmp_path)})
    _one_line_error(result, f"no kubeconfig at {tmp_path / 'nothing'}: pass --kubeconfig or set KUBECONFIG")


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("just a string")
    _one_line_error(invoke("status", "shop", "--kubeconfig", str(path)), f"cannot use the kubeconfig {path}")


def test_an_unreachable_apiserver_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    for command in (["get", "shop"], ["status", "shop"], ["list", "-A"], ["promote", "shop"]):
        _one_line_error(invoke(*command, "--kubeconfig", str(path)), "cannot reach the apiserver at 127.0.0.1:1:")


# Output helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "shown"), [
    (5, "5s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
    (3 * 86400 + 7200, "3d2h"), (20 * 86400, "20d"), (-5, "<invalid>"),
])
def test_ages_as_kubectl_shows_them(seconds: float, shown: str) -> None:
    assert human_age(seconds) == shown


def test_table_of_an_app_without_status() -> None:
    bare = {"metadata": {"name": "new", "creationTimestamp": "2026-11-23T09:59:00Z"}, "spec": {}}
    text = table([bare], now=datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    assert text.splitlines()[1].split() == ["new", "<none>", "<none>", "<none>", "<none>", "<none>", "60s"]


def test_template_literals_and_nested_ranges() -> None:
    data = {"items": [{"n": "a", "tags": ["x", "y"]}, {"n": "b", "tags": []}]}
    assert render_template("{range .items[*]}{.n}:{range .tags[*]}[{@}]{end};{end}", data) == "a:[x][y];b:;"
    assert render_template("{'tab'}{\"\\t\"}{.items[0].tags}", data) == 'tab\t["x", "y"]'
