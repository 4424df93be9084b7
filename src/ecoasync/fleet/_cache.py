"""``SharedCacheProvider``: one forecast request per zone, kind and TTL for a whole fleet.

Every process keeps what it read in memory (so ``forecast_nowait`` answers at once and hands
out the same :class:`~ecoasync.Forecast` object for the whole TTL, with whatever is cached on
it); past that, processes share the answer through Redis:

1. One script (one round trip) reads the shared answer with its remaining TTL, or a failure
   remembered for a few seconds, or takes the key's lock (``SET NX PX``).
2. The process that took the lock asks the wrapped provider, stores the answer for ``ttl``,
   drops its lock and publishes on the key's channel.
3. The others wait on that channel (no polling), then read the answer. A leader that dies
   leaves a lock that expires after ``lock_ttl``; the next reader takes it over.

Inside a process, one task per key does this; the others wait for it. When Redis is down or
slow (see :class:`StoreGuard`) the wrapped provider answers directly, with its own cache.

Layer: edges (a provider over a shared store); imports values (``_exceptions``, ``_forecast``,
``_provider``) and the fleet's own modules.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from .._exceptions import ForecastUnavailable
from .._forecast import Forecast, Signal, Slot, as_utc
from .._provider import HistoryProvider
from ._common import from_us, to_us
from ._redis import RedisClients, check_namespace, hash_tag
from ._store import DOWN, StoreGuard, check_seconds, needs

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .._provider import ForecastProvider

__all__ = ["SharedCacheProvider"]

# KEYS: value, error, lock   ARGV: token, lock ms
_READ: Final = """
local v = redis.call('GET', KEYS[1])
if v then return {'hit', v, redis.call('PTTL', KEYS[1])} end
local e = redis.call('GET', KEYS[2])
if e then return {'error', e, 0} end
local held = redis.call('GET', KEYS[3])
if held == ARGV[1] then return {'lead', '', 0} end  -- (asked again: the lock is ours)
if not held and redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'lead', '', 0}
end
return {'wait', '', 0}
"""

# KEYS: lock   ARGV: token
_UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: value or error, lock   ARGV: payload, ttl ms, token, channel
_WRITE: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], '1')
return 1
"""


def encode(forecast: Forecast) -> str:
    """A forecast as compact JSON (times in µs; floats keep every bit through ``repr``)."""
    return json.dumps(
        {
            "provider": forecast.provider,
            "zone": forecast.zone,
            "signal": str(forecast.signal),
            "slots": [[to_us(s.start), to_us(s.end), s.forecast, s.actual] for s in forecast],
        },
        separators=(",", ":"),
    )


def decode(payload: str | bytes) -> Forecast:
    data = json.loads(payload)
    slots = [Slot(from_us(a), from_us(b), f, actual) for a, b, f, actual in data["slots"]]
    return Forecast(
        slots, signal=Signal.parse(data["signal"]), provider=data["provider"], zone=data["zone"]
    )


def _floor(when: datetime, step: int) -> int:
    us = to_us(when)
    return us - us % step


