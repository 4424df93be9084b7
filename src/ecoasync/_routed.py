"""A session's routes: planning the pair (route, start), where the session is charged, and
falling over to the next-best route at call time. Used by ``carbon_session`` when its policy
has ``routes``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

import anyio

from ._choose import _both, _grids, gather_forecasts
from ._forecast import Forecast, Slot
from ._ledger import Choice
from ._log import get_logger
from ._planner import Plan, plan
from ._routes import Route, Routes, filter_routes
from ._routing import (
    MIX_SIGNAL,
    Candidate,
    RouteChoice,
    _candidate,
    _valid_until,
    decide,
    fails_over,
    static_intensity,
)
from .events import Routed

if TYPE_CHECKING:
    import random

    from ._context import Accounting
    from ._ledger import Claim, SlotLedger
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

_LEASE_MARGIN: Final = timedelta(minutes=15)
"""How long a route's claim outlives the latest start plus the window (as a session's)."""

log = get_logger()


class RouteState:
    """Where a routed session runs: the choice, the current route, the routes it fell over from,
    and each candidate's forecast (to charge calls at the current route's grid). It lives on the
    session's accounting (``acct.route``)."""

    __slots__ = ("choice", "claim", "current", "failed", "forecasts", "routes", "statics")

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
        self.claim: tuple[SlotLedger, Claim] | None = None

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

    async def enter(self, acct: Accounting, routed: RoutedPlan) -> Plan:
        """Make the choice the session's: where it is charged, its baseline (at once, at home),
        its place in the zone's slot ledger and in the routes' share count; emit ``Routed``."""
        acct.route = self
        route = self.current
        self._charge_at(acct, route)
        acct.baseline_intensity, acct.baseline_source = routed.baseline  # type: ignore[assignment]
        p = routed.plan
        if p.waits and route.zone is not None and route.name not in self.statics:
            # count the start plan() chose with this ledger, where plan() read the load
            ledger = self.routes.ledger(route.zone)
            expected = p.planned_intensity if p.planned_intensity is not None else 0.0
            claim = ledger.claim_nowait(
                acct.session_id,
                p.zone or p.provider or "unknown",
                [Choice(p.slot_start, expected, expected)],
                lease=p.deadline - p.created_at + p.window + _LEASE_MARGIN,
                now=p.created_at,
            )
            self.claim = (ledger, claim)
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
        return p

    def leave(self) -> None:
        """The session is over: give back its slot and its share (idempotent)."""
        if self.claim is not None:
            ledger, claim = self.claim
            ledger.release_nowait(claim)
            self.claim = None
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
    plan: Plan
    state: RouteState
    baseline: tuple[float | None, str]


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
    history: Callable[[Any], Awaitable[Forecast | None]] | None,
) -> RoutedPlan:
    """Plan the pair (route, start) for a session: every allowed route's forecast at once,
    :func:`~ecoasync.plan` on each (same calibration, threshold and per-zone ledger as a session
    without routes), then :func:`decide` on the planned intensities.

    Raises :class:`ForecastUnavailable` when no route could be planned.
    """
    allowed, dropped = filter_routes(routes.routes, routes.residency)
    seconds = policy.forecast_timeout.total_seconds()
    zones = [z for r in allowed for z in ((r.zone,) if r.zone else r.among)]
    forecasts, grids = await _both(
        gather_forecasts(allowed, submitted, end, seconds), _grids(zones)
    )
    histories: dict[str, Forecast | None] = {}
    if history is not None:  # the calibrated strategy: each zone's recent actuals, at once
        fetch = history

        async def one(route: Route) -> None:
            histories[route.name] = await fetch(route.provider)

        async with anyio.create_task_group() as tg:
            for route in allowed:
                if isinstance(forecasts.get(route.name), Forecast):
                    tg.start_soon(one, route)
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
                ledger = routes.ledger(route.zone) if route.zone else None
            else:
                value, figures["source"] = static_intensity(route, grids)
                statics[route.name] = value
                forecast = _constant(route, value, submitted, end)
                ledger = None
            p = plan(
                forecast,
                submitted,
                policy,
                rng=rng,
                history=histories.get(route.name),
                ledger=ledger,
            )
            plans[route.name] = p
            kept[route.name] = forecast
            figures.update(
                intensity=p.planned_intensity,
                start=p.start,
                decision=p.decision,
                signal=str(forecast.signal),
                valid_until=_valid_until(forecast, p.slot_start),
            )
        candidates.append(_candidate(route, grids, routes.latency_percentile, **figures))
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
    return RoutedPlan(chosen, state, baseline)


async def failed_routes(
    acct: Accounting, routes: Routes, submitted: datetime, exc: Exception
) -> RouteState:
    """No route could be planned (every provider failed): the session runs at home, at once,
    charged at home's annual average (source ``mix``); the choice says why."""
    home = routes.home_route
    grids = await _grids((home.zone,) if home.zone else home.among)
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
