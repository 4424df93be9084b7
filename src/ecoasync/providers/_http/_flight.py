"""The shared-request layer: calls for one key while one is in flight share it.

Layer: HTTP core; imports the backend seam only.

Flights belong to an event loop (:func:`~ecoasync._backend.current_loop`): a task on another
loop, in another thread, starts its own instead of waiting on a request whose waiters would
be woken from the wrong thread. A flight carries the deadline of the caller that led it
(callers with no earlier deadline wait on it without a timer of their own), and ends with a
value, an error (every waiter gets it at once, whatever went wrong), or abandoned (its leader
was cancelled: waiters try again).

Waiters park in gates of :data:`RELEASE_BATCH`; a flight that ends wakes its own gates, one
per event-loop turn, so ten thousand waiters never stall the loop, and one request's herd
never holds back another request's answer.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

import anyio
import anyio.lowlevel

from ..._backend import Gate, current_loop

__all__ = ["RELEASE_BATCH", "Flight", "Flights"]

T = TypeVar("T")

RELEASE_BATCH: Final = 8
"""Waiters of one flight woken per event-loop turn."""


class Flight(Generic[T]):
    """One call in flight, shared by everyone who asks for the same key meanwhile."""

    __slots__ = ("abandoned", "deadline", "error", "gates", "joined", "value")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        """When the call gives up (``anyio.current_time()``; ``inf``: never, by itself)."""
        self.gates: list[Gate] = []
        self.joined = 0
        self.value: T | None = None
        self.error: Exception | None = None
        self.abandoned = False

    def join(self) -> Awaitable[None]:
        """What a waiter awaits until the flight ends (cancellable)."""
        if self.joined % RELEASE_BATCH == 0:
            self.gates.append(Gate())
        self.joined += 1
        return self.gates[-1].park()

    async def release(self) -> None:
        """Wake the waiters, a gate per event-loop turn (shielded: nobody is left behind)."""
        gates = self.gates
        try:
            with anyio.CancelScope(shield=True):
                for i, gate in enumerate(gates):
                    if i:
                        await anyio.lowlevel.checkpoint()
                    gate.open()
        finally:
            self.release_all()

    def release_all(self) -> None:
        """Wake every waiter now (idempotent)."""
        for gate in self.gates:
            gate.open()


class Flights(Generic[T]):
    """The flights of one owner (an HTTP core), per event loop."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[object, dict[Hashable, Flight[T]]] = (
            weakref.WeakKeyDictionary()
        )

    def here(self) -> dict[Hashable, Flight[T]]:
        """The flights of the running event loop, by key."""
        loop = current_loop()
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops[loop] = {}
        return flights

    async def lead(
        self,
        flights: dict[Hashable, Flight[T]],
        key: Hashable,
        call: Callable[[], Awaitable[T]],
        *,
        deadline: float | None,
        timed_out: Callable[[float], Exception],
    ) -> T:
        """``call()``'s value, shared with those who :meth:`Flight.join` meanwhile.

        Past ``deadline`` the call is cancelled and ``timed_out(seconds it had)`` is raised.
        """
        flight: Flight[T] = Flight(math.inf if deadline is None else deadline)
        flights[key] = flight
        try:
            if deadline is None:
                value = await call()
            else:
                began = anyio.current_time()
                with anyio.CancelScope(deadline=deadline) as scope:
                    value = await call()
                if scope.cancelled_caught:
                    raise timed_out(max(deadline - began, 0.0))
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            if flights.get(key) is flight:
                del flights[key]
            if flight.error is not None or flight.abandoned:
                flight.release_all()
        flight.value = value
        await flight.release()
        return value
