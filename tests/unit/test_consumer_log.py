"""The Java consumer's log as the e2e tests read it: lines parsed into picks and pushes, and the
queries lossless-release assertions are made of."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.java_consumer import ConsumerLog, Pick, Push, parse_line

LINES = """\
1000000 started
1000000 push 2 10.0.0.1:8080:1.0:true:true,10.0.0.2:8080:0.75:true:true
1000000 pick 10.0.0.1:8080 stable 1
1000100 pick 10.0.0.2:8080 canary 2
1000200 pick 10.0.0.1:8080 - -
1000300 none IllegalStateException: no host to srv for serviceInfo: svc
1000400 none IllegalStateException: no host to srv for serviceInfo: svc
1000900 pick 10.0.0.2:8080 canary 2
1001000 pick 10.0.0.1:8080 stable 1
1001050 none IllegalStateException: no host
"""


@pytest.fixture
def log(tmp_path: Path) -> ConsumerLog:
    path = tmp_path / "picks.log"
    path.write_text(LINES + "1001100 pick 10.0.0.9")  # a line still being written
    return ConsumerLog(path).refresh()


def test_lines_become_picks_and_pushes() -> None:
    assert parse_line("1000100 pick 10.0.0.2:8080 canary 2\n") == Pick(1000.1, "10.0.0.2:8080", "canary", "2")
    assert parse_line("1000200 pick 10.0.0.1:8080 - -") == Pick(1000.2, "10.0.0.1:8080", None, None)
    none = parse_line("1000300 none IllegalStateException: no host")
    assert isinstance(none, Pick) and none.instance is None and none.reason == "IllegalStateException: no host"
    push = parse_line("1000000 push 1 10.0.0.1:8080:1.0:true:true")
    assert isinstance(push, Push) and push.instances == ("10.0.0.1:8080",)
    assert parse_line("1000000 started") is None and parse_line("Exception in thread") is None


def test_a_partial_last_line_waits_for_its_end(log: ConsumerLog) -> None:
    assert len(log.picks) == 8
    with log.path.open("a") as handle:
        handle.write(":8080 stable 1\n")
    assert log.refresh().picks[-1] == Pick(1001.1, "10.0.0.9:8080", "stable", "1")


def test_queries(log: ConsumerLog) -> None:
    assert log.by_instance() == {"10.0.0.1:8080": 3, "10.0.0.2:8080": 2}
    assert log.by_instance(start=1000.05, end=1000.95) == {"10.0.0.2:8080": 2, "10.0.0.1:8080": 1}
    assert log.first_pick("10.0.0.2") == 1000.1 and log.last_pick("10.0.0.2") == 1000.9
    assert log.first_pick_after("10.0.0.1", 1000.3) == 1001.0
    assert log.first_and_last_by_ip() == {"10.0.0.1": (1000.0, 1001.0), "10.0.0.2": (1000.1, 1000.9)}
    assert len(log.unavailable()) == 3
    # 1000.3 .. 1000.9 without an instance; the trailing run (one line) counts 0 s.
    assert log.longest_unavailable() == pytest.approx(0.6)
    assert log.longest_unavailable(start=1000.35) == pytest.approx(0.5)
    assert log.longest_silence() == pytest.approx(0.5)
    assert log.share("canary") == pytest.approx(2 / 5)
    assert log.share_of({"10.0.0.1:8080"}, start=1000.15) == pytest.approx(2 / 3)
    assert log.pushes[0].detail[1] == "10.0.0.2:8080:0.75:true:true"
