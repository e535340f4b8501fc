"""Classify whatever a reconcile raised into one named failure (rollout/failures.py).

This is the one place that knows the I/O layers' exceptions; the worker loop and status only
ever see a FailureClass with its bound and advice.
"""

from __future__ import annotations

from dataclasses import dataclass

import urllib3.exceptions
from pydantic import ValidationError

from ..k8s.client import ApiError
from ..k8s.fence import NotLeading
from ..render import PolicyViolation, RenderError
from ..rollout import failures as F

MAX_DETAIL = 400


class ChildConflict(Exception):
    """A child's name is taken by an object this AppRelease does not own."""


@dataclass(frozen=True)
class Failure:
    failure: F.FailureClass
    detail: str
    # The object or its namespace is gone: nothing to report, nothing to retry.
    gone: bool = False
    # A bug rather than a condition of the cluster: worth a traceback in the log.
    log_traceback: bool = False
    # A race with another writer (409): retried at once, not worth a status write.
    quiet: bool = False


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, NotLeading):
        # Our own fence refused the write: this replica lost the lease and is stepping down;
        # the app is the new leader's now. Nothing to report in its status.
        return Failure(F.API_UNAVAILABLE, _short(str(exc)), quiet=True)
    if isinstance(exc, ChildConflict):
        return Failure(F.CHILD_CONFLICT, _short(str(exc)))
    if isinstance(exc, PolicyViolation):
        return Failure(F.POLICY_VIOLATION, _short(str(exc)))
    if isinstance(exc, RenderError):
        return Failure(F.INVALID_SPEC, _short(str(exc)))
    if isinstance(exc, ValidationError):
        return Failure(F.INVALID_SPEC, _short(_validation_summary(exc)))
    if isinstance(exc, ApiError):
        return _api_failure(exc)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return Failure(F.API_UNAVAILABLE, _short(f"apiserver: {type(exc).__name__}: {exc}"))
    return Failure(F.INTERNAL_ERROR, _short(f"{type(exc).__name__}: {exc}"), log_traceback=True)


def _api_failure(exc: ApiError) -> Failure:
    detail = _short(f"apiserver: {exc.status} {exc.reason}: {exc.message}")
    if exc.namespace_terminating or (exc.not_found and "namespaces" in exc.message):
        return Failure(F.API_UNAVAILABLE, detail, gone=True)
    if exc.not_found:
        # The kind itself is unknown to the apiserver (an HTTPRoute without Gateway API).
        return Failure(F.CHILD_REJECTED, _short(f"{detail} (is the API for this kind installed,"
                                               " e.g. the Gateway API CRDs?)"))
    if exc.status in (400, 422) or exc.unappliable:
        return Failure(F.CHILD_REJECTED, detail)
    if exc.status in (401, 403):
        return Failure(F.FORBIDDEN, detail)
    if exc.conflict:
        return Failure(F.API_UNAVAILABLE, detail, quiet=True)
    # 429, 5xx, 0 (no answer): retried with back-off.
    return Failure(F.API_UNAVAILABLE, detail)


def _validation_summary(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return "; ".join(parts[:5])


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
