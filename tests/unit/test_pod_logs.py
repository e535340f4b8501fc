"""The console's log view: lines split across chunks, the cap on followed logs, and the access
review of a subresource."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from apprelease.console import pod_logs
from apprelease.k8s.client import Kube


def test_lines_split_across_chunks_come_out_whole() -> None:
    lines, pending = pod_logs._split("", "one\ntw")
    assert (lines, pending) == (["one"], "tw")
    lines, pending = pod_logs._split(pending, "o\nthree\n")
    assert (lines, pending) == (["two", "three"], "")


def test_a_runaway_line_is_cut() -> None:
    lines, pending = pod_logs._split("", "x" * (pod_logs.MAX_LINE_CHARS + 10) + "\n" + "y" * 10**6)
    assert [len(line) for line in lines] == [pod_logs.MAX_LINE_CHARS]
    assert len(pending) == pod_logs.MAX_LINE_CHARS * 4


def test_followers_past_the_limit_get_503_and_a_freed_slot_is_reused() -> None:
    followers = pod_logs.Followers(limit=1)
    with followers.slot(), pytest.raises(web.HTTPServiceUnavailable), followers.slot():
        pass
    with followers.slot():
        pass


class _Recorder(Kube):
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append(kwargs["body"])
        return {"status": {"allowed": True}}


@pytest.mark.parametrize(("resource", "attributes"), [
    ("pods/log", {"resource": "pods", "subresource": "log"}),
    ("pods", {"resource": "pods"}),
])
def test_a_subresource_is_reviewed_as_rbac_names_it(resource: str, attributes: dict[str, str]) -> None:
    kube = _Recorder()
    assert kube.can("get", resource, "team-a")
    assert kube.sent[0]["spec"]["resourceAttributes"] == {"namespace": "team-a", "verb": "get", "group": "",
                                                          **attributes}
