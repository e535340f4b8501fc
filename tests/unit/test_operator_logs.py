"""The operator's log lines: a failing liveness probe is one line, not aiohttp's traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from kopf._core.engines.activities import ActivityError

from apprelease.controller.logs import FailedProbeInOneLine


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                                 ("127.0.0.1",), sys.exc_info())


def test_a_failing_liveness_probe_is_one_warning_line_without_a_traceback() -> None:
    record = _record(ActivityError("One or more handlers failed.", outcomes={}))
    assert FailedProbeInOneLine().filter(record)
    assert record.exc_info is None and record.levelname == "WARNING"
    assert "Traceback" not in logging.Formatter().format(record)


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad")])
def test_any_other_error_in_a_request_keeps_its_traceback(error: BaseException) -> None:
    record = _record(error)
    assert FailedProbeInOneLine().filter(record)
    assert record.exc_info is not None and "Traceback" in logging.Formatter().format(record)
