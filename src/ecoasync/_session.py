"""``carbon_session``: forecast → plan → wait → run → record, as an async context manager.

Layer: session. Imports values, decisions, providers, the bus and the accounting (``_context``);
the instrumentation once, lazily (the first session turns the SDK wrappers on); never the sync
API or the edges.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import anyio
import anyio.lowlevel

from ._backend import is_cancellation, spawn
from ._bus import EventBus
from ._calibrate import LOOKBACK, MAX_SHIFT
from ._clock import Clock, current_clock
from ._context import Accounting, budget_spent, current, reset_current, set_current, tagged
from ._exceptions import CarbonBudgetExceeded, ForecastUnavailable, PolicyError
from ._forecast import Forecast
from ._job import PlannedJob
from ._ledger import Claim, Ledger, SlotLedger, default_ledger
from ._log import get_logger
from ._planner import Assessment, Plan, assess, run_now_plan
from ._policy import Policy
from ._provider import (
    ForecastBy,
    ForecastNowait,
    ForecastProvider,
    HistoryBy,
    HistoryNowait,
    HistoryProvider,
)
from ._records import CallRecord, SessionRecord, Status
from .events import Completed, ForecastFailed, Planned, Started

if TYPE_CHECKING:
    from ._routed import RoutedPlan
    from ._routes import Route
    from ._routing import RouteChoice

__all__ = ["COMPLETION_TIMEOUT_S", "Session", "carbon_session", "default_bus"]

T = TypeVar("T")

log = get_logger()

COMPLETION_TIMEOUT_S: Final = 5.0
"""How long a session waits, shielded from cancellation, to deliver its ``Completed`` event."""

_DEFAULT_BUS = EventBus()
_DEFAULT_POLICY = Policy()
_RNG = random.Random()
_LEDGER = default_ledger()
_LEASE_MARGIN: Final = timedelta(minutes=15)
"""How long a claim outlives the latest the work can start plus its window (a body that runs
longer only lets its slot look emptier sooner)."""
_NO_PARENT: Final = object()

Spawn: TypeAlias = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
"""Starts a task nobody awaits (:func:`ecoasync._backend.spawn`, or the sync API's portal)."""


def default_bus() -> EventBus:
    """The bus sessions use when none is given (nested sessions use their parent's)."""
    return _DEFAULT_BUS


def _default_provider() -> ForecastProvider:
    from .providers import default_provider

    return default_provider()


def _tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise TypeError(
            f"tags must be an iterable of strings, got the string {tags!r}; write tags=[{tags!r}]"
        )
    out = tuple(tags)
    for tag in out:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tags must be non-empty strings, got {tag!r}")
    return out


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


class _SessionManager:
    """The async context manager :func:`carbon_session` returns.

    Entering can block: it fetches the forecast and waits for the planned slot. Exiting
    emits ``Completed`` (shielded, bounded by ``COMPLETION_TIMEOUT_S``) and never swallows the
    body's exception.
    """

    __slots__ = (
        "_acct",
        "_claim",
        "_clock",
        "_deadline",
        "_parent",
        "_planned",
        "_provider",
        "_routed",
        "_session",
        "_started",
        "_submitted",
        "_token",
    )

    def __init__(
        self,
        policy: Policy | None,
        *,
        bus: EventBus | None,
        name: str | None,
        tags: Iterable[str] | None,
        clock: Clock | None,
        parent: object = _NO_PARENT,
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(
                f"policy must be an ecoasync.Policy or None, got {type(policy).__name__}: {policy!r}"
            )
        if bus is not None and not isinstance(bus, EventBus):
            raise TypeError(
                f"bus must be an ecoasync.EventBus or None, got {type(bus).__name__}: {bus!r}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        parent_acct = current() if parent is _NO_PARENT else parent
        assert parent_acct is None or isinstance(parent_acct, Accounting)
        if policy is None:
            # a nested session without its own policy runs at once under its parent's rules
            policy = (
                parent_acct.policy.evolve(max_delay=timedelta(0), routes=None)
                if parent_acct
                else _DEFAULT_POLICY
            )
        session_id = secrets.token_hex(16)
        self._parent = parent_acct
        self._clock = clock or current_clock()
        self._provider = policy.provider
        self._acct = Accounting(
            session_id=session_id,
            name=name or "session",
            tags=_tags(tags),
            policy=policy,
            bus=bus or (parent_acct.bus if parent_acct else _DEFAULT_BUS),
            clock=self._clock,
            parent=parent_acct,
        )
        self._session = Session(self._acct)
        self._token: object | None = None
        self._submitted: datetime | None = None
        self._started: datetime | None = None
        self._claim: Claim | None = None
        self._deadline: float | None = None
        """When the provider's answers are due (``anyio.current_time()``), once one is awaited."""
        self._routed: RoutedPlan | None = None
        if parent_acct is not None and policy.routes is None:
            self._acct.route = parent_acct.route  # calls run where the parent's do
        self._planned: PlannedJob | None = None  # a queued job's plan (see carbon_session)

    @property
    def _ledger(self) -> Ledger:
        ledger = self._acct.policy.ledger
        return _LEDGER if ledger is None else ledger

    def _begin(self) -> datetime:
        if self._submitted is not None:
            raise RuntimeError(
                "this carbon_session() was already entered; call carbon_session(...) again for a new session"
            )
        _auto_instrument()
        submitted = self._submitted = self._clock.now()
        return submitted

    async def __aenter__(self) -> Session:
        submitted = self._begin()
        acct = self._acct
        acct.bind_loop()
        try:
            planned = self._plan_nowait(submitted, spawn)
            if planned is None:
                # the wait for the provider's answer happens in this frame, not one more down:
                # ten thousand sessions waiting on one request keep as little as possible each
                try:
                    # (in memory already when only the history the plan reads is not)
                    forecast = acct.forecast
                    if forecast is None:
                        forecast = await self._forecast_source(submitted)
                except Exception as exc:
                    plan_ = await self._forecast_failed(submitted, exc)
                else:
                    plan_ = await self._plan(submitted, forecast)
            elif isinstance(planned, Assessment):
                plan_ = await self._claimed(submitted, planned)
                planned = None  # (what it assessed is not kept while the session waits)
            else:
                plan_ = planned
            acct.plan = plan_
            if acct.bus.listens(Planned):
                await acct.bus.emit(self._planned_event(submitted))
            if plan_.start > submitted:
                await self._clock.sleep_until(plan_.start)  # (a checkpoint, as the clock says)
            else:  # entering is a checkpoint even with nothing to wait for
                await anyio.lowlevel.checkpoint()
            started = self._clock.now()
            if acct.bus.listens(Started):
                await acct.bus.emit(self._started_event(submitted, started))
        except BaseException as exc:
            if self._end(submitted, None, exc):
                await self._deliver(exc)
            raise
        self._started = started
        self._token = set_current(acct)
        return self._session

    def _enter_nowait(self, spawn_fetch: Spawn) -> Session | None:
        """Enter in this thread, without an event loop, when nothing needs awaiting: the plan
        is made from memory and runs now, and the bus has no async handler. None: nothing was
        done; enter with ``__aenter__`` on a loop (the sync API's portal)."""
        acct = self._acct
        bus = acct.bus
        if bus.needs_await:
            return None
        submitted = self._begin()
        try:
            plan_ = self._plan_nowait(submitted, spawn_fetch)
            if not isinstance(plan_, Plan) or plan_.start > submitted:
                # it awaits its forecast, waits for a slot, or is a queued job a little early
                self._submitted = None  # not entered (nothing claimed): __aenter__ begins again
                return None
            acct.plan = plan_
            if bus.listens(Planned):
                bus.emit_nowait(self._planned_event(submitted))
            started = self._clock.now()
            if bus.listens(Started):
                bus.emit_nowait(self._started_event(submitted, started))
        except BaseException as exc:
            self._end(submitted, None, exc)  # (sync handlers only: nothing left to deliver)
            raise
        self._started = started
        self._token = set_current(acct)
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            reset_current(self._token)
            self._token = None
        assert self._submitted is not None, "__aexit__ without a successful __aenter__"
        if self._end(self._submitted, self._started, exc):
            await self._deliver(exc)

    def _exit_nowait(self, exc: BaseException | None) -> bool:
        """Leave a session entered with :meth:`_enter_nowait`, in the same thread. Returns
        whether async handlers still wait for events: then await :meth:`_deliver` on a loop."""
        if self._token is not None:
            reset_current(self._token)
            self._token = None
        assert self._submitted is not None, "_exit_nowait without a successful _enter_nowait"
        return self._end(self._submitted, self._started, exc)

    def _planned_event(self, submitted: datetime) -> Planned:
        plan_ = self._acct.plan
        assert plan_ is not None
        return Planned(**self._acct.event_fields(submitted), plan=plan_)

    def _started_event(self, submitted: datetime, started: datetime) -> Started:
        intensity, source = self._acct.intensity_at(started)
        job = self._planned  # (a queued job's wait counts from its first submission)
        return Started(
            **self._acct.event_fields(started),
            delay=started - (job.submitted_at if job is not None else submitted),
            intensity=intensity,
            intensity_source=source,
        )

    def _plan_nowait(self, submitted: datetime, spawn_fetch: Spawn) -> Plan | Assessment | None:
        """The plan, if making it awaits nothing; the assessment of a job that waits (then
        :meth:`_claimed` claims its slot); else None (then fetch, and :meth:`_plan`).

        It awaits nothing when the forecast is the parent's or in the provider's memory (and
        so is the history the strategy reads), or when the session has no delay budget: then
        it runs now, and its forecast is fetched while the body runs (``spawn_fetch`` starts
        that; see :func:`_fetches_later`).
        """
        acct = self._acct
        policy = acct.policy
        if policy.routes is not None:  # every route's forecast, fetched at once
            return None
        parent = self._parent
        provider = self._provider or _default_provider()
        if (
            parent is not None
            and parent.forecast is not None
            and self._provider in (None, parent.policy.provider)
        ):
            forecast = parent.forecast  # a nested session reuses its parent's
        else:
            end = self._forecast_end(submitted)
            try:
                found = (
                    provider.forecast_nowait(submitted, end)
                    if isinstance(provider, ForecastNowait)
                    else None
                )
            except Exception:
                return None  # asked again with I/O, which says why if it fails
            if found is None:
                if not _fetches_later(policy):
                    return None
                spawn_fetch(partial(self._fetch_later, provider, submitted, end))
                zone = getattr(provider, "zone", None)
                return replace(
                    run_now_plan(
                        submitted,
                        policy,
                        decision="no-delay-budget",
                        provider=_provider_name(provider),
                    ),
                    zone=zone if isinstance(zone, str) else None,
                )
            forecast = found
        if self._planned is not None:
            return self._given(forecast)
        history = None
        if _reads_history(policy) and forecast and isinstance(provider, HistoryProvider):
            try:
                history = (
                    provider.history_nowait(submitted - LOOKBACK, submitted)
                    if isinstance(provider, HistoryNowait)
                    else None
                )
            except Exception:
                history = None  # asked again by _plan, which logs why
            if history is None:
                acct.forecast = forecast  # only the history is fetched, by _plan
                return None
        return self._plan_from(submitted, forecast, history)

    def _forecast_end(self, submitted: datetime) -> datetime:
        """The end of the forecast a session needs: its delay budget and its window."""
        policy = self._acct.policy
        window = policy.expected_duration or timedelta(hours=1)
        if _reads_history(policy):
            window += MAX_SHIFT  # the calibration reads the forecast a little further
        return submitted + policy.max_delay + window

    def _forecast_source(self, submitted: datetime) -> Awaitable[Forecast]:
        """The provider's answer to await (bounded by the policy's ``forecast_timeout``), or
        every route's."""
        policy = self._acct.policy
        if policy.routes is not None:  # where and when, chosen together
            return self._route(submitted)
        provider = self._provider or _default_provider()
        end = self._forecast_end(submitted)
        # one deadline for the whole entry: the history the planner reads gets what is left
        self._deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
        if isinstance(provider, ForecastBy):
            return provider.forecast_by(submitted, end, self._deadline)
        return _within(provider.forecast, submitted, end, deadline=self._deadline)

    async def _fetch_later(
        self, provider: ForecastProvider, submitted: datetime, end: datetime
    ) -> None:
        """The forecast of a session with no delay budget, fetched while its body runs and
        bounded by ``forecast_timeout``: the calls charged once it is here use it. A failure
        is logged at once, and reported (``ForecastFailed``) before ``Completed``."""
        acct = self._acct
        deadline = anyio.current_time() + acct.policy.forecast_timeout.total_seconds()
        try:
            if isinstance(provider, ForecastBy):
                forecast = await provider.forecast_by(submitted, end, deadline)
            else:
                forecast = await _within(provider.forecast, submitted, end, deadline=deadline)
        except Exception as exc:
            acct.forecast_failed_late(self._failure(self._clock.now(), provider, exc))
            return
        acct.forecast_arrived(forecast, submitted)

    async def _route(self, submitted: datetime) -> Forecast:
        """Plan every route (their forecasts fetched at once) and keep the chosen pair; the
        chosen route's forecast is what the session then reads."""
        from ._routed import plan_routes

        policy = self._acct.policy
        assert policy.routes is not None
        window = policy.expected_duration or timedelta(hours=1)
        calibrating = policy.strategy == "calibrated" and policy.max_delay > timedelta(0)
        # one deadline for the whole entry: every route's forecast and history share it
        deadline = self._deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
        self._routed = routed = await plan_routes(
            policy.routes,
            submitted,
            policy,
            end=submitted
            + policy.max_delay
            + window
            + (MAX_SHIFT if calibrating else timedelta(0)),
            rng=_RNG,
            history=(lambda provider: _history(provider, submitted, policy, deadline))
            if calibrating
            else None,
            deadline=deadline,
            ledger=self._ledger,
        )
        state = routed.state
        return state.forecasts[state.current.name]

    async def _plan(self, submitted: datetime, forecast: Forecast) -> Plan:
        acct = self._acct
        if self._routed is not None:  # the route and its start were chosen together
            plan_, self._claim = await self._routed.state.enter(acct, self._routed)
            return plan_
        if self._planned is not None:
            return self._given(forecast)
        history = None
        if forecast and _reads_history(acct.policy):  # the calibrated strategy
            provider = self._provider or _default_provider()
            history = await _history(provider, submitted, acct.policy, self._deadline)
        planned = self._plan_from(submitted, forecast, history)
        return planned if isinstance(planned, Plan) else await self._claimed(submitted, planned)

    def _plan_from(
        self, submitted: datetime, forecast: Forecast, history: Forecast | None
    ) -> Plan | Assessment:
        """The plan from the forecast (and history) in hand; for a job that waits, its
        assessment, whose start the ledger chooses (:meth:`_claimed`)."""
        acct = self._acct
        policy = acct.policy
        acct.forecast = forecast
        acct.baseline_intensity, acct.baseline_source = acct.intensity_at(submitted)
        if not forecast:
            return run_now_plan(submitted, policy, decision="no-forecast", forecast=forecast)
        assessment = assess(forecast, submitted, policy, history=history)
        if assessment.decision != "wait":  # only jobs that wait for a slot can herd into it
            return assessment.plan(rng=_RNG)
        return assessment

    def _given(self, forecast: Forecast) -> Plan:
        """A queued job's plan, as made when it was enqueued (the queue held the wait; its
        claim, taken then, is released when the session ends)."""
        job = self._planned
        assert job is not None
        acct = self._acct
        acct.forecast = forecast
        acct.baseline_intensity, acct.baseline_source = job.baseline_intensity, job.baseline_source
        return job.as_plan(window=acct.policy.expected_duration or timedelta(minutes=30))

    async def _claimed(self, submitted: datetime, assessment: Assessment) -> Plan:
        """The plan at the start the ledger grants: it spreads the jobs planned together over
        the starts each would accept. A ledger that fails costs the spreading, never the
        session."""
        acct = self._acct
        claim = await claim_slot(
            self._ledger,
            acct.session_id,
            assessment,
            max_delay=acct.policy.max_delay,
            now=submitted,
            who={"session": acct.name},
        )
        if claim is None:
            return assessment.plan(rng=_RNG)
        self._claim = claim
        return assessment.plan(claim.start, rng=_RNG)

    def _failure(self, at: datetime, provider: object, exc: Exception) -> ForecastFailed:
        """Log a forecast that failed, and the event that says so."""
        acct = self._acct
        policy = acct.policy
        name = _provider_name(provider) if provider is not None else "routes"
        if isinstance(exc, TimeoutError):
            error = (
                f"no answer within forecast_timeout={policy.forecast_timeout.total_seconds():g}s"
            )
        elif isinstance(exc, ForecastUnavailable):
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
        zone = getattr(exc, "zone", None) or getattr(provider, "zone", None)
        log.warning(
            "ecoasync.forecast_failed",
            provider=name,
            zone=zone,
            error=error,
            action=policy.on_forecast_error,
            session=acct.name,
        )
        return ForecastFailed(
            **acct.event_fields(at),
            provider=name,
            zone=zone if isinstance(zone, str) else None,
            error=error,
            action=policy.on_forecast_error,
        )

    async def _forecast_failed(self, submitted: datetime, exc: Exception) -> Plan:
        acct = self._acct
        policy = acct.policy
        if policy.routes is not None:  # a constraint is no forecast failure
            from ._routed import failed_routes

            if isinstance(exc, PolicyError):
                raise exc
            acct.route = await failed_routes(acct, policy.routes, submitted, exc)
        provider = self._provider or (None if policy.routes is not None else _default_provider())
        failed = self._failure(submitted, provider, exc)
        await acct.bus.emit(failed)
        name, zone, error = failed.provider, failed.zone, failed.error
        if policy.on_forecast_error == "raise":
            if isinstance(exc, ForecastUnavailable):
                raise exc
            raise ForecastUnavailable(
                f"forecast from {name} failed: {error}", provider=name, zone=zone, cause=error
            ) from exc
        if self._planned is not None:  # the plan stands; only the accounting lacks a forecast
            return self._planned.as_plan(window=policy.expected_duration or timedelta(minutes=30))
        return run_now_plan(
            submitted, policy, decision="forecast-unavailable", forecast_error=error, provider=name
        )

    def _end(
        self, submitted: datetime, started: datetime | None, exc: BaseException | None
    ) -> bool:
        """Complete the session and give ``Completed`` to the sync handlers, without awaiting
        (a coroutine less for every session). Returns whether async handlers still wait for
        events: then await :meth:`_deliver`."""
        acct = self._acct
        status: Status
        error: str | None = None
        if exc is None:
            status = "aborted" if acct.tripped else "completed"
        elif isinstance(exc, KeyboardInterrupt | GeneratorExit) or is_cancellation(exc):
            status = "cancelled"  # (GeneratorExit: an async generator closed early)
        elif isinstance(exc, CarbonBudgetExceeded):
            status, error = "aborted", str(exc)
        else:
            status, error = "failed", f"{type(exc).__qualname__}: {exc}"[:500]
        claim = self._claim
        if claim is not None:  # the job no longer holds its slot
            ledger = self._ledger
            if type(ledger) is SlotLedger:
                ledger.release_nowait(claim)
                claim = self._claim = None  # (a ledger out of process: released by _deliver)
        if self._routed is not None:  # nor its route's slot and share
            self._routed.state.leave()
        acct.end()  # streams still open are charged for what they received; later calls are not
        ended = self._clock.now()
        bus = acct.bus
        if acct.late_failure is not None:  # the forecast fetched while the body ran failed
            bus.emit_nowait(acct.late_failure)
        session = self._session
        if not (bus.listens(Completed) or bus.has_pending()):
            # nobody listens: build the record only if someone reads session.record
            session._make_record = partial(self._record, submitted, started, ended, status, error)
            return claim is not None
        record = self._record(submitted, started, ended, status, error)
        session._record = record
        completed = Completed(**self._acct.event_fields(ended), status=status, record=record)
        # sync handlers (the sinks) have it now, before any async handler is awaited
        bus.emit_nowait(completed)
        return claim is not None or bus.has_pending()

    async def _deliver(self, exc: BaseException | None) -> None:
        """Release the claim of a ledger out of process, and deliver the events async handlers
        wait for, ``Completed`` last (shielded, bounded)."""
        acct = self._acct
        claim, self._claim = self._claim, None
        if claim is not None:  # the job no longer holds its slot; if that fails, its lease ends
            with anyio.move_on_after(COMPLETION_TIMEOUT_S, shield=True):
                await release_slot(self._ledger, claim, who={"session": acct.name})
        with anyio.move_on_after(COMPLETION_TIMEOUT_S, shield=True) as scope:
            await acct.bus.flush()
        if scope.cancelled_caught:
            log.error(
                "ecoasync.completed_not_delivered",
                session=acct.name,
                session_id=acct.session_id,
                timeout_s=COMPLETION_TIMEOUT_S,
            )
        if exc is None:
            # a deadline that passed while Completed was delivered is raised now, not lost
            await anyio.lowlevel.checkpoint_if_cancelled()

    def _record(
        self,
        submitted: datetime,
        started: datetime | None,
        ended: datetime,
        status: Status,
        error: str | None,
    ) -> SessionRecord:
        acct = self._acct
        plan_ = acct.plan
        policy = acct.policy
        run_intensity, run_source = (
            acct.intensity_at(started) if started is not None else (None, "none")
        )
        signal = plan_.signal if plan_ else (acct.forecast.signal if acct.forecast else None)
        job = self._planned
        if job is not None:  # the budget and the wait count from the first submission
            submitted = job.submitted_at
            if signal is None and acct.forecast is not None:
                signal = acct.forecast.signal  # (its plan travels without one)
        return SessionRecord(
            session_id=acct.session_id,
            name=acct.name,
            tags=acct.tags,
            parent_id=acct.parent.session_id if acct.parent else None,
            status=status,
            error=error,
            submitted_at=submitted,
            planned_start=plan_.start if plan_ else submitted,
            started_at=started,
            ended_at=ended,
            delay_s=((started or ended) - submitted).total_seconds(),
            max_delay_s=policy.max_delay.total_seconds(),
            decision=plan_.decision
            if plan_
            else ("forecast-unavailable" if status == "failed" else "not-planned"),
            provider=plan_.provider if plan_ else None,
            zone=plan_.zone if plan_ else None,
            signal=str(signal) if signal else None,
            forecast_error=(plan_.forecast_error if plan_ else None)
            or (acct.late_failure.error if acct.late_failure else None),
            now_intensity=plan_.now_intensity if plan_ else None,
            planned_intensity=plan_.planned_intensity if plan_ else None,
            baseline_intensity=acct.baseline_intensity,
            baseline_intensity_source=acct.baseline_source,
            run_intensity=run_intensity,
            run_intensity_source=run_source,
            calls=acct.calls,
            energy_kwh=acct.energy_kwh,
            energy_kwh_min=acct.energy_kwh_min,
            energy_kwh_max=acct.energy_kwh_max,
            emitted_g=acct.emitted_g,
            baseline_g=acct.baseline_g,
            embodied_g=acct.embodied_g,
            downgrades=acct.downgrades,
            refused_calls=acct.refused,
            budget_g=policy.budget_g,
            budget_tripped=acct.tripped or budget_spent(acct.emitted_g, policy.budget_g),
            unknown_models=tuple(acct.unknown_models or ()),
            models=acct.frozen_models(),
            by_tag=acct.frozen_tags(),
            route=acct.route.current.name if acct.route is not None else None,
            failed_routes=tuple(acct.route.failed) if acct.route is not None else (),
            water_l=acct.water_l,
            job_id=job.job_id if job else None,
            queue=job.queue if job else None,
            queue_wait_s=((started or ended) - job.submitted_at).total_seconds() if job else None,
            late_s=(started - job.start).total_seconds() if job and started else None,
            hops=job.hops if job else 0,
            replanned=job.replanned if job else False,
        )


async def claim_slot(
    ledger: Ledger,
    job_id: str,
    assessment: Assessment,
    *,
    max_delay: timedelta,
    now: datetime,
    who: dict[str, str],
) -> Claim | None:
    """Claim one of a waiting job's choices in ``ledger`` (the in-process :class:`SlotLedger`
    without awaiting), leased for the latest it can start plus its window and a margin. None
    if the ledger fails: that is logged (``ecoasync.ledger_failed``, with ``who``) and costs
    the spreading, never the job. Sessions and the queue adapters claim through this."""
    lease = max_delay + assessment.window + _LEASE_MARGIN
    zone, choices = assessment.ledger_zone, assessment.choices
    try:
        if type(ledger) is SlotLedger:  # in process: nothing to await (a subclass may)
            return ledger.claim_nowait(job_id, zone, choices, lease=lease, now=now)
        return await ledger.claim(job_id, zone, choices, lease=lease, now=now)
    except Exception as exc:
        log.warning(
            "ecoasync.ledger_failed",
            ledger=_provider_name(ledger),
            error=f"{type(exc).__name__}: {exc}"[:300],
            action="plan-without-spreading",
            **who,
        )
        return None


async def release_slot(ledger: Ledger, claim: Claim, *, who: dict[str, str]) -> None:
    """Give ``claim`` back to ``ledger``; a failure is logged, and its lease ends it."""
    try:
        await ledger.release(claim)
    except Exception as exc:
        log.warning(
            "ecoasync.ledger_failed",
            ledger=_provider_name(ledger),
            error=f"{type(exc).__name__}: {exc}"[:300],
            action="lease-expires",
            **who,
        )


_ensure_instrumented: Callable[[], None] | None = None


def _auto_instrument() -> None:
    """Wrap the LLM SDKs unless already done or turned off (a flag check once on)."""
    global _ensure_instrumented
    if _ensure_instrumented is None:
        from ._instrument import ensure_instrumented

        _ensure_instrumented = ensure_instrumented
    _ensure_instrumented()


def _reads_history(policy: Policy) -> bool:
    """Whether plans under ``policy`` read the grid's history (the calibration)."""
    return policy.strategy == "calibrated" and bool(policy.max_delay)


def _fetches_later(policy: Policy) -> bool:
    """Whether a session enters without its forecast when none is in memory.

    With no delay budget there is nothing to wait for: the session runs now, its forecast is
    fetched while the body runs, and calls are charged at the grid's intensity once it is
    here (before that, and if it never comes, at the zone's annual mix, marked ``"mix"``).
    A policy that decides something from the forecast before the body runs still fetches it
    on entry: ``on_forecast_error="raise"``, routes, or downgrades on a dirty grid.
    """
    return (
        not policy.max_delay
        and policy.routes is None
        and policy.on_forecast_error == "run_now"
        and (policy.dirty_threshold is None or not policy.model_fallbacks)
    )


async def _history(
    provider: object, submitted: datetime, policy: Policy, deadline: float | None = None
) -> Forecast | None:
    """The provider's closed slots with actuals over the calibration's look-back, or None.

    Only a :class:`HistoryProvider` is asked, until ``deadline`` (the entry's: what the
    forecast left; None: the forecast came from memory, so ``forecast_timeout`` from now); a
    failure or a timeout falls back to the forecast alone (logged, never raised).
    """
    if not isinstance(provider, HistoryProvider):
        return None
    start = submitted - LOOKBACK
    try:
        history = (
            provider.history_nowait(start, submitted)
            if isinstance(provider, HistoryNowait)
            else None
        )
        if history is None:
            if deadline is None:
                deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
            elif deadline <= anyio.current_time():
                raise TimeoutError("the forecast took all of forecast_timeout")
            if isinstance(provider, HistoryBy):
                history = await provider.history_by(start, submitted, deadline)
            else:
                history = await _within(provider.history, start, submitted, deadline=deadline)
    except Exception as exc:
        log.warning(
            "ecoasync.history_failed",
            provider=_provider_name(provider),
            error=f"{type(exc).__name__}: {exc}"[:300],
            action="forecast-only",
        )
        return None
    return history if isinstance(history, Forecast) else None


async def _within(
    call: Callable[[datetime, datetime], Awaitable[Forecast]],
    start: datetime,
    end: datetime,
    *,
    deadline: float,
) -> Forecast:
    """``call(start, end)``, or ``TimeoutError`` at ``deadline`` (``anyio.current_time()``)."""
    with anyio.CancelScope(deadline=deadline):
        return await call(start, end)
    raise TimeoutError


def _provider_name(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else type(provider).__name__


def carbon_session(
    policy: Policy | None = None,
    *,
    bus: EventBus | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    clock: Clock | None = None,
    planned: PlannedJob | None = None,
) -> _SessionManager:
    """Run the body of ``async with`` in the greenest slot the policy allows, and account for it.

    ``async with carbon_session(policy, bus=bus, name="nightly") as session:`` fetches the
    forecast, plans, emits ``Planned``, waits for the slot (cancellable), emits ``Started``,
    runs the body with the session current (so instrumented LLM calls are charged to it), and
    emits ``Completed`` with the session's record whatever happens: ``completed``,
    ``aborted`` (budget), ``cancelled`` or ``failed`` (the body's exception propagates
    unchanged).

    Args:
        policy: the rules; ``None`` uses ``Policy()`` (no waiting, default provider), or inside
            another session, the parent's rules without waiting.
        bus: where events go; ``None`` uses the parent session's bus, else :func:`default_bus`.
        name: a name for events and reports (default ``"session"``).
        tags: labels for events and reports (e.g. ``["team:search"]``).
        clock: time source; ``None`` uses the context's clock (see ``ecoasync.testing``).
        planned: a queued job's plan (:class:`~ecoasync.PlannedJob`, set by the Celery and
            procrastinate adapters): the queue held the wait, so the session does not plan
            again and waits only for what is left before ``planned.start`` (nothing, once
            the start has come). The job's claim is released in the policy's ledger when the
            session ends; its record keeps the job's id, submission, plan and queue wait.

    Entering blocks for the forecast (not with no delay budget: then it is fetched while the
    body runs) and the wait; exiting blocks at most ``COMPLETION_TIMEOUT_S`` to deliver
    ``Completed``.
    """
    manager = _SessionManager(policy, bus=bus, name=name, tags=tags, clock=clock)
    if planned is not None:
        if not isinstance(planned, PlannedJob):
            raise TypeError(f"planned must be an ecoasync.PlannedJob or None, got {planned!r}")
        if manager._acct.policy.routes is not None:
            raise ValueError(
                "planned= runs a queued job on the plan it was enqueued with; a policy with "
                "routes= plans where as well as when: pass a policy without routes"
            )
        manager._planned = planned
        manager._claim = planned.claim  # released as a session's own claim is
    return manager
