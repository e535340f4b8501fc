"""The operator's logs: text by default, JSON lines with `run --log-format json`.

Every line logged while a reconcile runs (in its worker thread) carries the app's namespace,
name and revision, whichever logger wrote it: the reconcile sets a context variable, and a
log-record factory copies it onto each record as it is made (in the thread that logs).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from ..k8s.observe import AppKey

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attribute holding (namespace, name, revision) of the app being reconciled.
APP_ATTRIBUTE = "apprelease_app"


@dataclass
class Reconciling:
    namespace: str
    name: str
    revision: int | None = None  # set again once the plan names the revision it rolls out


_current: contextvars.ContextVar[Reconciling | None] = contextvars.ContextVar("apprelease_reconciling", default=None)


@contextmanager
def reconciling(key: AppKey, revision: int | None = None) -> Iterator[Reconciling]:
    """Log lines inside carry this app; update ``.revision`` when it changes."""
    context = Reconciling(key[0], key[1], revision)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def set_revision(revision: int | None) -> None:
    """The revision the app being reconciled is at (or rolls out), for its next log lines."""
    context = _current.get()
    if context is not None and isinstance(revision, int):
        context.revision = revision


_installed = False


def install_record_factory() -> None:
    """Make every new log record carry the app being reconciled (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = _current.get()
        if context is not None:
            setattr(record, APP_ATTRIBUTE, (context.namespace, context.name, context.revision))
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


# Keys a JSON line may have; other extras (kopf passes objects such as its settings) are dropped.
_KEPT = {"time", "level", "logger", "message", "exc_info", "stack_info"}


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, and namespace, name, revision
    when the line is about one app (ours from a reconcile, kopf's from its object logger)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"}, timestamp="time")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in [k for k in log_data if k not in _KEPT]:
            del log_data[key]
        app = getattr(record, APP_ATTRIBUTE, None)
        if app is not None:
            log_data["namespace"], log_data["name"], revision = app
            if revision is not None:
                log_data["revision"] = revision
            return
        ref = getattr(record, "k8s_ref", None)  # kopf's per-object log lines
        if isinstance(ref, dict) and ref.get("name"):
            log_data["namespace"], log_data["name"] = ref.get("namespace"), ref["name"]


class FailedProbeInOneLine(logging.Filter):
    """kopf answers a failing liveness probe by raising from its /healthz handler, and aiohttp
    then logs that request's traceback at ERROR. kopf has logged the probe's failure (what
    failed and why) already: this keeps one line instead of a stack that reads like a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ == "ActivityError" and type(error).__module__.startswith("kopf."):
            record.msg, record.args = "liveness probe failed (kopf.activities.probe says why)", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_FAILED_PROBE = FailedProbeInOneLine()


def configure(*, verbose: bool, log_format: str) -> None:
    """The root handler for `apprelease run`: text or JSON lines, on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    install_record_factory()
    logging.getLogger("aiohttp.server").addFilter(_FAILED_PROBE)
