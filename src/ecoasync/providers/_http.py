"""The HTTP core every live provider stands on.

One :class:`HttpCore` per provider instance holds:

- one ``httpx.AsyncClient``, created lazily in the running event loop (httpx is imported and
  its TLS context built in a worker thread, once per process, so the loop never blocks on
  them), closed by ``aclose()``;
- bounded retries with exponential backoff and jitter on transport errors and 5xx, and 429
  honouring ``Retry-After`` (seconds or an HTTP date, capped); every sleep goes through an
  injectable ``sleep`` so tests never wait;
- a TTL cache, and single-flight: concurrent identical requests share one request in flight,
  and its waiters are released in small batches so ten thousand of them never stall the loop;
- deadlines carried by the shared request: a caller that gives one (``cached(...,
  deadline=)``) and joins a request bounded no later needs no timer of its own, so ten
  thousand sessions waiting on one request cost one timeout, not ten thousand;
- error translation: whatever goes wrong leaves as :class:`~ecoasync.ForecastUnavailable`
  (``provider``, ``zone``, ``cause``) raised ``from`` the original error, with every secret the
  provider registered scrubbed from the message.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import math
import random
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._exceptions import ForecastTimeout, ForecastUnavailable
from .._forecast import Forecast
from .._log import get_logger
from .._version import __version__

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "HttpCore",
    "HttpStatusUnavailable",
    "PayloadError",
    "Retry",
    "Secret",
    "Sleep",
    "secret_from",
]

log = get_logger()

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds one HTTP attempt may take, from connecting to the last byte of the body."""
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
"""Seconds to establish a connection."""
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
RELEASE_BATCH: Final = 8
"""Waiters of shared requests woken per event-loop turn, all requests of the loop together."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How a provider retries.

    ``attempts`` is the total number of tries (``1`` never retries). Backoff before try ``n+1``
    is ``backoff * 2**(n-1)`` capped at ``max_backoff``, with "equal jitter" (a random point in
    its upper half). A 429 waits what its ``Retry-After`` asks, unless that is more than
    ``max_retry_after``: then the provider fails at once and refuses further requests until
    the time the server gave.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry.attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be >= 1 (1 = no retry), got {self.attempts}")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Retry.{name} must be a finite number of seconds >= 0, got {value!r}"
                )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return float(ceiling / 2 + rng.random() * ceiling / 2)


class PayloadError(ValueError):
    """A response that parsed as JSON but is not what the API documents."""


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


# --- httpx and TLS, loaded off the event loop ---------------------------------------------

_LOAD_LOCK = threading.Lock()
_SSL_CONTEXT: ssl.SSLContext | None = None
_PLAIN_CONTEXT: ssl.SSLContext | None = None
"""What clients of ``http://`` URLs are given: httpx builds a context even for ``verify=False``
(about 1 ms of the event loop per client), so they share one."""
_LOADED = False
"""Whether :func:`_load` has imported everything the client needs, in this process."""


_MODULES: Final = ("httpx", "httpcore", "httpcore._backends.anyio", "httpcore._backends.auto")


def _loaded(tls: bool) -> bool:
    """Whether :func:`_load` would do no I/O: everything imported (by it, or by the application:
    the OpenAI and Anthropic SDKs use httpx) and, for TLS, the context built."""
    if not _LOADED:
        modules = sys.modules
        if not all(name in modules for name in _MODULES):
            return False
        trio = getattr(modules.get("httpcore._synchronization"), "trio", None)
        if trio is not None and "httpcore._backends.trio" not in modules:
            return False
    return not tls or _SSL_CONTEXT is not None


def _load(tls: bool) -> ssl.SSLContext:
    """Import httpx and httpcore (about 200 ms: httpcore imports trio when it is installed) and
    build the TLS context (about 200 ms): in a worker thread, so the event loop never waits.
    Once both are done, clients are made without the thread (starting one and handing the GIL
    back and forth with it stalls the loop for a few milliseconds)."""
    global _SSL_CONTEXT, _PLAIN_CONTEXT, _LOADED
    import httpcore
    import httpcore._backends.anyio
    import httpcore._backends.auto
    import httpx

    if httpcore._synchronization.trio is not None:  # type: ignore[attr-defined]
        import httpcore._backends.trio

    _LOADED = True
    with _LOAD_LOCK:
        if not tls:
            if _PLAIN_CONTEXT is None:
                _PLAIN_CONTEXT = httpx.create_ssl_context(verify=False)
            return _PLAIN_CONTEXT
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = httpx.create_ssl_context()
        return _SSL_CONTEXT


def _loop_identity() -> object:
    return anyio.lowlevel.current_token().native_token


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - now).total_seconds(), 0.0)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


_Group = list[asyncio.Future[None]] | anyio.Event

_RELEASING: dict[object, collections.deque[_Group]] = {}
"""Per event loop (``_loop_identity()``), the groups of waiters still to wake, while one
:meth:`HttpCore._release` wakes them a group per turn for every request of that loop."""


class _Flight:
    """One request in flight, shared by everyone who asked for the same thing meanwhile.

    Waiters queue in groups of ``RELEASE_BATCH``, woken one group per event-loop turn, for
    all the requests that end together on one loop (see :meth:`HttpCore._release`). On
    asyncio each waiter awaits a bare future of its own (a waiting session keeps no coroutine
    frames for it); elsewhere a group shares one ``anyio.Event``.
    """

    __slots__ = ("abandoned", "deadline", "error", "groups", "joined", "value")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        """When the request gives up (``anyio.current_time()``; ``inf``: bounded only by the
        HTTP timeouts and retries)."""
        self.groups: list[_Group] = []
        self.joined = 0
        self.value: object = None
        self.error: ForecastUnavailable | None = None
        self.abandoned = False

    def join(self) -> Awaitable[object]:
        """What a waiter awaits until the request ends (cancellable)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            loop = None
        groups = self.groups
        if self.joined % RELEASE_BATCH == 0 or not groups:
            groups.append([] if loop is not None else anyio.Event())
        self.joined += 1
        group = groups[-1]
        if isinstance(group, anyio.Event):
            return group.wait()
        if loop is None:  # a group made on asyncio, joined from elsewhere: not expected
            raise RuntimeError("a shared request was joined from two event loop kinds")
        future: asyncio.Future[None] = loop.create_future()
        group.append(future)
        return future

    @staticmethod
    def wake(group: _Group) -> None:
        if isinstance(group, anyio.Event):
            group.set()
            return
        for future in group:
            if not future.done():  # not cancelled
                future.set_result(None)
        group.clear()

    def wake_all(self) -> None:
        for group in self.groups:
            self.wake(group)


