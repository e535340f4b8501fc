"""What can go wrong when an analysis measures something, in two kinds the rollout treats
differently: no answer (inconclusive, never a pass) and a wrong question (fix the spec)."""

from __future__ import annotations


class MeasurementInconclusive(Exception):
    """No verdict could be measured: the server is unreachable, too slow, or answered with a
    server error. Counts towards the inconclusive limit; never a pass. `kind` (timeout,
    connection, http_5xx, ...) labels the error metric."""

    def __init__(self, reason: str, kind: str = "inconclusive") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class MeasurementError(Exception):
    """The question is wrong: the query does not parse or cannot run, the server is not what
    the spec says it is, or the operator's policy refuses its address. `reason` is shown to
    the user after the field's path; it never holds credentials."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AddressNotAllowed(MeasurementError):
    """The operator's policy refuses the server's address (apprelease run
    --allow-metric-server / --allow-registry-network)."""
