"""Helpers of the fleet tests: the ledger rule written out plainly, to compare the stores with."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ecoasync import Forecast, ForecastUnavailable
from ecoasync._ledger import Choice, Claim
from ecoasync.providers import StaticForecastProvider

T0 = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def bucket_start(when: datetime, bucket: timedelta = HALF_HOUR) -> datetime:
    step = bucket.total_seconds()
    return datetime.fromtimestamp(math.floor(when.timestamp() / step + 1e-9) * step, UTC)


def reference_choice(
    choices: Sequence[Choice],
    loads: Mapping[datetime, int],
    *,
    tolerance: float,
    capacity: int | None = None,
    bucket: timedelta = HALF_HOUR,
) -> Choice:
    """The ``Ledger`` rule as its docstring states it: the lowest ``score * (1 + tolerance *
    load)`` among the buckets with room (all of them if none has), ties to the earliest start."""

    def key(choice: Choice) -> tuple[bool, float, datetime]:
        load = loads.get(bucket_start(choice.start, bucket), 0)
        full = capacity is not None and load >= capacity
        effective = choice.score * (1.0 + tolerance * load) if load else choice.score
        return (full, effective, choice.start)

    return min(choices, key=key)


def choice(minutes: float, score: float, expected: float | None = None) -> Choice:
    return Choice(T0 + timedelta(minutes=minutes), score if expected is None else expected, score)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class ReferenceLedger:
    """An in-process ledger that is nothing but :func:`reference_choice` (a test double)."""

    name = "memory"

    def __init__(self, *, tolerance: float = 0.02, bucket: timedelta = HALF_HOUR) -> None:
        self.tolerance = tolerance
        self.bucket = bucket
        self.claims: dict[tuple[str, str], Claim] = {}

    def _live(self, zone: str, now: datetime) -> dict[datetime, int]:
        loads: dict[datetime, int] = {}
        for claim in self.claims.values():
            if claim.zone == zone and claim.expires_at > now:
                loads[claim.slot] = loads.get(claim.slot, 0) + 1
        return loads

    async def claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        held = self.claims.get((zone, job_id))
        if held is not None and held.expires_at > now:
            held = dataclasses.replace(held, expires_at=max(held.expires_at, now + lease))
        else:
            best = reference_choice(choices, self._live(zone, now), tolerance=self.tolerance)
            slot = bucket_start(best.start, self.bucket)
            held = Claim(job_id, zone, slot, best.start, best.expected, now + lease, self.name)
        self.claims[(zone, job_id)] = held
        return held

    async def release(self, claim: Claim) -> None:
        held = self.claims.get((claim.zone, claim.job_id))
        if held is not None and (held.slot, held.start) == (claim.slot, claim.start):
            del self.claims[(claim.zone, claim.job_id)]

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        return {k: v for k, v in self._live(zone, now).items() if start <= k < end}


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