class _Attempt(Exception):
    """Internal: one attempt failed; ``retry`` says whether another may succeed."""

    def __init__(
        self, cause: str, *, retry: bool, wait: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry = retry
        self.wait = wait
        self.status = status


class HttpStatusUnavailable(ForecastUnavailable):
    """A provider failure caused by an HTTP status (``status``); still a ForecastUnavailable."""

    def __init__(
        self, message: str, *, provider: str, zone: str | None, cause: str, status: int
    ) -> None:
        super().__init__(message, provider=provider, zone=zone, cause=cause)
        self.status = status


class HttpCore:
    """Client, retries, cache and single-flight for one provider instance (see the module)."""

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
        secrets: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.provider = provider
        self.base_url = check_base_url(base_url)
        self.timeout = check_seconds("timeout", timeout)
        self.connect_timeout = min(check_seconds("connect_timeout", connect_timeout), self.timeout)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be an ecoasync.providers.Retry, got {retry!r}")
        self.retry = retry or Retry()
        self.error_ttl = check_seconds("error_ttl", error_ttl, allow_zero=True)
        self._sleep: Sleep = sleep or anyio.sleep
        self._transport = transport
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._wallclock = wallclock
        self._secrets = secrets
        self._client: httpx.AsyncClient | None = None
        self._client_loop: object = None
        self._cache: dict[Hashable, tuple[float, object]] = {}
        self._failures: dict[Hashable, tuple[float, ForecastUnavailable]] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self._blocked_until = -math.inf
        self.requests = 0
        """HTTP requests sent (every attempt counts)."""
        self.fetches: dict[str, int] = {}
        """Shared fetches led, by kind (``forecast``, ``history``, ``login``)."""
        self.retries = 0

    # --- the client ---------------------------------------------------------------------

    async def client(self) -> httpx.AsyncClient:
        """The shared client of this provider in the running event loop (created on first use)."""
        loop = _loop_identity()
        if self._client is not None and self._client_loop is loop:
            return self._client
        tls = self._transport is None and self.base_url.startswith("https://")
        if _loaded(tls):
            await anyio.lowlevel.checkpoint()
            context = _load(tls)  # nothing left to import or build: no thread to start
        else:
            context = await anyio.to_thread.run_sync(_load, tls)
        if self._client is not None and self._client_loop is loop:
            return self._client  # another task made it while this one waited
        import httpx

        # a client made in an event loop that has since ended is abandoned, not closed: its
        # connections belonged to that loop
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            verify=context,
            transport=self._transport,
            headers={"user-agent": f"ecoasync/{__version__}", "accept": "application/json"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=0),
            trust_env=self._transport is None,
        )
        self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the client (if it belongs to the running loop) and forget the cache."""
        client, loop = self._client, self._client_loop
        self._client, self._client_loop = None, None
        self._cache.clear()
        self._failures.clear()
        if client is not None and loop is _loop_identity():
            await client.aclose()

    # --- errors -------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the provider replaced by ``***``."""
        for secret in self._secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def unavailable(
        self, what: str, cause: str, *, zone: str | None, status: int | None = None
    ) -> ForecastUnavailable:
        cause = self.scrub(cause)
        message = self.scrub(f"{self.provider}: {what} failed: {cause}")
        if status is not None:
            return HttpStatusUnavailable(
                message, provider=self.provider, zone=zone, cause=cause, status=status
            )
        return ForecastUnavailable(message, provider=self.provider, zone=zone, cause=cause)

    # --- requests -----------------------------------------------------------------------

    async def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        zone: str | None = None,
        what: str | None = None,
    ) -> Any:
        """GET ``path`` (relative to ``base_url``) and return its JSON, retrying as configured.

        Raises:
            ForecastUnavailable: no usable answer; chained from the last underlying error.
        """
        what = what or f"GET {path}"
        if self._monotonic() < self._blocked_until:
            wait = self._blocked_until - self._monotonic()
            raise self.unavailable(
                what, f"rate limited (HTTP 429): the server asked for {wait:.0f} s more", zone=zone
            )
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(path, params, headers)
            except _Attempt as failed:
                last = attempt == attempts or not failed.retry
                if failed.wait is not None and failed.wait > self.retry.max_retry_after:
                    self._blocked_until = self._monotonic() + failed.wait
                    raise self.unavailable(
                        what,
                        f"{failed.cause}; Retry-After {failed.wait:.0f} s is more than "
                        f"max_retry_after={self.retry.max_retry_after:g} s",
                        zone=zone,
                    ) from failed.__cause__
                if last:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise self.unavailable(
                        what, f"{failed.cause}{tries}", zone=zone, status=failed.status
                    ) from failed.__cause__
                delay = (
                    failed.wait if failed.wait is not None else self.retry.delay(attempt, self._rng)
                )
                self.retries += 1
                log.info(
                    "ecoasync.forecast_retry",
                    provider=self.provider,
                    zone=zone,
                    attempt=attempt,
                    cause=self.scrub(failed.cause),
                    delay_s=round(delay, 3),
                )
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, path: str, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> Any:
        client = await self.client()
        import httpx

        self.requests += 1
        try:
            with anyio.fail_after(self.timeout):
                async with client.stream("GET", path, params=params, headers=headers) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY_BYTES:
                            raise _Attempt(
                                f"response larger than {MAX_BODY_BYTES} bytes", retry=False
                            )
        except TimeoutError as exc:
            raise _Attempt(
                f"no complete answer within timeout={self.timeout:g} s", retry=True
            ) from exc
        except httpx.TimeoutException as exc:
            raise _Attempt(f"{_phase(exc)} timed out", retry=True) from exc
        except httpx.TransportError as exc:
            raise _Attempt(f"{type(exc).__name__}: {_short(exc)}", retry=True) from exc
        except httpx.HTTPError as exc:
            raise _Attempt(f"{type(exc).__name__}: {_short(exc)}", retry=False) from exc
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"), now=self._wallclock())
            raise _Attempt("rate limited (HTTP 429)", retry=True, wait=wait, status=429)
        if status >= 500:
            raise _Attempt(
                f"HTTP {status} {response.reason_phrase}".rstrip(), retry=True, status=status
            )
        if status in (401, 403):
            raise _Attempt(
                f"HTTP {status} {response.reason_phrase}: the credentials were refused; check the "
                "token (or username and password)",
                retry=False,
                status=status,
            )
        if status >= 400 or status < 200:
            raise _Attempt(
                f"HTTP {status} {response.reason_phrase}{_detail(bytes(body))}".rstrip(),
                retry=False,
                status=status,
            )
        try:
            return json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Attempt(
                f"malformed JSON ({type(exc).__name__}: {str(exc)[:120]}; {len(body)} bytes)",
                retry=False,
            ) from exc

    async def fetch(
        self,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        zone: str | None = None,
        what: str | None = None,
    ) -> T:
        """:meth:`get_json`, then ``parse`` it; a payload that does not parse is unavailable too."""
        what = what or f"GET {path}"
        data = await self.get_json(path, params=params, headers=headers, zone=zone, what=what)
        try:
            return parse(data)
        except (PayloadError, ValueError, TypeError) as exc:
            raise self.unavailable(what, f"unexpected payload: {exc}", zone=zone) from exc

    # --- cache and single-flight --------------------------------------------------------

    def cached_nowait(self, key: Hashable) -> object | None:
        """The cached value for ``key`` if fresh, else None. No I/O, no await."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            del self._cache[key]
            return None
        return entry[1]

    def put(self, key: Hashable, value: object, ttl: float) -> None:
        now = self._monotonic()
        if len(self._cache) >= 256:
            for stale in [k for k, (exp, _) in self._cache.items() if exp <= now]:
                del self._cache[stale]
        self._cache[key] = (now + ttl, value)

    def forget(self, key: Hashable) -> None:
        self._cache.pop(key, None)

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
        """``fetch(key)``'s value for ``key``: from the cache if fresh, else from the one request in
        flight for ``key``, else from a new one (whose value is cached for ``ttl`` seconds, when
        ``ttl > 0``). A failure is remembered for ``error_ttl`` seconds, so that callers arriving
        just after it fail fast instead of hammering a struggling server.

        ``deadline`` (``anyio.current_time()`` units) bounds the wait: past it, the caller gets
        :class:`~ecoasync.ForecastTimeout`. A request led with a deadline gives up at it and
        every caller waiting on it gets the same error; a caller that joins a request bounded
        no later than its own deadline waits without a timer of its own.

        ``window`` (``start, end``): the value is a :class:`~ecoasync.Forecast`; return its
        slots that overlap the window (so that a provider's method can hand this coroutine
        to its caller as it is, without a frame of its own around it)."""
        while True:
            hit = self.cached_nowait(key)
            if hit is not None:
                await anyio.lowlevel.checkpoint()
                return _view(cast("T", hit), window)
            failure = self._failures.get(key)
            if failure is not None:
                if failure[0] > self._monotonic():
                    await anyio.lowlevel.checkpoint()
                    raise _copy(failure[1], " (a recent failure, remembered for a few seconds)")
                del self._failures[key]
            flight = self._flights.get(key)
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
                raise _copy(flight.error)
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
        flight = _Flight(math.inf if deadline is None else deadline)
        self._flights[key] = flight
        kind = str(key[0]) if isinstance(key, tuple) and key else "other"
        self.fetches[kind] = self.fetches.get(kind, 0) + 1
        try:
            if deadline is None:
                value = await fetch(key)
            else:
                began = anyio.current_time()
                with anyio.CancelScope(deadline=deadline) as scope:
                    value = await fetch(key)
                if scope.cancelled_caught:
                    raise self._timed_out(key, zone, max(deadline - began, 0.0))
        except ForecastUnavailable as exc:
            flight.error = exc
            if self.error_ttl > 0:
                self._failures[key] = (self._monotonic() + self.error_ttl, exc)
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if flight.error is not None or flight.abandoned:
                flight.wake_all()
        flight.value = value
        if ttl > 0 and value:
            self.put(key, value, ttl)
        await self._release(flight)
        return value

    def _timed_out(self, key: Hashable, zone: str | None, waited: float | None) -> ForecastTimeout:
        kind = str(key[0]) if isinstance(key, tuple) and key else "request"
        cause = "no answer by the deadline" if waited is None else f"no answer within {waited:.3g}s"
        return ForecastTimeout(
            f"{self.provider}: {kind} failed: {cause}",
            provider=self.provider,
            zone=zone,
            cause=cause,
        )

    async def _release(self, flight: _Flight) -> None:
        """Wake the waiters a group per event-loop turn, so a herd never stalls the loop.

        The pace holds for every request of the loop together: the answers of several
        providers (a forecast and a history per zone) arrive within milliseconds of one
        another, and each waking its own group per turn would wake several groups per turn.
        The first release of the loop wakes them all, in the order they were queued; the
        others hand their groups to it and return.
        """
        loop = _loop_identity()
        queue = _RELEASING.get(loop)
        if queue is not None:  # another release is pacing this loop: it wakes ours too
            queue.extend(flight.groups)
            return
        queue = _RELEASING[loop] = collections.deque(flight.groups)
        try:
            with anyio.CancelScope(shield=True):
                while queue:
                    _Flight.wake(queue.popleft())
                    if queue:
                        await anyio.lowlevel.checkpoint()
        finally:
            del _RELEASING[loop]
            while queue:  # (idempotent) nobody is left waiting
                _Flight.wake(queue.popleft())
            flight.wake_all()


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


def _phase(exc: Exception) -> str:
    name = type(exc).__name__
    return {
        "ConnectTimeout": "connecting",
        "ReadTimeout": "reading the response",
        "WriteTimeout": "sending the request",
        "PoolTimeout": "waiting for a free connection",
    }.get(name, "the request")


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _detail(body: bytes) -> str:
    """A short, safe detail from an error body (``message`` or ``error`` of a JSON object)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return f": {value[:200]}"
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return f": {value['message'][:200]}"
    return ""


