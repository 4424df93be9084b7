"""A session's routes: planning the pair (route, start), where the session is charged, and
falling over to the next-best route at call time. Used by ``carbon_session`` when its policy
has ``routes``.

Every route's forecast (and, for the calibrated strategy, history) is fetched under one
deadline, the session's for its whole entry. The chosen route's start is claimed in the
session's ledger (``Policy.ledger``, by default :func:`~ecoasync.default_ledger`) under the
route's zone, as a session without routes claims under its forecast's, and released with
the session's own claim when it ends.

Layer: session. Imports values, the decisions (the planner, :mod:`ecoasync._routing`),
:mod:`ecoasync._choose`'s concurrent fetch and :mod:`ecoasync._claims`' ledger claims.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio

from ._choose import both, gather_forecasts, load_grids
from ._claims import claim_slot
from ._forecast import Forecast, Slot
from ._ledger import Claim, Ledger, SlotLedger
from ._log import get_logger
from ._planner import Assessment, Plan, assess
from ._provider import ForecastProvider
from ._route import Route
from ._routes import Routes, filter_routes
from ._routing import (
    MIX_SIGNAL,
    Candidate,
    RouteChoice,
    decide,
    fails_over,
    make_candidate,
    static_intensity,
    valid_until_of,
)
from .events import Routed

if TYPE_CHECKING:
    import random

    from ._context import Accounting
    from ._policy import Policy

__all__ = [
    "RouteState",
    "RoutedPlan",
    "failed_routes",
    "plan_routes",
    "run_routed",
    "run_routed_sync",
]

T = TypeVar("T")

History = Callable[[ForecastProvider], Awaitable[Forecast | None]]
"""How a session fetches a provider's recent actuals (bounded by its entry's deadline)."""

log = get_logger()


class RouteState:
    """Where a routed session runs: the choice, the current route, the routes it fell over from,
    and each candidate's forecast (to charge calls at the current route's grid). It lives on the
    session's accounting (``acct.route``)."""

    __slots__ = ("choice", "current", "failed", "forecasts", "routes", "statics")

    def __init__(
        self,
        routes: Routes,
        choice: RouteChoice,
        forecasts: dict[str, Forecast],
        statics: dict[str, float],
    ) -> None:
        self.routes = routes
        self.choice = choice
        self.current = choice.route
        self.failed: list[str] = []
        self.forecasts = forecasts
        self.statics = statics

    def next_route(self) -> Route | None:
        """The next-best considered route that has not failed (the choice's ranking)."""
        gone = {self.current.name, *self.failed}
        for candidate in self.choice.ranked:
            if candidate.route not in gone:
                return self.routes.named(candidate.route)
        return None

    def _charge_at(self, acct: Accounting, route: Route) -> None:
        """Calls from now on are charged at ``route``'s grid: its forecast (actuals where
        known), or for a route without a provider its annual average (source ``mix``)."""
        if route.name in self.statics:
            acct.forecast = None
            acct.fallback_intensity = (self.statics[route.name], "mix")
        else:
            acct.forecast = self.forecasts[route.name]
            acct.fallback_intensity = None

    async def enter(
        self, acct: Accounting, routed: RoutedPlan, *, by: float
    ) -> tuple[Plan, Claim | None]:
        """Make the choice the session's: where it is charged, its baseline (at once, at home),
        its slot claimed in ``routed.ledger`` under the route's zone (if it waits), its place
        in the routes' share count; emit ``Routed``. Returns the plan and the claim, which the
        session releases when it ends (as its own). A ledger that fails costs the spreading,
        never the session, nor more than the entry's deadline ``by``."""
        acct.route = self
        route = self.current
        self._charge_at(acct, route)
        acct.baseline_intensity, acct.baseline_source = routed.baseline  # type: ignore[assignment]
        self.routes.hold(route.name)
        if acct.bus.listens(Routed):
            await acct.bus.emit(
                Routed(
                    **acct.event_fields(self.choice.at),
                    route=route.name,
                    zone=route.zone,
                    reason="planned",
                    choice=self.choice,
                )
            )
        # claimed last: nothing is awaited between the claim and the session holding it
        p, claim, assessment = routed.plan, None, routed.assessment
        if assessment is not None and route.zone is not None:
            claim = await claim_slot(
                routed.ledger,
                acct.session_id,
                assessment,
                by=by,
                who={"session": acct.name},
                zone=route.zone,
            )
            if claim is not None and claim.start != p.slot_start:  # another job took that slot
                p = assessment.plan(claim.start, rng=routed.rng)
        return p, claim

    def leave(self) -> None:
        """The session is over: give back its share (its claim is the session's to release)."""
        self.routes.release(self.current.name)

    def switch(self, acct: Accounting, exc: BaseException) -> tuple[Route, Routed] | None:
        """Fall over from the current route after ``exc``: the next-best allowed route, charged
        at its grid from now on, and the event that says so; None if no route is left."""
        nxt = self.next_route()
        if nxt is None:
            return None
        old = self.current
        self.failed.append(old.name)
        self.routes.release(old.name)
        self.routes.hold(nxt.name)
        self.current = nxt
        self._charge_at(acct, nxt)
        if acct.plan is not None:
            acct.plan = plan_with_zone(acct.plan, nxt, self.forecasts.get(nxt.name))
        log.warning(
            "ecoasync.route_failover",
            session=acct.name,
            failed=old.name,
            route=nxt.name,
            error=f"{type(exc).__name__}: {exc}"[:200],
        )
        event = Routed(
            **acct.event_fields(acct.clock.now()),
            route=nxt.name,
            zone=nxt.zone,
            reason="failover",
            choice=self.choice,
            failed=old.name,
            error=f"{type(exc).__name__}: {exc}"[:200],
        )
        return nxt, event


