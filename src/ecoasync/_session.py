"""``carbon_session``: forecast → plan → wait → run → record, as an async context manager.

This module holds the session manager's lifecycle: entering (plan, ``Planned``, the wait,
``Started``), in a loop or without one (the sync API), and exiting (the claim given back,
``Completed`` delivered). The parts it drives live beside it: the plan in
:mod:`ecoasync._session_plan`, the forecast and its failures in :mod:`ecoasync._sourcing`,
the ledger's claims in :mod:`ecoasync._claims`, the record in :mod:`ecoasync._session_record`
and the public :class:`~ecoasync.Session` in :mod:`ecoasync._session_view` (re-exported here).

Layer: session. Imports values, decisions, providers, the bus, the accounting (``_context``)
and the session's parts above; the instrumentation once, lazily (the first session turns the
SDK wrappers on); never the sync API or the edges.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel

from ._backend import spawn
from ._bus import EventBus
from ._claims import lease_expires, release_slot, release_slot_nowait
from ._clock import Clock, current_clock
from ._context import Accounting, current, reset_current, set_current
from ._job import PlannedJob
from ._log import get_logger
from ._planner import Assessment, Plan
from ._policy import Policy
from ._session_plan import SessionPlanning, Spawn
from ._session_record import build_record, ending
from ._session_view import Session
from ._sourcing import forecast_failed
from .events import Completed, Planned, Started

if TYPE_CHECKING:
    from ._ledger import Claim
    from ._routed import RoutedPlan

__all__ = ["COMPLETION_TIMEOUT_S", "Session", "Spawn", "carbon_session", "default_bus"]

log = get_logger()

COMPLETION_TIMEOUT_S: Final = 5.0
"""How long a session waits, shielded from cancellation, to deliver its ``Completed`` event."""

_DEFAULT_BUS = EventBus()
_DEFAULT_POLICY = Policy()
_NO_PARENT: Final = object()


def default_bus() -> EventBus:
    """The bus sessions use when none is given (nested sessions use their parent's)."""
    return _DEFAULT_BUS


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


class _SessionManager(SessionPlanning):
    """The async context manager :func:`carbon_session` returns.

    Entering can block: it fetches the forecast and waits for the planned slot. Exiting
    emits ``Completed`` (shielded, bounded by ``COMPLETION_TIMEOUT_S``) and never swallows the
    body's exception.
    """

    __slots__ = ("_clock", "_session", "_started", "_submitted", "_token")  # (and the plan's)

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
        self._routed: RoutedPlan | None = None
        if parent_acct is not None and policy.routes is None:
            self._acct.route = parent_acct.route  # calls run where the parent's do
        self._planned: PlannedJob | None = None  # a queued job's plan (see carbon_session)

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
                    plan_ = await forecast_failed(
                        acct, submitted, exc, provider=self._provider, planned=self._planned
                    )
                else:
                    plan_ = await self._plan(submitted, forecast)
            elif isinstance(planned, Assessment):
                plan_ = await self._claimed(planned)
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

    def _end(
        self, submitted: datetime, started: datetime | None, exc: BaseException | None
    ) -> bool:
        """Complete the session and give ``Completed`` to the sync handlers, without awaiting
        (a coroutine less for every session). Returns whether async handlers still wait for
        events: then await :meth:`_deliver`."""
        acct = self._acct
        status, error = ending(acct, exc)
        claim = self._claim  # the job no longer holds its slot
        if claim is not None and release_slot_nowait(self._ledger, claim):
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
            session._make_record = partial(
                build_record, acct, self._planned, submitted, started, ended, status, error
            )
            return claim is not None
        record = build_record(acct, self._planned, submitted, started, ended, status, error)
        session._record = record
        completed = Completed(**self._acct.event_fields(ended), status=status, record=record)
        # sync handlers (the sinks) have it now, before any async handler is awaited
        bus.emit_nowait(completed)
        return claim is not None or bus.has_pending()

    async def _deliver(self, exc: BaseException | None) -> None:
        """Release the claim of a ledger out of process while the events async handlers wait
        for are delivered, ``Completed`` last: both shielded, within one bound
        (``COMPLETION_TIMEOUT_S``), so exit never takes longer than that."""
        acct = self._acct
        claim, self._claim = self._claim, None
        delivered = released = False
        deadline = anyio.current_time() + COMPLETION_TIMEOUT_S
        who = {"session": acct.name}

        async def give_back(claim: Claim) -> None:
            nonlocal released
            await release_slot(self._ledger, claim, by=deadline, who=who)  # (logs a failure)
            released = True

        with anyio.CancelScope(deadline=deadline, shield=True):
            if claim is None:
                await acct.bus.flush()
                delivered = True
            else:  # the job no longer holds its slot; if that fails, its lease ends it
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(give_back, claim)
                    await acct.bus.flush()
                    delivered = True
        if claim is not None and not released:
            lease_expires(self._ledger, "no answer within the exit bound", who)
        if not delivered:
            log.error(
                "ecoasync.completed_not_delivered",
                session=acct.name,
                session_id=acct.session_id,
                timeout_s=COMPLETION_TIMEOUT_S,
            )
        if exc is None:
            # a deadline that passed while Completed was delivered is raised now, not lost
            await anyio.lowlevel.checkpoint_if_cancelled()


_ensure_instrumented: Callable[[], None] | None = None


def _auto_instrument() -> None:
    """Wrap the LLM SDKs unless already done or turned off (a flag check once on)."""
    global _ensure_instrumented
    if _ensure_instrumented is None:
        from ._instrument import ensure_instrumented

        _ensure_instrumented = ensure_instrumented
    _ensure_instrumented()


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
