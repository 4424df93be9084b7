"""``EventBus``: typed in-process publish/subscribe for session events."""

from __future__ import annotations

import inspect
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload

import anyio

from ._log import get_logger
from .events import Event

__all__ = ["EventBus", "EventStream", "Handler", "Subscription"]

log = get_logger()

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], "Awaitable[object] | object"]
"""A callable taking one event; it may be a coroutine function."""


class Subscription:
    """What :meth:`EventBus.subscribe` returns: call :meth:`unsubscribe` (or use it as a
    context manager) to stop receiving events. Unsubscribing twice is harmless."""

    __slots__ = ("_bus", "handler", "is_async", "types")

    def __init__(self, bus: EventBus, handler: Handler, types: tuple[type[Event], ...]) -> None:
        self._bus: EventBus | None = bus
        self.handler = handler
        self.types = types
        self.is_async = _is_async(handler)

    def wants(self, event: Event) -> bool:
        return not self.types or isinstance(event, self.types)

    @property
    def active(self) -> bool:
        return self._bus is not None

    def unsubscribe(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.types) or "all events"
        return f"<Subscription {_name(self.handler)} to {names}{'' if self.active else ' (ended)'}>"


def _name(handler: object) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


class EventBus:
    """In-process publish/subscribe for session events.

    Handlers are called in subscription order, each with the event. A handler may be a plain
    function or a coroutine function (or any callable returning an awaitable). A handler that
    raises, or an async handler that takes longer than ``handler_timeout`` seconds, is logged
    through structlog (``ecoasync.handler_failed``) and counted in :attr:`failures`; it never
    reaches the workload or the other handlers.

    ``stream()`` gives live consumers an async iterator with a bounded buffer: a consumer that
    falls behind loses the oldest events (counted in :attr:`dropped`), it never slows the
    workload.
    """

    def __init__(self, *, handler_timeout: float = 5.0) -> None:
        if (
            isinstance(handler_timeout, bool)
            or not isinstance(handler_timeout, int | float)
            or not (handler_timeout > 0 and math.isfinite(handler_timeout))
        ):
            raise ValueError(
                f"handler_timeout must be a finite number of seconds > 0, got {handler_timeout!r}"
            )
        self._subs: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._listening: dict[type[Event], bool] = {}
        self._pending: deque[tuple[Event, Subscription, Awaitable[object] | None]] = deque()
        self.handler_timeout = float(handler_timeout)
        self.failures = 0
        """How many handler calls raised or timed out."""
        self.dropped = 0
        """How many events slow ``stream()`` consumers lost."""
        self.emitted = 0
        """How many events were emitted."""

    def __repr__(self) -> str:
        return f"<EventBus subscribers={len(self._subs)} emitted={self.emitted} failures={self.failures}>"

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subs

    @overload
    def subscribe(self, handler: Callable[[E], object], event_type: type[E], /) -> Subscription: ...
    @overload
    def subscribe(self, handler: Handler, /, *event_types: type[Event]) -> Subscription: ...
    def subscribe(self, handler: Handler, /, *event_types: type[Event]) -> Subscription:
        """Call ``handler`` for every event of ``event_types`` (every event if none are given)."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}: {handler!r}")
        for t in event_types:
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(
                    f"event types must be Event subclasses from ecoasync.events, got {t!r}"
                )
        sub = Subscription(self, handler, tuple(event_types))
        with self._lock:
            self._subs = (*self._subs, sub)
            self._listening = {}
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._listening = {}

    async def emit(self, event: Event) -> None:
        """Deliver ``event`` to every matching handler, in subscription order.

        Events queued by :meth:`emit_nowait` for async handlers are delivered first, so order
        is kept. Never raises because of a handler.
        """
        if self._pending:
            await self.flush()
        self.emitted += 1
        for sub in self._subs:
            if sub.wants(event):
                await self._call(sub, event)

    def emit_nowait(self, event: Event) -> None:
        """Deliver ``event`` without awaiting: for sync code on the event loop's thread.

        Sync handlers are called at once; async handlers get the event at the next
        :meth:`emit` or :meth:`flush` (a session flushes before it completes).
        """
        self.emitted += 1
        for sub in self._subs:
            if not sub.wants(event):
                continue
            if sub.is_async:
                self._pending.append((event, sub, None))
                continue
            try:
                result = sub.handler(event)
            except Exception as exc:
                self._failed(sub, event, exc)
                continue
            if inspect.isawaitable(result):
                # a callable that returned an awaitable: finish it at the next flush
                self._pending.append((event, sub, result))

    def listens(self, event_type: type[Event]) -> bool:
        """Whether any subscriber would receive events of ``event_type`` (cached)."""
        known = self._listening.get(event_type)
        if known is None:
            known = any(not sub.types or issubclass(event_type, sub.types) for sub in self._subs)
            self._listening[event_type] = known
        return known

    @property
    def needs_await(self) -> bool:
        """Whether emitting may await: an async handler is subscribed or events are pending."""
        return bool(self._pending) or any(sub.is_async for sub in self._subs)

    def has_pending(self) -> bool:
        """Whether events from :meth:`emit_nowait` still wait for async handlers."""
        return bool(self._pending)

    async def flush(self) -> None:
        """Deliver events queued by :meth:`emit_nowait` to async handlers."""
        while self._pending:
            event, sub, started = self._pending.popleft()
            if started is not None:
                await self._await(sub, event, started)
            elif sub.active:
                await self._call(sub, event)

    async def _call(self, sub: Subscription, event: Event) -> None:
        try:
            result = sub.handler(event)
        except Exception as exc:
            self._failed(sub, event, exc)
            return
        if inspect.isawaitable(result):
            await self._await(sub, event, result)

    async def _await(self, sub: Subscription, event: Event, awaitable: Awaitable[object]) -> None:
        try:
            with anyio.fail_after(self.handler_timeout):
                await awaitable
        except TimeoutError as exc:
            self._failed(sub, event, exc, timed_out=True)
        except Exception as exc:
            self._failed(sub, event, exc)

    def _failed(
        self, sub: Subscription, event: Event, exc: BaseException, *, timed_out: bool = False
    ) -> None:
        self.failures += 1
        log.error(
            "ecoasync.handler_failed",
            handler=_name(sub.handler),
            event_kind=event.kind,
            session_id=event.session_id,
            timed_out=timed_out,
            timeout_s=self.handler_timeout if timed_out else None,
            failures=self.failures,
            error=repr(exc),
        )

    def stream(self, *event_types: type[Event], max_buffer: int = 1000) -> EventStream:
        """An async iterator over the events emitted from now on.

        Use it as ``async with bus.stream(Completed) as events: async for e in events: ...``
        (or iterate directly and call ``aclose()``). At most ``max_buffer`` events wait for
        the consumer; beyond that the oldest are dropped and counted.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer must be an int >= 1, got {max_buffer!r}")
        return EventStream(self, tuple(event_types), max_buffer)


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


class EventStream:
    """An async iterator over a bus's events, from :meth:`EventBus.stream`."""

    def __init__(self, bus: EventBus, types: tuple[type[Event], ...], max_buffer: int) -> None:
        self._bus = bus
        self._buffer: deque[Event] = deque()
        self._max = max_buffer
        self._wakeup: anyio.Event | None = None
        self._closed = False
        self._warned = False
        self._sub = bus.subscribe(self._put, *types)

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self._bus.dropped += 1
            if not self._warned:
                self._warned = True
                log.warning(
                    "ecoasync.stream_overflow",
                    max_buffer=self._max,
                    hint="the consumer of bus.stream() is slower than the events; the oldest are dropped",
                )
        self._buffer.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

    def receive_nowait(self) -> Event | None:
        """The next buffered event, or None."""
        return self._buffer.popleft() if self._buffer else None

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffer is drained."""
        self._closed = True
        self._sub.unsubscribe()
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