def _routes_of(acct: Accounting | None) -> RouteState:
    if acct is None or acct.route is None:
        raise RuntimeError(
            "this session has no routes; give it Policy(routes=[...]) to call routed()"
        )
    return acct.route


async def run_routed(acct: Accounting, call: Callable[[Route], Awaitable[T]]) -> T:
    """``await call(route)`` on the session's route; on a route failure (:func:`fails_over`),
    again on the next-best allowed route, until one answers or none is left (then the last
    error propagates). A failed attempt is not charged (the SDK raised: nothing was used that
    it reported); its time counts as a latency sample of the route that failed."""
    state = _routes_of(acct)
    while True:
        route = state.current
        began = time.perf_counter()
        try:
            return await call(route)
        except Exception as exc:
            if not fails_over(exc):
                raise
            route.observe_latency(time.perf_counter() - began)
            switched = state.switch(acct, exc)
            if switched is None:
                raise
            await acct.bus.emit(switched[1])


def run_routed_sync(acct: Accounting, call: Callable[[Route], T]) -> T:
    """:func:`run_routed` for sync code (any thread)."""
    state = _routes_of(acct)
    while True:
        route = state.current
        began = time.perf_counter()
        try:
            return call(route)
        except Exception as exc:
            if not fails_over(exc):
                raise
            route.observe_latency(time.perf_counter() - began)
            switched = state.switch(acct, exc)
            if switched is None:
                raise
            acct.emit_sync(acct.bus, switched[1])


class RoutedPlan(NamedTuple):
    """The pair chosen: the plan (its start as the ledger would grant it now), the routes'
    state, the baseline, and for a waiting plan the assessment its start is claimed from in
    ``ledger`` (with ``rng`` for its jitter)."""

    plan: Plan
    state: RouteState
    baseline: tuple[float | None, str]
    assessment: Assessment | None
    ledger: Ledger
    rng: random.Random


def _constant(route: Route, value: float, start: datetime, end: datetime) -> Forecast:
    return Forecast(
        [Slot(start, end, value)], signal=MIX_SIGNAL, provider="ecologits-mix", zone=route.zone
    )


def intensity_in(forecast: Forecast | None, when: datetime) -> tuple[float | None, str]:
    """The intensity at ``when`` as a session charges it: the actual, else the forecast."""
    if not forecast:
        return None, "none"
    slot = forecast.at(when)
    if slot is None:
        slot = forecast[0] if forecast[0].start > when else forecast[-1]
    return (slot.actual, "actual") if slot.actual is not None else (slot.forecast, "forecast")


