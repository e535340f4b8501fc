"""User requests carried by annotations, so kubectl, the CLI and Git can all make them.

A request's value is remembered in status.handledRequests once acted on; applying the same
annotation again (a GitOps resync) is therefore a no-op, and a new value is a new request.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.status import HandledRequests

PREFIX = "apprelease.io/"
PROMOTE = PREFIX + "promote"
ABORT = PREFIX + "abort"
RETRY = PREFIX + "retry"
# Comma-separated pod names whose registry instances stay disabled (apprelease offline/online).
OFFLINE = PREFIX + "offline"
FULL_PREFIX = "full"


@dataclass(frozen=True)
class PendingRequests:
    promote: str | None = None
    promote_full: bool = False
    abort: str | None = None
    retry: str | None = None


def pending(annotations: dict[str, str], handled: HandledRequests) -> PendingRequests:
    def new(key: str, seen: str | None) -> str | None:
        value = annotations.get(key)
        return value if value and value != seen else None

    promote = new(PROMOTE, handled.promote)
    return PendingRequests(
        promote=promote,
        promote_full=bool(promote and promote.split(":", 1)[0] == FULL_PREFIX),
        abort=new(ABORT, handled.abort),
        retry=new(RETRY, handled.retry),
    )


def all_handled(annotations: dict[str, str]) -> HandledRequests:
    """Mark every request present now as handled (a new canary ignores older requests)."""
    return HandledRequests(
        promote=annotations.get(PROMOTE), abort=annotations.get(ABORT), retry=annotations.get(RETRY)
    )


def request_value(full: bool, nonce: str) -> str:
    """The annotation value the CLI writes: ``full:<nonce>`` or ``step:<nonce>``."""
    return f"{FULL_PREFIX if full else 'step'}:{nonce}"
