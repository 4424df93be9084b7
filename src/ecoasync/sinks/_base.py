"""What a sink is, and how every sink keeps its own failures out of the workload.

Layer: edges (sinks consume the bus's events); imports values only (the events, the logger, the
checks) and the other sinks: never the session, the planner or a provider.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from .._log import get_logger
from ..events import Event

__all__ = ["FailureCounter", "NullSink", "Sink"]

log = get_logger()


@runtime_checkable
class Sink(Protocol):
    """A telemetry sink: a bus handler that also counts its failures and can be closed.

    ``bus.subscribe(sink)`` is all it takes. Calling the sink with an event must never raise
    because of the sink: a failure is logged (``ecoasync.sink_failed``) and counted in
    :attr:`failures`. ``__call__`` may return an awaitable (the bus awaits it); ``aclose()``
    flushes and releases what the sink holds.
    """

    @property
    def failures(self) -> int:
        """How many times the sink failed (each failure was logged)."""
        ...

    def __call__(self, event: Event, /) -> Awaitable[None] | None: ...

    async def aclose(self) -> None: ...


class FailureCounter:
    """A thread-safe failure count and the one place sinks report their failures from."""

    __slots__ = ("_count", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def record(self, sink: object, exc: BaseException, **context: object) -> int:
        """Count a failure of ``sink`` and log it; never raises (even if logging fails)."""
        with self._lock:
            self._count += 1
            count = self._count
        # a broken logger must not break the workload either: the count still tells
        with contextlib.suppress(Exception):
            log.error(
                "ecoasync.sink_failed",
                sink=type(sink).__name__,
                failures=count,
                error=repr(exc),
                **context,
            )
        return count


class NullSink:
    """A sink that drops every event (it counts them in :attr:`events`)."""

    def __init__(self) -> None:
        self.failures = 0
        self.events = 0

    def __call__(self, event: Event, /) -> None:
        self.events += 1

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"NullSink(events={self.events})"
