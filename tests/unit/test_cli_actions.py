"""apprelease.actions: the patches every operation sends (shared by the CLI and the console)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apprelease import actions
from apprelease.k8s.client import ApiError
from apprelease.k8s.history import to_controller_revision
from apprelease.rollout.observed import RevisionRecord

from .sim import make_app

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
APP = {"metadata": {"name": "shop", "resourceVersion": "41",
                    "annotations": {"apprelease.io/offline": "shop-a,shop-b"}},
       "spec": {"image": "registry/shop:v2", "port": 8080, "replicas": 3},
       "status": {"currentRevisionHash": "h2", "stableRevisionHash": "h2"}}


def plan(action: actions.Action, app: dict[str, Any] | None = None) -> actions.Planned:
    return action.plan("shop", app, [], NOW)


def test_promote_writes_a_fresh_request_annotation() -> None:
    step, full = plan(actions.Promote()), plan(actions.Promote(full=True))
    assert step.patch is not None and full.patch is not None
    step_value = step.patch.body["metadata"]["annotations"]["apprelease.io/promote"]
    assert step_value.startswith("step:2026-11-23T10:00:00Z-")
    assert full.patch.body["metadata"]["annotations"]["apprelease.io/promote"].startswith("full:")
    assert step.patch.content_type == actions.MERGE
    assert step_value != plan(actions.Promote()).patch.body["metadata"]["annotations"]["apprelease.io/promote"]  # type: ignore[union-attr]
    assert full.message == "shop: full promotion requested"


@pytest.mark.parametrize("action, body", [
    (actions.Pause(), {"spec": {"paused": True}}),
    (actions.Pause(paused=False), {"spec": {"paused": False}}),
    (actions.Restart(), {"spec": {"restartAt": "2026-11-23T10:00:00Z"}}),
    (actions.TakeDown(), {"spec": {"takenDown": True}}),
    (actions.TakeDown(down=False), {"spec": {"takenDown": False}}),
])
def test_spec_actions(action: actions.Action, body: dict[str, Any]) -> None:
    planned = plan(action)
    assert planned.patch == actions.Patch(actions.MERGE, body)


@pytest.mark.parametrize("action, key", [(actions.Abort(), "abort"), (actions.Retry(), "retry")])
def test_request_annotations(action: actions.Action, key: str) -> None:
    planned = plan(action)
    assert planned.patch is not None
    assert planned.patch.body["metadata"]["annotations"][f"apprelease.io/{key}"].startswith("2026-11-23T10:00:00Z-")


def test_offline_adds_pods_and_online_removes_them_under_a_precondition() -> None:
    offline = plan(actions.SetOffline(("shop-c", "shop-a"), True), APP)
    assert offline.patch is not None
    assert offline.patch.body == {"metadata": {"resourceVersion": "41",
                                               "annotations": {"apprelease.io/offline": "shop-a,shop-b,shop-c"}}}
    online = plan(actions.SetOffline(("shop-a", "shop-b"), False), APP)
    assert online.patch is not None
    assert online.patch.body["metadata"]["annotations"] == {"apprelease.io/offline": None}
    assert online.message == "shop: offline pods: none"


def _history() -> list[dict[str, Any]]:
    app = make_app({"image": "registry/shop:v2"})
    return [to_controller_revision(app, RevisionRecord(
        number=n, hash=f"h{n}", created="t", promoted="t",
        template=make_app({"image": f"registry/shop:v{n}"}).spec.revision_template())) for n in (1, 2)]


class Fake:
    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.version = 41
        self.sent: list[tuple[str, Any]] = []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return {**APP, "metadata": {**APP["metadata"], "resourceVersion": str(self.version)}}

    def list(self, kind: str, namespace: str | None = None, **query: Any) -> list[dict[str, Any]]:
        assert query == {"labelSelector": "app.kubernetes.io/instance=shop,app.kubernetes.io/managed-by=apprelease"}
        return _history()

    def request(self, method: str, path: str, *, body: Any = None, content_type: str = "",
                      resource: str = "") -> None:
        self.sent.append((content_type, body))
        if self.conflicts:
            self.conflicts -= 1
            self.version += 1
            raise ApiError(409, "Conflict", "the object has been modified")


def test_rollback_replans_after_a_conflict() -> None:
    fake = Fake(conflicts=1)
    message = actions.perform(fake, "ns", "shop", actions.Rollback(to_revision=1))
    assert message == "shop: rolling back to revision 1 (registry/shop:v1)"
    assert [body[0]["value"] for _, body in fake.sent] == ["41", "42"]
    assert fake.sent[-1][0] == actions.JSON_PATCH
    assert {"op": "add", "path": "/spec/image", "value": "registry/shop:v1"} in fake.sent[-1][1]


def test_rollback_without_a_target_sends_nothing() -> None:
    fake = Fake(conflicts=0)
    with pytest.raises(actions.ActionError, match="revision 7 is not in the history"):
        actions.perform(fake, "ns", "shop", actions.Rollback(to_revision=7))
    assert fake.sent == []


def test_button_names_map_to_actions() -> None:
    assert actions.ACTIONS["promote-full"]() == actions.Promote(full=True)
    assert actions.ACTIONS["resume"]() == actions.Pause(paused=False)
    assert actions.ACTIONS["bring-up"]() == actions.TakeDown(down=False)
