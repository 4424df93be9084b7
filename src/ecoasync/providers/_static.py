"""Providers that need no network: a fixed forecast, and a synthetic day for demos and tests.

Layer: providers; imports ecoasync's values (forecasts) and the trace reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import anyio.lowlevel

from .._forecast import Forecast, Signal, Slot, as_utc
from ._csv import with_actuals

__all__ = ["StaticForecastProvider", "synthetic_day"]


class StaticForecastProvider:
    """Answers every request from a fixed set of slots (no I/O; a checkpoint per call).

    ``StaticForecastProvider(forecast)`` or ``StaticForecastProvider([Slot(...), ...],
    name="static", zone="GB")``. Sessions read it through ``forecast_nowait`` and
    ``history_nowait``: a subclass that overrides ``forecast`` or ``history`` overrides those
    too (returning None sends sessions through the async method).
    """

    def __init__(
        self,
        forecast: Forecast | Iterable[Slot],
        *,
        name: str | None = None,
        zone: str | None = None,
        signal: Signal | None = None,
    ) -> None:
        if isinstance(forecast, Forecast):
            base = forecast
        else:
            slots = list(forecast)
            for item in slots:
                if not isinstance(item, Slot):
                    raise TypeError(
                        f"StaticForecastProvider takes a Forecast or Slot objects, got {item!r}"
                    )
            base = Forecast(slots, signal=signal)
        self.name = name or (base.provider if base.provider != "unknown" else "static")
        self.zone = zone if zone is not None else base.zone
        self._forecast = Forecast(
            base.slots, signal=signal or base.signal, provider=self.name, zone=self.zone
        )

    @property
    def signal(self) -> Signal:
        return self._forecast.signal

    def all(self) -> Forecast:
        """Every slot this provider holds."""
        return self._forecast

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        await anyio.lowlevel.checkpoint()
        return self._forecast.between(as_utc(start, what="start"), as_utc(end, what="end"))

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast:
        """The same as :meth:`forecast`, without the checkpoint (it is always in memory)."""
        return self._forecast.between(as_utc(start, what="start"), as_utc(end, what="end"))

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The slots overlapping ``[start, end)`` that have an actual value."""
        await anyio.lowlevel.checkpoint()
        return self._history(start, end)

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The same as :meth:`history`, without the checkpoint (it is always in memory)."""
        return self._history(start, end)

    def _history(self, start: datetime, end: datetime) -> Forecast:
        return with_actuals(
            self._forecast.between(as_utc(start, what="start"), as_utc(end, what="end"))
        )

    def __repr__(self) -> str:
        f = self._forecast
        span = f"{f.start:%Y-%m-%dT%H:%M}Z..{f.end:%Y-%m-%dT%H:%M}Z" if f else "empty"
        return f"StaticForecastProvider(name={self.name!r}, slots={len(f)}, {span})"


def synthetic_day(
    start: datetime | None = None,
    *,
    slot: timedelta = timedelta(minutes=30),
    days: int = 1,
) -> Forecast:
    """A made-up but realistic day of British-style grid intensity, for demos and tests.

    Dirty early evening (about 275 gCO2eq/kWh at 18:00), clean small hours (about 100 around
    03:30) and a windy early-afternoon dip (about 130 at 13:30). Deterministic; ``actual`` differs
    from ``forecast`` by a few percent, as real forecasts do. ``start`` defaults to midnight
    UTC of 2026-03-18.
    """
    begin = as_utc(start, what="start") if start is not None else datetime(2026, 3, 18, tzinfo=UTC)
    if slot <= timedelta(0):
        raise ValueError(f"slot must be a positive duration, got {slot}")
    count = int(timedelta(days=days) / slot)
    slots = []
    for i in range(count):
        s = begin + i * slot
        hour = s.hour + s.minute / 60 + s.second / 3600
        evening = 100 * math.exp(-(_wrap(hour - 18.0) ** 2) / 6)
        night = -75 * math.exp(-(_wrap(hour - 3.5) ** 2) / 8)
        wind = -45 * math.exp(-(_wrap(hour - 13.5) ** 2) / 3)
        value = 175 + evening + night + wind
        error = 1.0 + 0.06 * math.sin(i * 1.7) * math.cos(i * 0.3)
        slots.append(Slot(s, s + slot, round(value, 1), round(value * error, 1)))
    return Forecast(slots, signal=Signal("average", "direct"), provider="synthetic", zone="GB")


def _wrap(hours: float) -> float:
    """Hours from the nearest occurrence of the same time of day, in [-12, 12)."""
    return (hours + 12) % 24 - 12
