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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel

from ._bus import EventBus, Subscription
from ._clock import use_clock
from ._exceptions import ForecastUnavailable
from ._forecast import Forecast, as_utc
from ._session import default_bus
from .events import Event
from .providers import StaticForecastProvider, synthetic_day

__all__ = [
    "CapturedEvents",
    "FailingProvider",
    "FakeProvider",
    "VirtualClock",
    "capture_events",
]


class VirtualClock:
    """A clock whose time only moves when every task waiting on it would otherwise sleep.

    ``sleep_until`` registers the deadline, lets the other tasks run (so that concurrent
    sessions all register theirs), then jumps the time to the earliest deadline and wakes
    whoever waits for it. Time never goes backwards. Use :meth:`advance` to move it by hand.
    """

    def __init__(self, start: datetime | None = None, *, settle: int = 20) -> None:
        self._now = (
            as_utc(start, what="start") if start is not None else datetime(2026, 3, 18, tzinfo=UTC)
        )
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._seq = itertools.count()
        self._settle = settle
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
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    async def sleep_until(self, deadline: datetime) -> None:
        deadline = as_utc(deadline, what="deadline")
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._seq), event)
        heapq.heappush(self._sleepers, entry)
        try:
            while not event.is_set():
                for _ in range(self._settle):
                    await anyio.lowlevel.checkpoint()
                    if event.is_set():
                        return
                # nobody woke us while others ran: jump to the earliest pending deadline
                self._jump_to(self._sleepers[0][0])
        finally:
            if not event.is_set():
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    @classmethod
    @contextmanager
    def installed(cls, start: datetime | None = None) -> Iterator[VirtualClock]:
        """Create a virtual clock and make it the clock of sessions started in the block."""
        clock = cls(start)
        with use_clock(clock):
            yield clock

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now.isoformat()})"


class CapturedEvents(list[Event]):
    """The events a bus emitted while capturing, in order."""

    def kinds(self) -> list[str]:
        return [e.kind for e in self]

    def of(self, event_type: type[Event]) -> list[Event]:
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
