"""Clocks: where a session reads the time and how it waits.

Layer: values (a seam below everything that waits); imports nothing of ecoasync.

The system clock sleeps with anyio in bounded chunks against the wall clock, so a suspended
laptop or a clock step does not shift the slot. ``ecoasync.testing.VirtualClock`` replaces it
in tests and demos.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock", "current_clock", "use_clock"]

MAX_SLEEP_CHUNK_S = 60.0


@runtime_checkable
class Clock(Protocol):
    """What a session needs from time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Return at or after ``deadline`` (a checkpoint even if it has passed). Cancellable."""
        ...


class SystemClock:
    """The wall clock. Sleeps in chunks of at most a minute and re-reads the time after each."""

    def __init__(self, *, max_chunk: float = MAX_SLEEP_CHUNK_S) -> None:
        self.max_chunk = max_chunk

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        while True:
            remaining = (deadline - self.now()).total_seconds()
            if remaining <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(min(remaining, self.max_chunk))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
_clock: ContextVar[Clock] = ContextVar("ecoasync_clock", default=SYSTEM_CLOCK)


def current_clock() -> Clock:
    """The clock sessions started in this context use."""
    return _clock.get()


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the clock of sessions started inside the ``with`` block (this context)."""
    if not isinstance(clock, Clock):
        raise TypeError(f"clock must have now() and async sleep_until(deadline), got {clock!r}")
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)