# --- payload helpers ------------------------------------------------------------------------


def field(obj: object, key: str, path: str) -> object:
    """``obj[key]``, or a :class:`PayloadError` naming the path."""
    if not isinstance(obj, dict):
        raise PayloadError(f"{path or 'the response'} is {_kind(obj)}, expected an object")
    if key not in obj:
        raise PayloadError(f"{path + '.' if path else ''}{key} is missing")
    return obj[key]


def as_list(obj: object, path: str) -> list[Any]:
    if not isinstance(obj, list):
        raise PayloadError(f"{path} is {_kind(obj)}, expected a list")
    return obj


def as_number(obj: object, path: str) -> float:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        raise PayloadError(f"{path} is {_kind(obj)}, expected a number")
    if not math.isfinite(obj) or obj < 0:
        raise PayloadError(f"{path} is {obj!r}, expected a finite number >= 0")
    return float(obj)


def as_time(obj: object, path: str) -> datetime:
    """An ISO 8601 time with an offset (``Z``, ``+01:00``), converted to UTC."""
    from ._csv import parse_trace_time

    if not isinstance(obj, str):
        raise PayloadError(f"{path} is {_kind(obj)}, expected an ISO 8601 time")
    try:
        return parse_trace_time(obj)
    except ValueError as exc:
        raise PayloadError(f"{path} is {obj!r}, expected an ISO 8601 time with an offset") from exc


def _kind(obj: object) -> str:
    if obj is None:
        return "null"
    text = repr(obj)
    return f"{type(obj).__name__} {text[:40]}"


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_from(value: str | None, env: tuple[str, ...], *, what: str, owner: str) -> Secret:
    """``value``, else the first of the environment variables ``env`` that is set."""
    import os

    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{owner}: {what} must be a non-empty string")
        return Secret(value.strip())
    for name in env:
        found = os.environ.get(name, "").strip()
        if found:
            return Secret(found)
    raise ValueError(
        f"{owner} needs {what}: pass {what}=... or set the environment variable {env[0]}"
    )
