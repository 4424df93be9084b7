"""Planning a session on entry: its forecast (the parent's, from memory, or awaited), then the
plan: run now, wait for the slot the ledger grants, the queued job's own plan, or, with
routes, where and when chosen together.

:class:`SessionPlanning` is the session manager's planning half; the manager
(:mod:`ecoasync._session`) holds the state it reads and drives entry and exit.

Layer: session. Imports values, decisions (the planner, the calibration's reach), the
sourcing and claims helpers and the routes (``_routed``, lazily); never the manager.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio

from ._calibrate import LOOKBACK, MAX_SHIFT
from ._claims import claim_slot, ledger_of
from ._planner import Assessment, Plan, assess, run_now_plan
from ._provider import ForecastBy, ForecastNowait, HistoryNowait, HistoryProvider
from ._sourcing import (
    default_provider,
    fetch_history,
    fetch_later,
    fetches_later,
    forecast_end,
    provider_name,
    reads_history,
    within,
)

if TYPE_CHECKING:
    from ._context import Accounting
    from ._forecast import Forecast
    from ._job import PlannedJob
    from ._ledger import Claim, Ledger
    from ._provider import ForecastProvider
    from ._routed import RoutedPlan

__all__ = ["SessionPlanning", "Spawn"]

_RNG = random.Random()

Spawn: TypeAlias = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
"""Starts a task nobody awaits (:func:`ecoasync._backend.spawn`, or the sync API's portal)."""


class SessionPlanning:
    """How a session makes its plan: the state the plan reads and leaves (the manager, a
    subclass, sets it up and holds the rest)."""

    __slots__ = ("_acct", "_claim", "_deadline", "_parent", "_planned", "_provider", "_routed")

    _acct: Accounting
    _claim: Claim | None
    _deadline: float | None
    """When the provider's answers are due (``anyio.current_time()``), once one is awaited."""
    _parent: Accounting | None
    _planned: PlannedJob | None
    _provider: ForecastProvider | None
    _routed: RoutedPlan | None

    @property
    def _ledger(self) -> Ledger:
        return ledger_of(self._acct.policy)

    def _plan_nowait(self, submitted: datetime, spawn_fetch: Spawn) -> Plan | Assessment | None:
        """The plan, if making it awaits nothing; the assessment of a job that waits (then
        :meth:`_claimed` claims its slot); else None (then fetch, and :meth:`_plan`).

        It awaits nothing when the forecast is the parent's or in the provider's memory (and
        so is the history the strategy reads), or when the session has no delay budget: then
        it runs now, and its forecast is fetched while the body runs (``spawn_fetch`` starts
        that; see :func:`~ecoasync._sourcing.fetches_later`).
        """
        acct = self._acct
        policy = acct.policy
        if policy.routes is not None:  # every route's forecast, fetched at once
            return None
        parent = self._parent
        provider = self._provider or default_provider()
        if (
            parent is not None
            and parent.forecast is not None
            and self._provider in (None, parent.policy.provider)
        ):
            forecast = parent.forecast  # a nested session reuses its parent's
        else:
            end = forecast_end(policy, submitted)
            try:
                found = (
                    provider.forecast_nowait(submitted, end)
                    if isinstance(provider, ForecastNowait)
                    else None
                )
            except Exception:
                return None  # asked again with I/O, which says why if it fails
            if found is None:
                if not fetches_later(policy):
                    return None
                spawn_fetch(partial(fetch_later, acct, provider, submitted, end))
                zone = getattr(provider, "zone", None)
                return replace(
                    run_now_plan(
                        submitted,
                        policy,
                        decision="no-delay-budget",
                        provider=provider_name(provider),
                    ),
                    zone=zone if isinstance(zone, str) else None,
                )
            forecast = found
        if self._planned is not None:
            return self._given(forecast)
        history = None
        if reads_history(policy) and forecast and isinstance(provider, HistoryProvider):
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

    def _forecast_source(self, submitted: datetime) -> Awaitable[Forecast]:
        """The provider's answer to await (bounded by the policy's ``forecast_timeout``), or
        every route's."""
        policy = self._acct.policy
        if policy.routes is not None:  # where and when, chosen together
            return self._route(submitted)
        provider = self._provider or default_provider()
        end = forecast_end(policy, submitted)
        # one deadline for the whole entry: the history the planner reads gets what is left
        self._deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
        if isinstance(provider, ForecastBy):
            return provider.forecast_by(submitted, end, self._deadline)
        return within(provider.forecast, submitted, end, deadline=self._deadline)

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
            history=(lambda provider: fetch_history(provider, submitted, policy, deadline))
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
            plan_, self._claim = await self._routed.state.enter(
                acct, self._routed, by=self._entry_deadline()
            )
            return plan_
        if self._planned is not None:
            return self._given(forecast)
        history = None
        if forecast and reads_history(acct.policy):  # the calibrated strategy
            provider = self._provider or default_provider()
            history = await fetch_history(provider, submitted, acct.policy, self._deadline)
        planned = self._plan_from(submitted, forecast, history)
        return planned if isinstance(planned, Plan) else await self._claimed(planned)

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

    def _entry_deadline(self) -> float:
        """Until when entering may still take (``anyio.current_time()``): the deadline the
        forecast set, or ``forecast_timeout`` from now when the forecast was in memory."""
        if self._deadline is None:
            timeout = self._acct.policy.forecast_timeout.total_seconds()
            self._deadline = anyio.current_time() + timeout
        return self._deadline

    async def _claimed(self, assessment: Assessment) -> Plan:
        """The plan at the start the ledger grants: it spreads the jobs planned together over
        the starts each would accept. A ledger that fails costs the spreading, never the
        session."""
        acct = self._acct
        claim = await claim_slot(
            self._ledger,
            acct.session_id,
            assessment,
            by=self._entry_deadline(),
            who={"session": acct.name},
        )
        if claim is None:
            return assessment.plan(rng=_RNG)
        self._claim = claim
        return assessment.plan(claim.start, rng=_RNG)
