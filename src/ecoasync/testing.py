"""Helpers for testing code that uses ecoasync: a virtual clock, an event capture and fake
providers. A four-hour wait takes milliseconds::

    from ecoasync.testing import VirtualClock, capture_events, FakeProvider

    with VirtualClock.installed() as clock, capture_events() as events:
        async with carbon_session(Policy(max_delay="4h", provider=FakeProvider.day())):
            ...
    assert events.kinds()[-1] == "completed"
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._backend import Gate, wait_all_tasks_blocked
from ._bus import EventBus, Subscription
from ._clock import use_clock
from ._exceptions import ForecastUnavailable
from ._forecast import Forecast, as_utc
from ._instrument._fakes import FakeLLM as FakeLLM
from ._instrument._fakes import FakeRequest as FakeRequest
from ._session import default_bus
from .events import Event
from .providers import StaticForecastProvider, synthetic_day

E = TypeVar("E", bound=Event)

__all__ = [
    "CapturedEvents",
    "FailingProvider",
    "FakeLLM",
    "FakeProvider",
    "FakeRequest",
    "VirtualClock",
    "capture_events",
]


class VirtualClock:
    """A clock whose time jumps ahead as soon as every task is waiting.

    ``sleep_until`` registers the deadline and yields until no other task of the event loop
    is ready to run (on asyncio and trio), then jumps the time to the earliest pending
    deadline and wakes whoever waits for it, like trio's ``MockClock(autojump_threshold=0)``.
    A task waiting on real I/O does not hold the time back. Time never goes backwards; use
    :meth:`advance` to move it by hand.

    With ``autojump=False`` the time moves only when :meth:`advance` is called: for tests
    where work must still be waiting at a given moment (a service shutting down with jobs
    waiting for their slot, say). Call ``advance`` from the event loop's thread.
    """

    def __init__(
        self, start: datetime | None = None, *, patience: int = 100_000, autojump: bool = True
    ) -> None:
        self._now = (
            as_utc(start, what="start") if start is not None else datetime(2026, 3, 18, tzinfo=UTC)
        )
        # a heap of (deadline, seq, sleeper): compared in C, not by a method per comparison;
        # cancelled sleepers stay until they surface
        self._sleepers: list[tuple[datetime, int, _Sleeper]] = []
        self._cancelled = 0
        self._seq = itertools.count()
        self._driver: _Sleeper | None = None
        self._patience = patience
        self.autojump = autojump
        self.slept = timedelta(0)
        """Total virtual time this clock has jumped over."""

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the time forward by ``delta`` and wake every sleeper whose deadline passed."""
        if delta < timedelta(0):
            raise ValueError(f"a virtual clock only moves forward, got {delta}")
        self._jump_to(self._now + delta)

    def _jump_to(self, when: datetime) -> None:
        if when > self._now:
            self.slept += when - self._now
            self._now = when
        while (head := self._head()) is not None and head.deadline <= self._now:
            heapq.heappop(self._sleepers)
            head.queued = False
            head.wake()

    def _head(self) -> _Sleeper | None:
        """The sleeper with the earliest deadline, dropping the cancelled ones on the way."""
        sleepers = self._sleepers
        while sleepers and not sleepers[0][2].queued:
            heapq.heappop(sleepers)
            self._cancelled -= 1
        return sleepers[0][2] if sleepers else None

    async def sleep_until(self, deadline: datetime) -> None:
        deadline = as_utc(deadline, what="deadline")
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        me = _Sleeper(deadline)
        heapq.heappush(self._sleepers, (deadline, next(self._seq), me))
        try:
            while self._now < deadline:
                if self._driver is None and self.autojump:
                    # one sleeper at a time drives the clock; the others just wait
                    self._driver = me
                    try:
                        await self._drive(me)
                    finally:
                        self._driver = None
                        if (head := self._head()) is not None:
                            head.wake()  # hand the wheel to the next sleeper
                    return
                await me.waiting()  # woken to drive, or because our time has come
        finally:
            if me.queued:  # cancelled while queued: left in the heap, skipped when it surfaces
                me.queued = False
                self._cancelled += 1
                if self._cancelled > len(self._sleepers) // 2:  # mostly dead: rebuild
                    self._sleepers = [s for s in self._sleepers if s[2].queued]
                    heapq.heapify(self._sleepers)
                    self._cancelled = 0
                if self._driver is None and self.autojump and (head := self._head()) is not None:
                    head.wake()  # we may have been handed the wheel: pass it on

    async def _drive(self, me: _Sleeper) -> None:
        while self._now < me.deadline:
            await wait_all_tasks_blocked(self._patience)  # everyone done at this instant
            if (head := self._head()) is not None:
                self._jump_to(head.deadline)

    @classmethod
    @contextmanager
    def installed(
        cls, start: datetime | None = None, *, autojump: bool = True
    ) -> Iterator[VirtualClock]:
        """Create a virtual clock and make it the clock of sessions started in the block."""
        clock = cls(start, autojump=autojump)
        with use_clock(clock):
            yield clock

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now.isoformat()})"


