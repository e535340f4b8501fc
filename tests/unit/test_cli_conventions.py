"""kubectl-plugin conventions of the CLI: flags after the subcommand, -o json|yaml, completion.

Parsing only (click's CliRunner with a recording fake client); what the commands do against
a real apiserver is covered by the e2e tests.
"""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from apprelease.cli import common
from apprelease.cli.main import _register_subcommands, cli

APP = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
       "metadata": {"name": "shop", "namespace": "team-a", "resourceVersion": "7"},
       "spec": {"image": "registry/shop:v1"}, "status": {"phase": "Healthy"}}


class RecordingKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        self.calls.append(("get", kind, str(namespace), name))
        return APP

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, str(namespace)))
        return []

    def request(self, method: str, path: str, **kwargs: Any) -> None:
        self.calls.append((method, path, kwargs["content_type"]))


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> RecordingKube:
    fake = RecordingKube()
    seen: list[common.Context] = []

    def kube_property(self: common.Context) -> RecordingKube:
        seen.append(self)
        return fake

    monkeypatch.setattr(common.Context, "kube", property(kube_property))
    fake.contexts = seen  # type: ignore[attr-defined]
    return fake


@pytest.fixture(scope="module", autouse=True)
def commands() -> None:
    _register_subcommands()


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), prog_name="apprelease", env={"KUBECONFIG": None})
    return result


@pytest.mark.parametrize("args", [
    ("promote", "shop", "-n", "team-a"),
    ("-n", "team-a", "promote", "shop"),
    ("promote", "-n", "team-a", "shop"),
    ("promote", "shop", "--namespace=team-a"),
    ("-n", "elsewhere", "promote", "shop", "-n", "team-a"),  # the later flag wins, as in kubectl
])
def test_namespace_is_accepted_before_or_after_the_subcommand(kube: RecordingKube, args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    method, path, content_type = kube.calls[-1]
    assert (method, path) == ("PATCH", "/apis/apprelease.io/v1alpha1/namespaces/team-a/appreleases/shop")
    assert content_type == "application/merge-patch+json"
    assert "shop: promotion requested" in result.output


@pytest.mark.parametrize("command", [
    ["pause", "shop"], ["resume", "shop"], ["abort", "shop"], ["retry", "shop"], ["restart", "shop"],
    ["take-down", "shop"], ["bring-up", "shop"], ["rollback", "shop", "--to-revision", "1"],
    ["history", "shop"], ["get", "shop", "-o", "json"], ["registry", "shop"],
    ["offline", "shop", "--pod", "p"], ["online", "shop", "--pod", "p"],
])
def test_every_command_takes_the_kubectl_flags_after_its_arguments(
    kube: RecordingKube, command: list[str]
) -> None:
    invoke(*command, "-n", "ns1", "--context", "ctx1", "--kubeconfig", "/tmp/a:/tmp/b")
    used = kube.contexts  # type: ignore[attr-defined]
    assert used, "the command never reached the client"
    assert {(c.namespace, c.context, c.kubeconfig) for c in used} == {("ns1", "ctx1", "/tmp/a")}


def test_run_keeps_its_repeatable_namespace_and_takes_context() -> None:
    run = cli.commands["run"]
    parent = click.Context(cli, obj=common.Context())
    context = run.make_context("run", ["--namespace", "a", "--namespace", "b", "--context", "prod"],
                               parent=parent)
    assert context.params["namespaces"] == ("a", "b")
    assert parent.obj.context == "prod"


@pytest.mark.parametrize("output, parse", [("json", json.loads), ("yaml", yaml.safe_load)])
def test_get_prints_the_object(kube: RecordingKube, output: str, parse: Any) -> None:
    result = invoke("get", "shop", "-n", "team-a", "-o", output)
    assert result.exit_code == 0, result.output
    assert parse(result.output) == APP
    assert kube.calls == [("get", "AppRelease", "team-a", "shop")]


def test_history_prints_revisions_as_json(kube: RecordingKube) -> None:
    result = invoke("history", "shop", "-o", "json", "-n", "team-a")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    assert ("list", "ControllerRevision", "team-a") in kube.calls


def test_get_refuses_watch_with_output() -> None:
    result = invoke("get", "shop", "-w", "-o", "yaml")
    assert result.exit_code == 2
    assert "-o and -w do not go together" in result.output


def test_a_rollback_that_cannot_be_planned_is_a_clear_error(kube: RecordingKube) -> None:
    result = invoke("rollback", "shop", "--to-revision", "9")
    assert result.exit_code == common.EXIT_ERROR
    assert "revision 9 is not in the history (known: none)" in result.output


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")])
def test_completion_scripts(shell: str, marker: str) -> None:
    result = invoke("completion", shell)
    assert result.exit_code == 0, result.output
    assert "_APPRELEASE_COMPLETE" in result.output and marker in result.output


def test_completion_of_subcommands_and_flags() -> None:
    from click.shell_completion import ShellComplete

    complete = ShellComplete(cli, {}, "apprelease", "_APPRELEASE_COMPLETE")
    names = [c.value for c in complete.get_completions([], "pro")]
    assert names == ["promote"]
    flags = [c.value for c in complete.get_completions(["promote", "shop"], "--")]
    assert {"--namespace", "--context", "--kubeconfig", "--full"} <= set(flags)


def test_console_is_listed_beside_the_other_verbs() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert {"console", "promote", "rollback", "get", "history", "completion"} <= listed
