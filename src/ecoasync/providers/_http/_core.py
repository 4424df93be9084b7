"""``HttpCore``: the layers of the HTTP core, put together for one provider instance.

Layer: HTTP core (top); imports the other layers and ecoasync's values (``Forecast``, the
exceptions) and logger.

``fetch`` is a request: client → retries → payload → the provider's parser. ``cached`` is a
keyed answer: cache → a failure remembered → the flight in the air → a new flight that
``fetch``-es. Whatever goes wrong leaves as :class:`~ecoasync.ForecastUnavailable`
(``provider``, ``zone``, ``cause``), raised ``from`` the original error, with the provider's
credentials scrubbed from every message and the original's frames emptied of their values.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import anyio.lowlevel

from ..._exceptions import ForecastTimeout, ForecastUnavailable
from ..._forecast import Forecast
from ..._log import get_logger
from ._cache import TtlCache
from ._client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Client
from ._flight import Flights
from ._payload import decode
from ._retry import AttemptFailed, Retry, Retrying, Sleep
from ._secrets import Scrubber, Secret, SecretHeader, forget_locals

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpCore", "HttpStatusUnavailable", "check_base_url", "check_seconds"]

log = get_logger()

T = TypeVar("T")


class HttpStatusUnavailable(ForecastUnavailable):
    """A provider failure caused by an HTTP status (``status``); still a ForecastUnavailable."""

    def __init__(
        self, message: str, *, provider: str, zone: str | None, cause: str, status: int
    ) -> None:
        super().__init__(message, provider=provider, zone=zone, cause=cause)
        self.status = status


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A positive, finite number of seconds, or a clear error naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a number of seconds, got {type(value).__name__}: {value!r}"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return number


def check_base_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


class HttpCore:
    """Client, retries, payload checks, cache and shared requests for one provider instance.

    ``max_block``: the longest a ``Retry-After`` beyond ``retry.max_retry_after`` stops
    requests (providers pass their ``ttl``). ``secrets``: the provider's credentials, asked
    for each time a message is scrubbed.
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: Retry | None = None,
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
        error_ttl: float = 5.0,
        max_block: float = 30 * 60.0,
        secrets: Callable[[], Iterable[Secret]] = tuple,
    ) -> None:
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be an ecoasync.providers.Retry, got {retry!r}")
        self.provider = provider
        self.client = Client(
            check_base_url(base_url),
            timeout=check_seconds("timeout", timeout),
            connect_timeout=check_seconds("connect_timeout", connect_timeout),
            transport=transport,
        )
        self.retrying = Retrying(
            retry or Retry(),
            max_block=check_seconds("max_block", max_block),
            sleep=sleep,
            rng=rng,
            monotonic=monotonic,
        )
        self.error_ttl = check_seconds("error_ttl", error_ttl, allow_zero=True)
        self.answers: TtlCache[object] = TtlCache(monotonic)
        self.failures: TtlCache[ForecastUnavailable] = TtlCache(monotonic)
        self.flights: Flights[object] = Flights()
        self.scrub = Scrubber(secrets)
        self._wallclock = wallclock
        self.fetches: dict[str, int] = {}
        """Shared fetches led, by kind (``forecast``, ``history``, ``login``)."""

    @property
    def base_url(self) -> str:
        return self.client.base_url

    @property
    def requests(self) -> int:
        """HTTP requests sent (every attempt counts)."""
        return self.client.requests

    @property
    def retries(self) -> int:
        return self.retrying.retries

    async def aclose(self) -> None:
        """Close the running loop's client and forget the cached answers and failures."""
        self.answers.clear()
        self.failures.clear()
        await self.client.aclose()

    def unavailable(
        self, what: str, cause: str, *, zone: str | None, status: int | None = None
    ) -> ForecastUnavailable:
        """The error a user sees: ``"<provider>: <what> failed: <cause>"``, scrubbed."""
        cause = self.scrub(cause)
        message = self.scrub(f"{self.provider}: {what} failed: {cause}")
        if status is not None:
            return HttpStatusUnavailable(
                message, provider=self.provider, zone=zone, cause=cause, status=status
            )
        return ForecastUnavailable(message, provider=self.provider, zone=zone, cause=cause)

    # --- one request -----------------------------------------------------------------------

    async def fetch(
        self,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None = None,
        auth: SecretHeader | None = None,
        zone: str | None = None,
        what: str | None = None,
    ) -> T:
        """GET ``path`` (relative to ``base_url``), retrying as configured, and ``parse`` its
        JSON; a payload that does not parse is unavailable too.

        Raises:
            ForecastUnavailable: no usable answer; chained from the underlying error.
        """
        what = what or f"GET {path}"

        async def attempt() -> Any:
            answer = await self.client.get(path, params=params, auth=auth)
            return decode(answer, now=self._wallclock(), scrub=self.scrub)

        try:
            data = await self.retrying(attempt, on_retry=self._log_retry(zone))
        except AttemptFailed as failed:
            cause = failed.__cause__
            raise self._failed(what, failed.cause, zone, cause, failed.status) from cause
        try:
            return parse(data)
        except Exception as exc:  # whatever the parser tripped on: the payload is the cause
            raise self._failed(what, f"unexpected payload: {_short(exc)}", zone, exc) from exc

    def _failed(
        self,
        what: str,
        cause: str,
        zone: str | None,
        original: BaseException | None,
        status: int | None = None,
    ) -> ForecastUnavailable:
        """The error to raise ``from original``, whose frames are emptied of their values first."""
        if original is not None:
            forget_locals(original)
        return self.unavailable(what, cause, zone=zone, status=status)

    def _log_retry(self, zone: str | None) -> Callable[[int, str, float], None]:
        def on_retry(attempt: int, cause: str, delay: float) -> None:
            log.info(
                "ecoasync.forecast_retry",
                provider=self.provider,
                zone=zone,
                attempt=attempt,
                cause=self.scrub(cause),
                delay_s=round(delay, 3),
            )

        return on_retry

    # --- keyed answers: cache and shared requests --------------------------------------------

    def cached_nowait(self, key: Hashable) -> object | None:
        """The cached value for ``key`` if fresh, else None. No I/O, no await."""
        return self.answers.get(key)

    def forget(self, key: Hashable) -> None:
        self.answers.forget(key)

    async def cached(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[Hashable], Awaitable[T]],
        *,
        zone: str | None = None,
        deadline: float | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> T:
        """``fetch(key)``'s value for ``key``: from the cache if fresh, else from the request in
        flight for ``key`` on this event loop, else from a new one (its value is cached for
        ``ttl`` seconds when ``ttl > 0``). A failure is remembered for ``error_ttl`` seconds,
        so that callers arriving just after it fail fast instead of hammering the server.

        ``deadline`` (``anyio.current_time()`` units) bounds the wait: past it, the caller gets
        :class:`~ecoasync.ForecastTimeout`. A request led with a deadline gives up at it and
        every caller waiting on it gets the same error; a caller that joins a request bounded
        no later than its own deadline waits without a timer of its own.

        ``window`` (``start, end``): the value is a :class:`~ecoasync.Forecast`; return its
        slots that overlap the window (so that a provider's method can hand this coroutine to
        its caller as it is: ten thousand waiting sessions hold one frame each, this one).
        """
        while True:
            hit = self.answers.get(key)
            if hit is not None:
                await anyio.lowlevel.checkpoint()
                return _view(cast("T", hit), window)
            failure = self.failures.get(key)
            if failure is not None:
                await anyio.lowlevel.checkpoint()
                raise _copy(failure, " (a recent failure, remembered for a few seconds)")
            flight = self.flights.here().get(key)
            if flight is None:
                return _view(await self._lead(key, ttl, fetch, zone, deadline), window)
            if deadline is None or flight.deadline <= deadline:
                await flight.join()  # the request's own bound comes first
            else:
                with anyio.CancelScope(deadline=deadline) as scope:
                    await flight.join()
                if scope.cancelled_caught:
                    raise self._timed_out(key, zone, None)
            if flight.error is not None:
                raise _copy(cast("ForecastUnavailable", flight.error))
            if not flight.abandoned:
                return _view(cast("T", flight.value), window)
            # the task that led the request was cancelled: try again (maybe lead this time)

    async def _lead(
        self,
        key: Hashable,
        ttl: float,
        fetch: Callable[[Hashable], Awaitable[T]],
        zone: str | None,
        deadline: float | None,
    ) -> T:
        kind = _kind(key)
        self.fetches[kind] = self.fetches.get(kind, 0) + 1

        async def answer() -> object:
            """The value, cached before the waiters wake; any failure as ForecastUnavailable."""
            try:
                value = await fetch(key)
            except ForecastUnavailable:
                raise
            except Exception as exc:  # a payload that parsed but is not a forecast, ...
                cause = f"unexpected payload: {type(exc).__name__}: {_short(exc)}"
                raise self._failed(kind, cause, zone, exc) from exc
            if ttl > 0 and value:
                self.answers.put(key, value, ttl)
            return value

        try:
            value = await self.flights.lead(
                self.flights.here(),
                key,
                answer,
                deadline=deadline,
                timed_out=lambda waited: self._timed_out(key, zone, waited),
            )
        except ForecastUnavailable as exc:
            if self.error_ttl > 0:
                self.failures.put(key, exc, self.error_ttl)
            raise
        return cast("T", value)

    def _timed_out(self, key: Hashable, zone: str | None, waited: float | None) -> ForecastTimeout:
        cause = "no answer by the deadline" if waited is None else f"no answer within {waited:.3g}s"
        return ForecastTimeout(
            f"{self.provider}: {_kind(key)} failed: {cause}",
            provider=self.provider,
            zone=zone,
            cause=cause,
        )


def _kind(key: Hashable) -> str:
    """What a cache key asks for (``forecast``, ``history``, ``login``): its first item."""
    return str(key[0]) if isinstance(key, tuple) and key else "request"


def _view(value: T, window: tuple[datetime, datetime] | None) -> T:
    """``value``, or the slots of the forecast ``value`` that overlap ``window``."""
    if window is None:
        return value
    return cast("T", cast("Forecast", value).between(*window))


def _copy(exc: ForecastUnavailable, note: str = "") -> ForecastUnavailable:
    """A fresh exception per waiter (one shared instance would collect everyone's traceback).

    A waiter of a request that timed out gets a :class:`~ecoasync.ForecastTimeout` too; a
    caller told of a remembered failure (``note``) did not wait, and gets the plain kind."""
    kind = ForecastTimeout if isinstance(exc, ForecastTimeout) and not note else ForecastUnavailable
    fresh = kind(f"{exc}{note}", provider=exc.provider, zone=exc.zone, cause=exc.cause)
    fresh.__cause__ = exc.__cause__
    return fresh


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