async def plan_routes(
    routes: Routes,
    submitted: datetime,
    policy: Policy,
    *,
    end: datetime,
    rng: random.Random,
    history: History | None,
    deadline: float,
    ledger: Ledger,
) -> RoutedPlan:
    """Plan the pair (route, start) for a session: every allowed route's forecast (and
    ``history``, for the calibrated strategy) at once, all by ``deadline``
    (``anyio.current_time()``: the session's for its whole entry); :func:`~ecoasync.assess` on
    each (same calibration and threshold as a session without routes), then :func:`decide` on
    the planned intensities.

    A waiting plan's start is the one ``ledger`` would grant under the route's zone: the
    in-process :class:`SlotLedger` is asked (:meth:`~SlotLedger.choose`), so routes loaded
    with waiting jobs look dirtier; a ledger out of process is asked only by the claim
    (:meth:`RouteState.enter`), so the choice scores each route's best start.

    Raises :class:`ForecastUnavailable` when no route could be planned.
    """
    allowed, dropped = filter_routes(routes.routes, routes.residency)
    bound_s = policy.forecast_timeout.total_seconds()
    zones = [z for r in allowed for z in ((r.zone,) if r.zone else r.among)]
    forecasts, grids = await both(
        gather_forecasts(allowed, submitted, end, deadline=deadline, bound_s=bound_s),
        load_grids(zones),
    )
    histories: dict[str, Forecast | None] = {}
    if history is not None:  # the calibrated strategy: each zone's recent actuals, at once
        fetch = history

        async def one(name: str, provider: ForecastProvider) -> None:
            histories[name] = await fetch(provider)

        async with anyio.create_task_group() as tg:
            for route in allowed:
                if route.provider is not None and isinstance(forecasts.get(route.name), Forecast):
                    tg.start_soon(one, route.name, route.provider)
    in_process = ledger if type(ledger) is SlotLedger else None
    assessments: dict[str, Assessment] = {}
    plans: dict[str, Plan] = {}
    kept: dict[str, Forecast] = {}
    statics: dict[str, float] = {}
    candidates = []
    for route in allowed:
        answer = forecasts.get(route.name)
        figures: dict[str, Any] = {}
        if isinstance(answer, str):
            figures["skipped"] = answer
        else:
            if isinstance(answer, Forecast):
                forecast = answer
                figures["source"] = "forecast"
            else:
                value, figures["source"] = static_intensity(route, grids)
                statics[route.name] = value
                forecast = _constant(route, value, submitted, end)
            a = assess(forecast, submitted, policy, history=histories.get(route.name))
            start = None
            if a.decision == "wait" and route.zone is not None:
                assessments[route.name] = a
                if in_process is not None:
                    start = in_process.choose(route.zone, a.choices, now=submitted).start
            p = plans[route.name] = a.plan(start, rng=rng)
            kept[route.name] = forecast
            figures.update(
                intensity=p.planned_intensity,
                start=p.start,
                decision=p.decision,
                signal=str(forecast.signal),
                valid_until=valid_until_of(forecast, p.slot_start),
            )
        candidates.append(make_candidate(route, grids, routes.latency_percentile, **figures))
    candidates += [
        Candidate(route=r.name, zone=r.zone, skipped=f"residency: {why}") for r, why in dropped
    ]
    scored, winner, reason = decide(
        candidates,
        routes.strategy,
        home=routes.home,
        latency_weight=routes.latency_weight,
        max_latency=routes.max_latency,
        max_share=routes.max_share,
        loads=routes.loads(),
    )
    chosen = plans[winner.route]
    home_plan = plans.get(routes.home)
    if routes.home in statics:
        baseline: tuple[float | None, str] = (statics[routes.home], "mix")
    elif home_plan is not None:
        baseline = intensity_in(kept[routes.home], submitted)
    else:
        baseline = (static_intensity(routes.home_route, grids)[0], "mix")
    choice = RouteChoice(
        route=routes.named(winner.route),
        strategy=routes.strategy,
        at=submitted,
        start=chosen.start,
        intensity=winner.intensity,
        signal=winner.signal,
        home=routes.home,
        home_intensity=home_plan.now_intensity if home_plan is not None else baseline[0],
        valid_until=winner.valid_until,
        candidates=scored,
        reason=reason,
    )
    state = RouteState(routes, choice, kept, statics)
    return RoutedPlan(chosen, state, baseline, assessments.get(winner.route), ledger, rng)


async def failed_routes(
    acct: Accounting, routes: Routes, submitted: datetime, exc: Exception
) -> RouteState:
    """No route could be planned (every provider failed): the session runs at home, at once,
    charged at home's annual average (source ``mix``); the choice says why."""
    home = routes.home_route
    grids = await load_grids((home.zone,) if home.zone else home.among)
    value, source = static_intensity(home, grids)
    acct.fallback_intensity = (value, "mix")
    candidate = Candidate(
        route=home.name, zone=home.zone, intensity=value, start=submitted, source=source
    )
    choice = RouteChoice(
        route=home,
        strategy=routes.strategy,
        at=submitted,
        start=submitted,
        intensity=value,
        signal=str(MIX_SIGNAL),
        home=home.name,
        home_intensity=value,
        valid_until=None,
        candidates=(candidate,),
        reason=f"{home.name!r} (home), at once: no route could be planned ({exc})"[:500],
    )
    return RouteState(routes, choice, {}, {home.name: value})


def plan_with_zone(p: Plan, route: Route, forecast: Forecast | None) -> Plan:
    """``p`` said of ``route`` (after a failover): its zone and provider."""
    return dataclasses.replace(
        p, zone=route.zone, provider=forecast.provider if forecast is not None else p.provider
    )
