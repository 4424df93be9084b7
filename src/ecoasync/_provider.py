"""The interface every forecast provider implements, and the optional capabilities as types.

Layer: values (no I/O); imports ``Forecast`` only.

A provider is a :class:`ForecastProvider`. What more it can do is a capability, a
runtime-checkable protocol of one method, checked with ``isinstance``:

=============================  =========================================================
:class:`HistoryProvider`       ``history(start, end)``: the past, with actual values
:class:`ForecastNowait`        ``forecast_nowait(start, end)``: the forecast if in memory
:class:`HistoryNowait`         ``history_nowait(start, end)``: the history if in memory
:class:`ForecastBy`            ``forecast_by(start, end, deadline)``: bounded by a deadline
:class:`HistoryBy`             ``history_by(start, end, deadline)``: bounded by a deadline
=============================  =========================================================

A capability is decided by the provider's class (its methods), once per class: typing's own
check probes every attribute of the instance at every call (about 6 µs on Python 3.11, a
third of a session's whole cost); these ask ``abc``'s per-class cache (0.15 µs).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._forecast import Forecast

__all__ = [
    "CachingForecastProvider",
    "ForecastBy",
    "ForecastNowait",
    "ForecastProvider",
    "HistoryBy",
    "HistoryNowait",
    "HistoryProvider",
]


if TYPE_CHECKING:
    _Capability = abc.ABCMeta
else:

    class _Capability(type(Protocol)):
        """The metaclass of the capability protocols: ``isinstance`` is ``abc``'s class check."""

        __instancecheck__ = abc.ABCMeta.__instancecheck__


@runtime_checkable
class ForecastProvider(Protocol):
    """A source of carbon-intensity forecasts.

    ``forecast(start, end)`` returns the slots that overlap ``[start, end)`` as far as the
    source knows them (it may return fewer: a short horizon is not an error, an empty one
    is reported by the planner). It raises :class:`~ecoasync.ForecastUnavailable` when the
    source cannot answer. Implementations must not block the event loop and must be safe to
    call from many tasks at once.

    Optional capabilities (see the module): :class:`HistoryProvider`, :class:`ForecastNowait`,
    :class:`HistoryNowait`, :class:`ForecastBy`, :class:`HistoryBy`.
    """

    @property
    def name(self) -> str:
        """A short, secret-free name for events and records (``"uk-carbon-intensity"``)."""
        ...

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        """The forecast for ``[start, end)`` (timezone-aware datetimes)."""
        ...


@runtime_checkable
class HistoryProvider(Protocol, metaclass=_Capability):
    """A provider that can also tell what the grid did in the past.

    ``history(start, end)`` returns the slots that overlap ``[start, end)`` with their
    ``actual`` values where the source publishes them (and the forecast it made, where it
    keeps it; sources that keep no past forecasts set ``forecast == actual``). Planners use it
    to learn from forecast error. It raises :class:`~ecoasync.ForecastUnavailable` when the
    source cannot answer.
    """

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The past slots overlapping ``[start, end)`` (timezone-aware datetimes)."""
        ...


@runtime_checkable
class ForecastNowait(Protocol, metaclass=_Capability):
    """A provider that can answer from memory without awaiting.

    ``forecast_nowait(start, end)`` returns what ``forecast`` would, if it is already in
    memory (a static forecast, a loaded file, a fresh cache entry), else ``None``. It never
    does I/O. Sessions use it to skip the forecast timeout on the hot path.
    """

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast for ``[start, end)`` if it is in memory, else None."""
        ...


@runtime_checkable
class HistoryNowait(Protocol, metaclass=_Capability):
    """``history_nowait(start, end)``: what ``history`` would return if it is already in
    memory, else ``None``; never I/O. Sessions then skip the timeout around it."""

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The history for ``[start, end)`` if it is in memory, else None."""
        ...


@runtime_checkable
class ForecastBy(Protocol, metaclass=_Capability):
    """A provider that carries a caller's deadline on the request it shares.

    ``forecast_by(start, end, deadline)`` returns what ``forecast`` does, to be awaited, or
    raises :class:`~ecoasync.ForecastTimeout` once ``anyio.current_time()`` reaches
    ``deadline``. Sessions hand it ``now + forecast_timeout`` instead of wrapping the call in
    a timeout scope of their own, so sessions waiting on one request cost no timer each (the
    HTTP providers do this).
    """

    def forecast_by(
        self, start: datetime, end: datetime, deadline: float | None
    ) -> Awaitable[Forecast]:
        """:meth:`ForecastProvider.forecast`, bounded by ``deadline`` (None: unbounded)."""
        ...


@runtime_checkable
class HistoryBy(Protocol, metaclass=_Capability):
    """``history_by(start, end, deadline)``: ``history`` bounded by ``deadline``, as
    :class:`ForecastBy` bounds ``forecast``."""

    def history_by(
        self, start: datetime, end: datetime, deadline: float | None
    ) -> Awaitable[Forecast]:
        """:meth:`HistoryProvider.history`, bounded by ``deadline`` (None: unbounded)."""
        ...


@runtime_checkable
class CachingForecastProvider(ForecastProvider, Protocol):
    """A :class:`ForecastProvider` that is also :class:`ForecastNowait`."""

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast for ``[start, end)`` if it is in memory, else None."""
        ...