class _Sleeper(Gate):
    """One task's deadline in the heap, and the gate it waits at.

    Ten thousand waiting sessions mean ten thousand sleepers, so a sleeper is small: the gate
    holds a bare future while it waits (on asyncio; see :class:`ecoasync._backend.Gate`).
    """

    __slots__ = ("_woken", "deadline", "queued")

    def __init__(self, deadline: datetime) -> None:
        super().__init__()
        self.deadline = deadline
        self.queued = True
        self._woken = False

    def wake(self) -> None:
        """Complete the pending :meth:`waiting` (or, if none, make the next one return at once)."""
        if self.parked:
            self.open()
        else:
            self._woken = True

    def waiting(self) -> Awaitable[None]:
        """What to await until :meth:`wake` (cancellable)."""
        if self._woken:
            self._woken = False
            return anyio.lowlevel.checkpoint()
        return self.park()


class CapturedEvents(list[Event]):
    """The events a bus emitted while capturing, in order."""

    def kinds(self) -> list[str]:
        return [e.kind for e in self]

    def of(self, event_type: type[E]) -> list[E]:
        """The captured events of one type."""
        return [e for e in self if isinstance(e, event_type)]


@contextmanager
def capture_events(
    bus: EventBus | None = None, *event_types: type[Event]
) -> Iterator[CapturedEvents]:
    """Collect the events emitted on ``bus`` (default: the default bus) inside the block."""
    captured = CapturedEvents()
    target = bus if bus is not None else default_bus()
    sub: Subscription = target.subscribe(captured.append, *event_types)
    try:
        yield captured
    finally:
        sub.unsubscribe()


class FakeProvider(StaticForecastProvider):
    """A static provider that also counts its calls (``calls``)."""

    def __init__(self, forecast: Forecast | Iterable[object], **kwargs: object) -> None:
        super().__init__(forecast, **kwargs)  # type: ignore[arg-type]
        self.calls = 0

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        self.calls += 1
        return await super().forecast(start, end)

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast:
        self.calls += 1
        return super().forecast_nowait(start, end)

    @classmethod
    def day(
        cls, start: datetime | None = None, *, slot: timedelta = timedelta(minutes=30)
    ) -> FakeProvider:
        """A fake over :func:`ecoasync.providers.synthetic_day` (dirty evening, clean night)."""
        return cls(synthetic_day(start, slot=slot))


class FailingProvider:
    """A provider that always fails (or hangs), to test the forecast-error paths."""

    def __init__(
        self,
        error: Callable[[], BaseException] | None = None,
        *,
        hang: bool = False,
        name: str = "failing",
    ) -> None:
        self._error = error or (
            lambda: ForecastUnavailable("the test provider failed", provider=name, cause="test")
        )
        self._hang = hang
        self.calls = 0
        self.name = name

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        self.calls += 1
        if self._hang:
            await anyio.sleep_forever()
        raise self._error()
