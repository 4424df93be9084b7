"""Helpers of the fleet tests: times, choices, names, a counting provider."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ecoasync import Forecast, ForecastUnavailable
from ecoasync._ledger import Choice
from ecoasync.providers import StaticForecastProvider

T0 = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def bucket_start(when: datetime, bucket: timedelta = HALF_HOUR) -> datetime:
    step = bucket.total_seconds()
    return datetime.fromtimestamp(math.floor(when.timestamp() / step + 1e-9) * step, UTC)


def choice(minutes: float, score: float, expected: float | None = None) -> Choice:
    return Choice(T0 + timedelta(minutes=minutes), score if expected is None else expected, score)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class CountingProvider:
    """A static provider that counts the requests it answers, and can be held or made to fail."""

    def __init__(self, forecast: Forecast, *, name: str = "counting", zone: str = "GB") -> None:
        self._inner = StaticForecastProvider(forecast, name=name, zone=zone)
        self.name = name
        self.zone = zone
        self.signal = forecast.signal
        self.ttl = 1800.0
        self.calls: list[tuple[str, datetime, datetime]] = []
        self.gate: anyio.Event | None = None
        self.fail: str | None = None

    async def _answer(self, kind: str, start: datetime, end: datetime) -> Forecast:
        self.calls.append((kind, start, end))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise ForecastUnavailable(
                self.fail, provider=self.name, zone=self.zone, cause=self.fail
            )
        if kind == "history":
            return await self._inner.history(start, end)
        return await self._inner.forecast(start, end)

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        return await self._answer("forecast", start, end)

    async def history(self, start: datetime, end: datetime) -> Forecast:
        return await self._answer("history", start, end)


def close_in_portal(*resources: Any) -> None:
    """``await r.aclose()`` in the sync API's event loop (where Celery workers' sessions ran),
    from a thread that runs no event loop."""
    from ecoasync.queues.celery import _call

    for resource in resources:
        _call(resource.aclose)
