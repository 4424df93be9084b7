"""``CompositeSink``: several sinks behind one subscription.

Layer: edges (sinks consume the bus's events); imports values only (the events, the logger, the
checks) and the other sinks: never the session, the planner or a provider.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..events import Event
from ._base import FailureCounter

__all__ = ["CompositeSink"]


class CompositeSink:
    """Deliver each event to several sinks (or plain handlers), in order.

    One member's failure is logged (``ecoasync.sink_failed``) and counted in this sink's
    :attr:`failures`, and the others still get the event. If any member is asynchronous,
    calling the composite returns an awaitable that the bus awaits (each async member gets
    at most ``member_timeout`` seconds); otherwise it returns ``None``.
    :meth:`aclose` closes every member that has an ``aclose``.
    """

    def __init__(self, *sinks: Callable[[Event], Any], member_timeout: float = 5.0) -> None:
        for sink in sinks:
            if not callable(sink):
                raise TypeError(
                    f"CompositeSink members must be callables taking an event, got {sink!r}"
                )
        if not (isinstance(member_timeout, int | float) and member_timeout > 0):
            raise ValueError(
                f"member_timeout must be a number of seconds > 0, got {member_timeout!r}"
            )
        self.sinks = tuple(sinks)
        self.member_timeout = float(member_timeout)
        self._failures = FailureCounter()

    @property
    def failures(self) -> int:
        """This composite's own count of member failures (members keep their own counts too)."""
        return self._failures.count

    def __call__(self, event: Event, /) -> Awaitable[None] | None:
        pending: list[tuple[object, Awaitable[object]]] = []
        for sink in self.sinks:
            try:
                result = sink(event)
            except Exception as exc:
                self._failures.record(self, exc, member=_name(sink), event_kind=event.kind)
                continue
            if inspect.isawaitable(result):
                pending.append((sink, result))
        if pending:
            return self._finish(pending, event)
        return None

    async def _finish(self, pending: list[tuple[object, Awaitable[object]]], event: Event) -> None:
        for sink, awaitable in pending:
            try:
                with anyio.fail_after(self.member_timeout):
                    await awaitable
            except Exception as exc:
                self._failures.record(self, exc, member=_name(sink), event_kind=event.kind)

    async def aclose(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception as exc:
                self._failures.record(self, exc, member=_name(sink), stage="aclose")

    def __repr__(self) -> str:
        return f"CompositeSink({', '.join(_name(s) for s in self.sinks)})"


def _name(sink: object) -> str:
    return getattr(sink, "__qualname__", None) or type(sink).__name__
