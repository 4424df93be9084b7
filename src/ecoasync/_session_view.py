"""The public :class:`~ecoasync.Session`: what ``async with carbon_session(...) as session``
gives the body. A view over the session's accounting (its plan, spending, budget and route),
and the ways in for calls an instrumented SDK does not see (``record_call``, ``routed``).

Layer: session. Imports values, the bus and the accounting (``_context``); the routes
(``_routed``) and the instrumentation's ``record_call`` lazily, when the body asks for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from ._context import Accounting, tagged

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._forecast import Forecast
    from ._planner import Plan
    from ._policy import Policy
    from ._records import CallRecord, SessionRecord
    from ._routes import Route
    from ._routing import RouteChoice

__all__ = ["Session"]

T = TypeVar("T")


class Session:
    """A running carbon-aware session, as given by ``async with carbon_session(...) as session``.

    ``plan`` says when and why the body started; ``record`` is the telemetry record once the
    session has completed. ``spent_g`` is what its calls (and nested sessions') have emitted
    so far, in gCO2eq.
    """

    __slots__ = ("_acct", "_make_record", "_record")

    def __init__(self, acct: Accounting) -> None:
        self._acct = acct
        self._record: SessionRecord | None = None
        self._make_record: Callable[[], SessionRecord] | None = None

    @property
    def record(self) -> SessionRecord | None:
        """The telemetry record, once the session has completed (None before)."""
        if self._record is None and self._make_record is not None:
            self._record = self._make_record()  # built on first use when nobody listened
            self._make_record = None
        return self._record

    @property
    def id(self) -> str:
        return self._acct.session_id

    @property
    def name(self) -> str:
        return self._acct.name

    @property
    def tags(self) -> tuple[str, ...]:
        return self._acct.tags

    @property
    def policy(self) -> Policy:
        return self._acct.policy

    @property
    def bus(self) -> EventBus:
        return self._acct.bus

    @property
    def plan(self) -> Plan:
        plan = self._acct.plan
        if plan is None:
            raise RuntimeError(
                "the session has no plan yet; read session.plan inside the 'async with' block"
            )
        return plan

    @property
    def forecast(self) -> Forecast | None:
        return self._acct.forecast

    @property
    def spent_g(self) -> float:
        return self._acct.emitted_g

    @property
    def budget_g(self) -> float | None:
        return self._acct.policy.budget_g

    @property
    def remaining_g(self) -> float | None:
        budget = self._acct.policy.budget_g
        return None if budget is None else max(budget - self._acct.emitted_g, 0.0)

    @property
    def budget_tripped(self) -> bool:
        return self._acct.tripped

    @property
    def intensity(self) -> float | None:
        """The grid intensity now (gCO2eq/kWh): the slot's actual if known, else its forecast."""
        return self._acct.intensity_now()[0]

    async def record_call(
        self,
        *,
        provider: str,
        model: str,
        output_tokens: int,
        latency_s: float,
        input_tokens: int | None = None,
        requested_model: str | None = None,
        stream: bool = False,
    ) -> CallRecord | None:
        """Charge a call made without an instrumented SDK (self-hosted, another client) to
        this session, like an instrumented call: see :func:`ecoasync.record_call`.

        Raises ``RuntimeError`` once the session has completed: its record and its
        ``Completed`` event are final, so a call charged later would be in neither.
        """
        from ._instrument import record_call

        if self._record is not None or self._make_record is not None:
            raise RuntimeError(
                f"session {self.name!r} has completed: record_call() must run inside its "
                "'async with' block (its record and its Completed event are final; record the "
                "call in a new session, or in the enclosing one)"
            )
        return await record_call(
            provider=provider,
            model=model,
            output_tokens=output_tokens,
            latency_s=latency_s,
            input_tokens=input_tokens,
            requested_model=requested_model,
            stream=stream,
            session=self._acct,
        )

    @property
    def route(self) -> Route | None:
        """Where the work runs in a session with ``Policy(routes=...)`` (its ``target`` is
        yours to call), after any failover; None without routes."""
        state = self._acct.route
        return state.current if state is not None else None

    @property
    def routing(self) -> RouteChoice | None:
        """Why the session runs where it does: every candidate route with its figures."""
        state = self._acct.route
        return state.choice if state is not None else None

    async def routed(self, call: Callable[[Route], Awaitable[T]]) -> T:
        """``await call(session.route)``, falling over to the next-best allowed route when the
        route fails (a timeout, a connection error, HTTP 5xx); see ``docs/guides/routing.md``."""
        from ._routed import run_routed

        return await run_routed(self._acct, call)

    def routed_sync(self, call: Callable[[Route], T]) -> T:
        """The sync twin of :meth:`routed`, for the body of ``carbon_session_sync``."""
        from ._routed import run_routed_sync

        return run_routed_sync(self._acct, call)

    def tagged(self, *tags: str) -> AbstractContextManager[tuple[str, ...]]:
        """Tag the calls made inside the block, e.g. by agent: ``with session.tagged("critic"):``."""
        return tagged(*tags)

    def __repr__(self) -> str:
        plan = self._acct.plan
        when = f" start={plan.start:%Y-%m-%dT%H:%M}Z" if plan else ""
        return f"<Session {self.name!r} id={self.id[:8]}{when} spent={self.spent_g:.4g}g>"