class _Flight:
    """One task of this process fetching a key; the others wait on ``done``."""

    __slots__ = ("abandoned", "done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Forecast | None = None
        self.error: ForecastUnavailable | None = None
        self.abandoned = False


class SharedCacheProvider:
    """Wraps a forecast provider so that all processes on one Redis share its answers.

    Needs the ``redis`` extra (asyncio only). Keeps the wrapped provider's ``name``, ``zone``
    and ``signal``, and its ``history`` if it has one (the wrapper is then a
    ``HistoryProvider`` too). Requests are widened to whole windows
    (forecasts: from the ``step`` the start falls in, ``horizon`` long; histories: whole
    ``step``\\ s), so that every session planned in the same ``step`` shares one answer.

    Args:
        provider: the provider to ask (one request per key and ``ttl`` for the fleet).
        redis: a ``redis://`` URL or a ``redis.asyncio.Redis`` client (yours to close).
        namespace: the prefix of every key (processes that share answers use the same).
        ttl: how long an answer is shared (default: the provider's ``ttl``, else 30 minutes).
        horizon: how far ahead one forecast request reaches (default 48 h).
        step: the width the request times are rounded to (default 30 minutes).
        lock_ttl: how long a process may take to fetch before another takes over (default 20 s).
        error_ttl: how long a failure is shared, so the fleet does not hammer a failing API.
        timeout: seconds one Redis call may take before the wrapped provider answers instead
            (default 2).
        retry_after: seconds Redis is left alone after a failure (default 5).
        monotonic: the clock of the in-process copies' TTL (tests pass a fake).
    """

    def __new__(cls, provider: ForecastProvider, **options: Any) -> SharedCacheProvider:
        # a capability is a provider's class: with history only if the wrapped one has it
        if cls is SharedCacheProvider and isinstance(provider, HistoryProvider):
            cls = _SharedHistoryCache
        return object.__new__(cls)

    def __init__(
        self,
        provider: ForecastProvider,
        *,
        redis: str | Redis,
        namespace: str = "ecoasync",
        ttl: float | timedelta | None = None,
        horizon: timedelta = timedelta(hours=48),
        step: timedelta = timedelta(minutes=30),
        lock_ttl: float | timedelta = 20.0,
        error_ttl: float | timedelta = 5.0,
        timeout: float | timedelta = 2.0,
        retry_after: float | timedelta = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        owner = "SharedCacheProvider"
        if not callable(getattr(provider, "forecast", None)):
            raise TypeError(f"{owner} wraps a forecast provider, got {provider!r}")
        self.provider = provider
        self.namespace = check_namespace(namespace)
        needs("redis", "redis", owner)
        if ttl is None:
            ttl = getattr(provider, "ttl", None) or 1800.0
        self.ttl = check_seconds("ttl", ttl, owner=owner)
        for name, value in (("horizon", horizon), ("step", step)):
            if not isinstance(value, timedelta) or value < timedelta(seconds=1):
                raise ValueError(
                    f"{owner}: {name} must be a timedelta of at least 1 s, got {value!r}"
                )
        self._horizon = horizon // timedelta(microseconds=1)
        self._step = step // timedelta(microseconds=1)
        self.lock_ttl = check_seconds("lock_ttl", lock_ttl, owner=owner)
        self.error_ttl = check_seconds("error_ttl", error_ttl, owner=owner)
        self.guard = StoreGuard(
            "redis",
            timeout=check_seconds("timeout", timeout, owner=owner),
            retry_after=check_seconds("retry_after", retry_after, owner=owner),
            monotonic=monotonic,
        )
        self._monotonic = monotonic
        self._clients = RedisClients(redis)
        self._scripts: tuple[Any, Any, Any] | None = None
        self._memory: dict[Hashable, tuple[float, Forecast]] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self.fetches: dict[str, int] = {}
        """Requests this process made to the wrapped provider, by kind."""
        self.round_trips = 0
        """Scripts sent to Redis by this process."""

    # --- what the wrapped provider is -----------------------------------------------------

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def zone(self) -> str | None:
        zone = getattr(self.provider, "zone", None)
        return zone if isinstance(zone, str) else None

    @property
    def signal(self) -> Signal:
        signal = getattr(self.provider, "signal", None)
        return signal if isinstance(signal, Signal) else Signal()

    # --- forecasts ------------------------------------------------------------------------

    def _forecast_key(self, start: datetime, end: datetime) -> tuple[str, int, int]:
        lo = _floor(start, self._step)
        spans = max(math.ceil((to_us(end) - lo) / self._horizon), 1)
        return ("forecast", lo, lo + spans * self._horizon)

    def _history_key(self, start: datetime, end: datetime) -> tuple[str, int, int]:
        hi = _floor(end, self._step)
        if hi < to_us(end):
            hi += self._step
        return ("history", _floor(start, self._step), hi)

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast for ``[start, end)`` if this process holds a fresh answer, else None."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        return self._nowait(self._forecast_key(start, end), start, end)

    def _nowait(self, key: tuple[str, int, int], start: datetime, end: datetime) -> Forecast | None:
        entry = self._memory.get(key)
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            del self._memory[key]
            return None
        return entry[1].between(start, end)

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        """The forecast for ``[start, end)``: from this process, else the fleet, else the provider."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        return await self._get(self._forecast_key(start, end), start, end)

    async def _get(self, key: tuple[str, int, int], start: datetime, end: datetime) -> Forecast:
        while True:
            hit = self._nowait(key, start, end)
            if hit is not None:
                await anyio.lowlevel.checkpoint()
                return hit
            flight = self._flights.get(key)
            if flight is None:
                return (await self._lead(key)).between(start, end)
            await flight.done.wait()
            if flight.error is not None:
                raise _copy(flight.error)
            if flight.value is not None:
                return flight.value.between(start, end)
            # the task that fetched was cancelled (or the answer was empty): try again

    async def _lead(self, key: tuple[str, int, int]) -> Forecast:
        flight = self._flights[key] = _Flight()
        try:
            value, ttl = await self._fetch(key)
        except ForecastUnavailable as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        if value and ttl > 0:
            self._memory[key] = (self._monotonic() + ttl, value)
        flight.value = value
        return value

    # --- the fleet's answer, through Redis --------------------------------------------------

    def _names(self, key: tuple[str, int, int]) -> tuple[str, str, str, str]:
        kind, lo, hi = key
        base = f"{self.namespace}:fc:{{{hash_tag(self.zone or '')}}}:{self.name}:{kind}:{lo}:{hi}"
        return base, base + ":error", base + ":lock", base + ":done"

    async def _script(self, which: int) -> Any:
        client = await self._clients.get()
        if self._scripts is None or self._scripts[0].registered_client is not client:
            self._scripts = (
                client.register_script(_READ),
                client.register_script(_WRITE),
                client.register_script(_UNLOCK),
            )
        return self._scripts[which]

    async def _read(self, key: tuple[str, int, int], token: str) -> tuple[str, bytes, int]:
        script = await self._script(0)
        value, error, lock, _ = self._names(key)
        self.round_trips += 1
        state, payload, pttl = await script(
            keys=[value, error, lock], args=[token, int(self.lock_ttl * 1000)]
        )
        return state.decode(), payload, int(pttl)

    async def _write(
        self, key: tuple[str, int, int], which: int, payload: str, ttl: float, token: str
    ) -> None:
        script = await self._script(1)
        names = self._names(key)
        self.round_trips += 1
        await script(
            keys=[names[which], names[2]], args=[payload, max(int(ttl * 1000), 1), token, names[3]]
        )

    async def _unlock(self, key: tuple[str, int, int], token: str) -> None:
        script = await self._script(2)
        self.round_trips += 1
        await script(keys=[self._names(key)[2]], args=[token])

    async def _fetch(self, key: tuple[str, int, int]) -> tuple[Forecast, float]:
        """The answer for ``key`` and how long it stays fresh (seconds)."""
        token = secrets.token_hex(8)
        await self._clients.get()  # (redis-py imported off the loop, outside the bound)
        deadline = self._monotonic() + self.lock_ttl
        pubsub: Any = None
        try:
            while True:
                read = await self.guard.call(lambda: self._read(key, token), what="forecast cache")
                if read is DOWN:
                    return await self._ask(key), self.ttl  # the provider's own cache answers
                assert isinstance(read, tuple)
                state, payload, pttl = read
                if state == "hit":
                    return decode(payload), max(pttl, 0) / 1000
                if state == "error":
                    raise ForecastUnavailable(
                        payload.decode(), provider=self.name, zone=self.zone, cause=payload.decode()
                    )
                if state == "lead":
                    return await self._fetch_and_share(key, token), self.ttl
                # another process is fetching: wait for its word on the channel
                try:
                    if pubsub is None:
                        client = await self._clients.get()
                        pubsub = client.pubsub()
                        await pubsub.subscribe(self._names(key)[3])
                        continue  # read again: it may have answered before we listened
                    left = deadline - self._monotonic()
                    if left <= 0:
                        deadline = self._monotonic() + self.lock_ttl  # its lock has expired
                        continue
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
                except Exception as exc:  # Redis went away while this process waited
                    self.guard.failed(exc, what="forecast cache")
                    return await self._ask(key), self.ttl
        finally:
            if pubsub is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await pubsub.aclose()

    async def _fetch_and_share(self, key: tuple[str, int, int], token: str) -> Forecast:
        try:
            value = await self._ask(key)
        except BaseException as exc:
            if not isinstance(exc, ForecastUnavailable):  # cancelled: let another lead at once
                with anyio.CancelScope(shield=True):
                    await self.guard.call(lambda: self._unlock(key, token), what="forecast cache")
                raise
            message = str(exc)[:500]
            await self.guard.call(
                lambda: self._write(key, 1, message, self.error_ttl, token), what="forecast cache"
            )
            raise
        if value:
            await self.guard.call(
                lambda: self._write(key, 0, encode(value), self.ttl, token), what="forecast cache"
            )
        return value

    async def _ask(self, key: tuple[str, int, int]) -> Forecast:
        kind, lo, hi = key
        self.fetches[kind] = self.fetches.get(kind, 0) + 1
        if kind == "history":
            assert isinstance(self.provider, HistoryProvider)
            return await self.provider.history(from_us(lo), from_us(hi))
        return await self.provider.forecast(from_us(lo), from_us(hi))

    async def aclose(self) -> None:
        """Close the Redis client made from a URL, and forget what this process holds."""
        self._memory.clear()
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"SharedCacheProvider({self.provider!r}, namespace={self.namespace!r}, ttl={self.ttl:g})"


class _SharedHistoryCache(SharedCacheProvider):
    """A :class:`SharedCacheProvider` around a provider with a history: shares that too."""

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The history for ``[start, end)``, shared like forecasts."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        return await self._get(self._history_key(start, end), start, end)

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The history for ``[start, end)`` if this process holds a fresh answer, else None."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        return self._nowait(self._history_key(start, end), start, end)


def _copy(exc: ForecastUnavailable) -> ForecastUnavailable:
    fresh = ForecastUnavailable(str(exc), provider=exc.provider, zone=exc.zone, cause=exc.cause)
    fresh.__cause__ = exc.__cause__
    return fresh
