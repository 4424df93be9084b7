"""``EventBus``: typed in-process publish/subscribe for session events."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Literal, TypeVar, overload

import anyio

from ._backend import current_loop, spawn
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

    __slots__ = ("_bus", "_late", "_rest", "handler", "is_async", "types")

    def __init__(self, bus: EventBus, handler: Handler, types: tuple[type[Event], ...]) -> None:
        self._bus: EventBus | None = bus
        self.handler = handler
        self.types = types
        self.is_async = _is_async(handler)
        self._rest: tuple[object, float] | None = None  # (loop, until): resting after a timeout
        self._late = 0  # deliveries given up on whose task still runs (a handler in a thread)

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


_Item = tuple[Event, Subscription, "Awaitable[object] | None"]
"""An event for an async handler: the handler is called when it is delivered (None), or it
was already called and returned this awaitable."""


class EventBus:
    """In-process publish/subscribe for session events.

    Every handler gets the events in the order they were emitted. Sync handlers are called at
    once, inline, in subscription order, before any async handler is awaited: a sink that only
    queues (``JsonlSink``) has each event, ``Completed`` included, whatever the async handlers
    do. Async handlers (coroutine functions, or callables returning an awaitable) then run
    concurrently, each in its own task, each bounded by ``handler_timeout`` seconds.

    A handler never reaches the workload or the other handlers. One that raises (or cancels
    itself) is logged through structlog (``ecoasync.handler_failed``) and counted in
    :attr:`failures`. An async handler still running after ``handler_timeout`` is cancelled,
    logged and counted the same way, and the emitter goes on without waiting for it, even if
    it is blocked in a thread; it then rests for ``handler_timeout`` seconds (and while the
    task given up on still runs): the events of that time are not given to it and are counted
    in :attr:`dropped`, so a hung handler costs a session one timeout, not one per event. A
    sync handler that holds the event loop longer than ``slow_handler_s`` is logged
    (``ecoasync.handler_slow``) and counted in :attr:`slow`.

    ``stream()`` gives a live consumer an async iterator with a bounded buffer: a consumer
    that falls behind loses the oldest events (counted in :attr:`dropped`), it never slows
    the workload.
    """

    def __init__(self, *, handler_timeout: float = 5.0, slow_handler_s: float = 0.1) -> None:
        for label, value in (
            ("handler_timeout", handler_timeout),
            ("slow_handler_s", slow_handler_s),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (value > 0 and math.isfinite(value))
            ):
                raise ValueError(f"{label} must be a finite number of seconds > 0, got {value!r}")
        self._subs: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._listening: dict[type[Event], bool] = {}
        self._pending: deque[_Item] = deque()
        self.handler_timeout = float(handler_timeout)
        self.slow_handler_s = float(slow_handler_s)
        self.failures = 0
        """How many handler calls raised, cancelled themselves or timed out."""
        self.dropped = 0
        """How many events slow consumers lost: a full ``stream()`` buffer, or an async
        handler resting after a timeout."""
        self.slow = 0
        """How many sync handler calls held the event loop longer than ``slow_handler_s``."""
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
        """Deliver ``event`` to every matching handler: sync ones at once, then async ones.

        Events queued by :meth:`emit_nowait` for async handlers are delivered first, so each
        handler keeps the order. Waits at most ``handler_timeout``; never raises because of
        a handler.
        """
        self.emit_nowait(event)
        if self._pending:
            await self.flush()

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
            began = time.perf_counter()
            try:
                result = sub.handler(event)
            except Exception as exc:
                self._failed(sub, event, exc)
                continue
            finally:
                held = time.perf_counter() - began
                if held > self.slow_handler_s:
                    self._slow(sub, event, held)
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
        """Deliver the events queued so far by :meth:`emit_nowait` to async handlers.

        Each handler gets its events in order, in its own task, concurrently with the other
        handlers; the whole takes at most ``handler_timeout``.
        """
        items = list(self._pending)
        self._pending.clear()
        rounds: dict[Subscription, _Delivery] = {}
        for event, sub, started in items:
            if started is None and not sub.active:
                continue
            if self._resting(sub):
                self.dropped += 1
                _discard(started)
                continue
            delivery = rounds.get(sub)
            if delivery is None:
                delivery = rounds[sub] = _Delivery(sub)
            delivery.items.append((event, started))
        if rounds:
            await self._deliver(list(rounds.values()))

    async def _deliver(self, deliveries: list[_Delivery]) -> None:
        """Run each delivery in its own task; wait for them all, at most ``handler_timeout``
        (or until the caller's own deadline, such as the completion bound, if sooner)."""
        done = _Countdown(len(deliveries))
        for delivery in deliveries:
            spawn(partial(self._run, delivery, done))  # a task the emitter need not wait for
        own = anyio.current_time() + self.handler_timeout
        deadline = min(own, anyio.current_effective_deadline())
        try:
            with anyio.CancelScope(deadline=deadline):
                await done.finished.wait()
        finally:
            late = [d for d in deliveries if d.state == "running"]
            if late:
                # a deadline (ours, or the caller's such as the completion bound) ran out,
                # or else the emitter was cancelled
                timed_out = anyio.current_time() >= deadline
                for delivery in late:
                    self._give_up(delivery, timed_out=timed_out, rests=deadline == own)

    async def _run(self, delivery: _Delivery, done: _Countdown) -> None:
        sub = delivery.sub
        try:
            with delivery.scope:
                for event, started in delivery.items:
                    if delivery.state != "running":
                        break
                    delivery.begun += 1
                    try:
                        result = started if started is not None else sub.handler(event)
                        if inspect.isawaitable(result):
                            await result
                    except Exception as exc:
                        if delivery.state == "running":
                            self._failed(sub, event, exc)
                    except anyio.get_cancelled_exc_class() as exc:
                        if delivery.scope.cancel_called or not _self_cancelled():
                            raise
                        # the handler cancelled itself (it awaited a cancelled future): that
                        # stays in this task, and is counted
                        self._failed(sub, event, exc)
        finally:
            for _, started in delivery.items[delivery.begun :]:
                _discard(started)
            if delivery.state == "given up":
                sub._late -= 1
            else:
                delivery.state = "done"
            done.count_down()

    def _give_up(self, delivery: _Delivery, *, timed_out: bool, rests: bool) -> None:
        """Stop waiting for ``delivery``: cancel it and count what it did not deliver. After
        a whole ``handler_timeout`` (``rests``), its handler rests as long."""
        delivery.state = "given up"
        delivery.scope.cancel()
        sub = delivery.sub
        sub._late += 1
        self.dropped += len(delivery.items) - delivery.begun
        if delivery.begun == 0:
            return  # its task had not even started
        if not timed_out:  # cut short by the emitter's cancellation: not the handler's fault
            self.dropped += 1
            return
        if rests:
            sub._rest = (current_loop(), anyio.current_time() + self.handler_timeout)
        event = delivery.items[delivery.begun - 1][0]
        self._failed(sub, event, TimeoutError(), timed_out=True, rests=rests)

    def _resting(self, sub: Subscription) -> bool:
        if sub._late:
            return True
        rest = sub._rest
        if rest is None:
            return False
        if rest[0] is current_loop() and anyio.current_time() < rest[1]:
            return True
        sub._rest = None
        return False

    def _failed(
        self,
        sub: Subscription,
        event: Event,
        exc: BaseException,
        *,
        timed_out: bool = False,
        rests: bool = False,
    ) -> None:
        self.failures += 1
        log.error(
            "ecoasync.handler_failed",
            handler=_name(sub.handler),
            event_kind=event.kind,
            session_id=event.session_id,
            timed_out=timed_out,
            timeout_s=self.handler_timeout if timed_out else None,
            rests_s=self.handler_timeout if rests else None,
            failures=self.failures,
            error=repr(exc),
        )

    def _slow(self, sub: Subscription, event: Event, held: float) -> None:
        self.slow += 1
        log.warning(
            "ecoasync.handler_slow",
            handler=_name(sub.handler),
            event_kind=event.kind,
            session_id=event.session_id,
            held_s=round(held, 4),
            slow_handler_s=self.slow_handler_s,
            slow=self.slow,
            hint="a sync handler runs on the event loop: queue the event and do the I/O elsewhere",
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


class _Delivery:
    """One handler's events of a delivery round, delivered in order in a task of their own."""

    __slots__ = ("begun", "items", "scope", "state", "sub")

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.items: list[tuple[Event, Awaitable[object] | None]] = []
        self.begun = 0  # how many events it has started to deliver
        self.scope = anyio.CancelScope()
        self.state: Literal["running", "done", "given up"] = "running"


class _Countdown:
    __slots__ = ("finished", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.finished = anyio.Event()

    def count_down(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.finished.set()


def _self_cancelled() -> bool:
    """Whether a cancellation exception seen in a delivery task is not a real cancellation of
    that task: on asyncio, one that nobody requested (a handler awaited a cancelled future)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False  # trio: cancellations always come from a cancel scope
    return task is not None and task.cancelling() == 0


def _discard(started: Awaitable[object] | None) -> None:
    """Close an awaitable that will never be awaited (no "never awaited" warning)."""
    close = getattr(started, "close", None)
    if close is not None:
        close()


class EventStream:
    """An async iterator over a bus's events, from :meth:`EventBus.stream`.

    One consumer per stream: a second task waiting on it at the same time gets
    ``RuntimeError``. Give each consumer its own ``bus.stream()``; each gets every event.
    """

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
            if self._wakeup is not None:
                raise RuntimeError(
                    "another task is already waiting on this bus.stream(); a stream has one "
                    "consumer: call bus.stream() once per consumer (each gets every event)"
                )
            wakeup = self._wakeup = anyio.Event()
            try:
                await wakeup.wait()
            finally:
                if self._wakeup is wakeup:  # cancelled while waiting
                    self._wakeup = None
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
