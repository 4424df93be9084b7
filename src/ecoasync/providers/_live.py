"""What every HTTP provider shares: the core, the cache key discipline, closing, options.

Layer: providers; imports the HTTP core and ecoasync's values.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Hashable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, cast

from .._forecast import Forecast, Signal, as_utc
from ._http import HttpCore, check_seconds

__all__ = ["LiveProvider", "floor_time", "seconds"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_time(when: datetime, step: timedelta) -> datetime:
    """``when`` rounded down to a multiple of ``step`` since the epoch (UTC)."""
    when = as_utc(when)
    return when - (when - _EPOCH) % step


def seconds(name: str, value: float | timedelta) -> float:
    """An option given as seconds or a ``timedelta``, checked."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return check_seconds(name, value)


class LiveProvider:
    """Base of the HTTP providers: ``forecast`` / ``forecast_nowait`` over a keyed, cached fetch.

    Subclasses set ``name``, ``zone``, ``signal``, ``ttl`` and ``_core`` and implement
    :meth:`_key` (which request answers ``[start, end)``) and :meth:`_fetch` (make it).
    Use as ``async with provider:`` or call ``await provider.aclose()`` to close its client.
    """

    name: str
    zone: str | None
    signal: Signal
    ttl: float
    _core: HttpCore

    def _key(self, start: datetime, end: datetime) -> Hashable:
        raise NotImplementedError

    async def _fetch(self, key: Hashable) -> Forecast:
        raise NotImplementedError

    history_step: timedelta = timedelta(minutes=30)
    """History requests are widened to multiples of this, so nearby requests share one."""

    async def _fetch_history(self, start: datetime, end: datetime) -> Forecast:
        raise NotImplementedError

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The past slots overlapping ``[start, end)``, with actual values where the API has them.

        Cached and single-flight like forecasts: requests are widened to whole steps (half an
        hour by default), so every session planned in the same half-hour shares one request.
        """
        return await self.history_by(start, end, None)

    def history_by(
        self, start: datetime, end: datetime, deadline: float | None
    ) -> Awaitable[Forecast]:
        """:meth:`history`, or :class:`~ecoasync.ForecastTimeout` once ``anyio.current_time()``
        reaches ``deadline`` (see :meth:`forecast_by`)."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        if end <= start:
            raise ValueError(
                f"history needs start < end, got {start.isoformat()} .. {end.isoformat()}"
            )
        lo, hi = self._history_span(start, end)
        return self._core.cached(
            ("history", lo, hi),
            self.ttl,
            self._fetch_history_key,
            zone=self.zone,
            deadline=deadline,
            window=(start, end),
        )

    async def _fetch_history_key(self, key: Hashable) -> Forecast:
        _, lo, hi = cast("tuple[str, datetime, datetime]", key)
        return await self._fetch_history(lo, hi)

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The history for ``[start, end)`` if a fresh answer is cached, else None (no I/O)."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        if end <= start:
            return None
        hit = self._core.cached_nowait(("history", *self._history_span(start, end)))
        if not isinstance(hit, Forecast):
            return None
        return hit.between(start, end)

    def _history_span(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """``[start, end)`` widened to whole history steps: the cache key of a history fetch."""
        lo = floor_time(start, self.history_step)
        hi = floor_time(end, self.history_step)
        if hi < end:
            hi += self.history_step
        return lo, hi

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        """The forecast for ``[start, end)``; one request per cache key and TTL, shared by all."""
        return await self.forecast_by(start, end, None)

    def forecast_by(
        self, start: datetime, end: datetime, deadline: float | None
    ) -> Awaitable[Forecast]:
        """:meth:`forecast`, to be awaited; it raises :class:`~ecoasync.ForecastTimeout` once
        ``anyio.current_time()`` reaches ``deadline`` (``None``: no deadline but the HTTP
        timeouts and retries).

        The deadline travels with the shared request: the caller that starts it bounds it, and
        callers that join it with a later deadline wait without a timer of their own; every
        one of them gets the same answer or the same error. Sessions call this with
        ``now + forecast_timeout``.
        """
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        return self._core.cached(
            self._key(start, end),
            self.ttl,
            self._fetch,
            zone=self.zone,
            deadline=deadline,
            window=(start, end),
        )

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast for ``[start, end)`` if a fresh answer is cached, else None (no I/O)."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        hit = self._core.cached_nowait(self._key(start, end))
        if not isinstance(hit, Forecast):
            return None
        return hit.between(start, end)

    @property
    def requests(self) -> int:
        """HTTP requests this provider has sent (each retry counts)."""
        return self._core.requests

    @property
    def fetches(self) -> dict[str, int]:
        """Shared fetches made, by kind (``{"forecast": 1, "history": 1}``)."""
        return dict(self._core.fetches)

    @property
    def base_url(self) -> str:
        return self._core.base_url

    async def aclose(self) -> None:
        """Close the HTTP client (it is made again if the provider is used after)."""
        await self._core.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def hours_needed(start: datetime, end: datetime) -> float:
    return max(math.ceil((end - start).total_seconds() / 3600), 1)
