"""`apprelease rollback` against an app the operator keeps writing to (fake API, real CLI)."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from apprelease.cli.common import Context
from apprelease.cli.ops import rollback
from apprelease.k8s.client import ApiError
from apprelease.k8s.history import to_controller_revision
from apprelease.rollout.observed import RevisionRecord

from .sim import make_app


class _MovingApp:
    """An AppRelease whose resourceVersion moves on (a status write) before our first patch."""

    def __init__(self, conflicts: int):
        self.resource_version = 10
        self.conflicts_left = conflicts
        self.patches: list[list[dict[str, Any]]] = []
        app = make_app({"image": "registry/shop:v2"})
        self.history = [
            to_controller_revision(app, RevisionRecord(
                number=n, hash=f"h{n}", created="t", promoted="t",
                template=make_app({"image": f"registry/shop:v{n}"}).spec.revision_template()))
            for n in (1, 2)
        ]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": str(self.resource_version)},
                "spec": {"image": "registry/shop:v2", "port": 8080, "replicas": 3},
                "status": {"currentRevisionHash": "h2", "stableRevisionHash": "h2"}}

    def list(self, kind: str, namespace: str, **_: Any) -> list[dict[str, Any]]:
        return self.history

    def request(self, method: str, path: str, *, body: list[dict[str, Any]], **_: Any) -> None:
        self.patches.append(body)
        if self.conflicts_left:
            self.conflicts_left -= 1
            self.resource_version += 1
            raise ApiError(409, "Conflict", "the object has been modified")


def _run(api: _MovingApp) -> Any:
    context = Context(kubeconfig=None, namespace="ns")
    context._kube = api  # type: ignore[assignment]
    return CliRunner().invoke(rollback, ["shop", "--to-revision", "1"], obj=context)


def test_rollback_rereads_and_retries_when_the_app_moved_on() -> None:
    api = _MovingApp(conflicts=1)
    result = _run(api)
    assert result.exit_code == 0, result.output
    assert "rolling back to revision 1 (registry/shop:v1)" in result.output
    preconditions = [patch[0] for patch in api.patches]
    assert preconditions == [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "10"},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "11"},
    ]
    assert {"op": "add", "path": "/spec/image", "value": "registry/shop:v1"} in api.patches[1]


def test_rollback_gives_up_with_the_conflict_after_five_attempts() -> None:
    api = _MovingApp(conflicts=99)
    result = _run(api)
    assert result.exit_code == 4  # EXIT_ERROR
    assert "the object has been modified" in result.output
    assert len(api.patches) == 5
