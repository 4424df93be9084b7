"""The interface every forecast provider implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from ._forecast import Forecast

__all__ = ["CachingForecastProvider", "ForecastProvider", "HistoryProvider"]


@runtime_checkable
class ForecastProvider(Protocol):
    """A source of carbon-intensity forecasts.

    ``forecast(start, end)`` returns the slots that overlap ``[start, end)`` as far as the
    source knows them (it may return fewer: a short horizon is not an error, an empty one
    is reported by the planner). It raises :class:`~ecoasync.ForecastUnavailable` when the
    source cannot answer. Implementations must not block the event loop and must be safe to
    call from many tasks at once.

    A provider that shares one request among its callers may also define
    ``forecast_by(start, end, deadline)`` (and ``history_by``): what ``forecast`` returns, to
    be awaited, or :class:`~ecoasync.ForecastTimeout` once ``anyio.current_time()`` reaches
    ``deadline``. Sessions then hand it ``now + forecast_timeout`` instead of wrapping the
    call in a timeout scope of their own, so sessions waiting on one request cost no timer
    each (the HTTP providers do this).
    """

    @property
    def name(self) -> str:
        """A short, secret-free name for events and records (``"uk-carbon-intensity"``)."""
        ...

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        """The forecast for ``[start, end)`` (timezone-aware datetimes)."""
        ...


@runtime_checkable
class CachingForecastProvider(ForecastProvider, Protocol):
    """A provider that can answer from memory without awaiting.

    ``forecast_nowait(start, end)`` returns what ``forecast`` would, if it is already in
    memory (a static forecast, a loaded file, a fresh cache entry), else ``None``. It never
    does I/O. Sessions use it to skip the forecast timeout on the hot path.
    """

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast for ``[start, end)`` if it is in memory, else None."""
        ...


@runtime_checkable
class HistoryProvider(Protocol):
    """A provider that can also tell what the grid did in the past (an optional capability).

    ``history(start, end)`` returns the slots that overlap ``[start, end)`` with their
    ``actual`` values where the source publishes them (and the forecast it made, where it
    keeps it; sources that keep no past forecasts set ``forecast == actual``). Planners use it
    to learn from forecast error. It raises :class:`~ecoasync.ForecastUnavailable` when the
    source cannot answer. Check with ``isinstance(provider, HistoryProvider)``.

    A provider that can answer from memory may also define ``history_nowait(start, end) ->
    Forecast | None`` (like ``forecast_nowait``: what ``history`` would return if it is
    already in memory, else ``None``, never I/O); sessions then skip the timeout around it.
    """

    @property
    def name(self) -> str: ...

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The past slots overlapping ``[start, end)`` (timezone-aware datetimes)."""
        ...
