"""Docs that describe code stay true to it; the image holds the operator only."""

from __future__ import annotations

import re

from apprelease.rollout.failures import ALL_CLASSES
from tests.support import ROOT


def test_every_failure_class_is_documented_with_its_bound() -> None:
    text = (ROOT / "docs" / "failures.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|[^|]*\| ([^|]+) \|", text, re.M)}
    for failure in ALL_CLASSES:
        assert failure.reason in rows, f"{failure.reason} missing from docs/failures.md"
        bound = rows[failure.reason]
        if failure.bound is None:
            assert "none" in bound or "progressDeadlineSeconds" in bound or "as above" in bound, (failure.reason, bound)
        else:
            minutes = int(failure.bound.total_seconds() // 60)
            assert f"{minutes} min" in bound, (failure.reason, bound)


def test_the_image_is_pinned_by_digest_and_holds_no_developer_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert all(line.split()[1] == "${BASE}" for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert "devtools" not in "".join(line for line in dockerfile.splitlines() if line.startswith("COPY"))
