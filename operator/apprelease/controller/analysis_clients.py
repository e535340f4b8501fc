"""The analysis runner's measurer: the Prometheus and web hook clients (apprelease.analysis)
under the operator's address policy, their failures sorted as the runner reads them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..analysis import prometheus, webhook
from ..analysis.errors import AddressNotAllowed, MeasurementError, MeasurementInconclusive
from ..domain import Policy
from .analysis_runner import Invalid, Refused

T = TypeVar("T")


class NoAnswer(Exception):
    """Unreachable, too slow, a server error: an Error measurement (never a pass)."""


async def _sorted(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except AddressNotAllowed as exc:
        raise Refused(exc.reason) from exc
    except MeasurementError as exc:
        raise Invalid(exc.reason) from exc
    except MeasurementInconclusive as exc:
        raise NoAnswer(exc.reason) from exc


class MetricClients:
    def __init__(self, policy: Policy):
        self.policy = policy

    async def prometheus(self, address: str, query: str, timeout: float) -> tuple[float, ...]:
        result = await _sorted(lambda: prometheus.query(address, query, timeout=timeout, policy=self.policy))
        return result.values

    async def web(self, url: str, payload: Mapping[str, Any], timeout: float,
                  headers: Mapping[str, str]) -> tuple[bool, str]:
        result = await _sorted(lambda: webhook.call(url, payload, timeout=timeout, policy=self.policy,
                                                        headers=headers))
        answer = f"HTTP {result.status}" + (f": {result.body_excerpt}" if result.body_excerpt else "")
        return result.passed, answer
