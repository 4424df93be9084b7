"""Choosing where work runs: the pure decision over :class:`~ecoasync.Route` candidates, and the
async step around it that fetches every candidate zone's forecast at once.

:func:`decide` is pure: it scores candidates under a strategy, applies the latency ceiling and
the share cap, and picks the lowest score (ties go to home, then to the order given). The live
session (``Policy(routes=...)``), :func:`choose_route` and the simulator all call it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio
import anyio.to_thread

from ._clock import Clock, current_clock
from ._exceptions import ForecastTimeout, ForecastUnavailable
from ._forecast import Forecast, Signal, Slot
from ._log import get_logger
from ._planner import Plan, plan, window_mean
from ._routes import (
    Basis,
    Candidate,
    Route,
    RouteChoice,
    RouteError,
    Routes,
    RouteStrategy,
    _labels,
    _latency,
    check_strategy,
    filter_routes,
)
from .events import Routed

if TYPE_CHECKING:
    import random

    from ._context import Accounting
    from ._ledger import Reservation, SlotLedger
    from ._policy import Policy

T = TypeVar("T")

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "choose_route",
    "choose_route_sync",
    "decide",
    "fails_over",
    "grid",
]

log = get_logger()

DEFAULT_TIMEOUT_S = 10.0
"""How long :func:`choose_route` waits for the slowest zone's forecast before skipping it."""

MIX_SIGNAL = Signal("average", "lifecycle")
"""EcoLogits' electricity mixes are location-based, life-cycle annual averages."""


# --- the grid figures EcoLogits knows per zone ---


class Grid(NamedTuple):
    """A zone's EcoLogits annual figures: carbon (gCO2eq/kWh) and water (L/kWh) per kWh, and
    whether the water figure is the zone's own (False: EcoLogits' world default)."""

    gwp_g_per_kwh: float
    wue_l_per_kwh: float
    wue_known: bool


@functools.lru_cache(maxsize=256)
def grid(zone: str | None) -> Grid:
    """EcoLogits' annual figures for a grid zone (its country's, else the world's). Blocking
    the first time (EcoLogits is imported): async code calls it through :func:`_grids`."""
    from ._instrument import _impacts

    _, _, mixes, _ = _impacts._ecologits()
    code = _impacts.zone_to_mix_zone(zone) or "WOR"
    found = mixes.find_electricity_mix(zone=code) or mixes.find_electricity_mix(zone="WOR")
    warnings = {str(getattr(w, "code", w)) for w in (found.warnings or ())}
    known = code != "WOR" and "electricity-mix-wue-world" not in warnings
    return Grid(found.gwp * 1000.0, found.wue, known)


async def _grids(zones: Iterable[str | None]) -> dict[str | None, Grid]:
    """:func:`grid` for each zone, off the event loop until EcoLogits is imported."""
    wanted = list(dict.fromkeys(zones))
    if "ecologits.electricity_mix_repository" in sys.modules:
        return {z: grid(z) for z in wanted}
    return await anyio.to_thread.run_sync(lambda: {z: grid(z) for z in wanted})


def static_intensity(route: Route, grids: Mapping[str | None, Grid]) -> tuple[float, Basis]:
    """A route's annual-average intensity: its zone's, or for a cross-region route the worst
    (or mean) of its zones'."""
    if route.zone is not None:
        return grids[route.zone].gwp_g_per_kwh, "mix"
    values = [grids[z].gwp_g_per_kwh for z in route.among]
    if route.charge == "mean":
        return sum(values) / len(values), "mean-of-mixes"
    return max(values), "worst-of-mixes"


def water(route: Route, grids: Mapping[str | None, Grid]) -> tuple[float, bool]:
    """Litres of water per kWh: on-site WUE plus PUE times the grid's water intensity
    (EcoLogits' ``datacenter_wue + datacenter_pue * mix.wue``), and whether it is uncertain."""
    from ._routes import DEFAULT_WUE

    zones = (route.zone,) if route.zone is not None else route.among
    figures = [grids[z] for z in zones]
    per_grid = max(g.wue_l_per_kwh for g in figures)
    uncertain = route.wue is None or not all(g.wue_known for g in figures)
    onsite = DEFAULT_WUE if route.wue is None else route.wue
    return onsite + route.pue * per_grid, uncertain or route.zone is None


# --- the decision ---


def decide(
    candidates: Sequence[Candidate],
    strategy: RouteStrategy,
    *,
    home: str | None = None,
    latency_weight: float = 0.0,
    max_latency: timedelta | None = None,
    max_share: float | None = None,
    loads: Mapping[str, int] | None = None,
) -> tuple[tuple[Candidate, ...], Candidate, str]:
    """Score ``candidates`` and pick one. Pure.

    Scores (lower wins): ``lowest_carbon``: the intensity; ``lowest_water``: litres per kWh
    (then the intensity); ``balanced``: ``intensity + latency_weight * latency_s`` (a route
    whose latency is unknown counts as the slowest known one). A candidate over
    ``max_latency`` is skipped; with ``max_share``, a route already holding
    ``ceil(max_share * (running + 1))`` of the ``loads`` (the jobs running on each route) is
    passed over for the next best (all full: the best). Ties go to ``home``, then to the order given.

    Returns every candidate (scored, or with ``skipped`` set), the winner and a sentence.

    Raises:
        RouteError: the latency ceiling leaves no candidate.
        ForecastUnavailable: no candidate has an intensity (every provider failed).
    """
    out = list(candidates)
    for k, c in enumerate(out):
        if c.skipped is None and c.intensity is None:
            out[k] = dataclasses.replace(c, skipped="no intensity for its window")
    if max_latency is not None:
        ceiling = max_latency.total_seconds()
        over = [
            k
            for k, c in enumerate(out)
            if c.skipped is None and c.latency_s is not None and c.latency_s > ceiling
        ]
        if over and all(out[k].skipped is not None or k in over for k in range(len(out))):
            slow = ", ".join(f"{out[k].route!r} {out[k].latency_s:.3g} s" for k in over)
            raise RouteError(
                f"no route meets max_latency={ceiling:g}s: {slow}; raise max_latency or add a "
                "faster route",
                field="max_latency",
                value=max_latency,
            )
        for k in over:
            c = out[k]
            out[k] = dataclasses.replace(
                c,
                skipped=f"latency {c.latency_s:.3g} s ({c.latency_source}) over max_latency {ceiling:g} s",
            )
    live = [k for k, c in enumerate(out) if c.skipped is None]
    if not live:
        why = "; ".join(f"{c.route!r}: {c.skipped}" for c in out)
        raise ForecastUnavailable(f"no route could be scored: {why}", provider="routes", cause=why)
    slowest = max((out[k].latency_s or 0.0 for k in live), default=0.0)
    for k in live:
        c = out[k]
        assert c.intensity is not None
        if strategy == "lowest_carbon":
            score = c.intensity
        elif strategy == "lowest_water":
            score = math.inf if c.water_l_per_kwh is None else c.water_l_per_kwh
        else:
            latency = slowest if c.latency_s is None else c.latency_s
            score = c.intensity + latency_weight * latency
        out[k] = dataclasses.replace(c, score=score)

    def key(k: int) -> tuple[float, float, int]:
        c = out[k]
        assert c.score is not None and c.intensity is not None
        second = c.intensity if strategy == "lowest_water" else 0.0
        return (c.score, second, -1 if c.route == home else k)

    order = sorted(live, key=key)
    best = order[0]
    chosen = best
    note = ""
    if max_share is not None and loads:
        running = sum(loads.values())
        cap = math.ceil(max_share * (running + 1) - 1e-9)
        free = [k for k in order if loads.get(out[k].route, 0) < cap]
        if not free:
            note = f"; every route holds its max_share ({max_share:g}), so the best was taken"
        elif free[0] != best:
            chosen = free[0]
            note = (
                f"; {out[best].route!r} already holds {loads.get(out[best].route, 0)} of "
                f"{running} running jobs (max_share {max_share:g})"
            )
    winner = out[chosen]
    return tuple(out), winner, _reason(winner, strategy, latency_weight, out, home) + note


def _reason(
    winner: Candidate,
    strategy: RouteStrategy,
    weight: float,
    every: Sequence[Candidate],
    home: str | None,
) -> str:
    assert winner.intensity is not None
    what = f"{winner.intensity:.0f} gCO2eq/kWh"
    if winner.uncertain and winner.source in ("worst-of-mixes", "mean-of-mixes"):
        what += f" ({winner.source.replace('-', ' ')}, its grid unknown)"
    if strategy == "lowest_water":
        what = f"{winner.water_l_per_kwh:.2f} L of water per kWh, {what}"
    elif strategy == "balanced":
        latency = "unknown" if winner.latency_s is None else f"{winner.latency_s * 1000:.0f} ms"
        what = f"score {winner.score:.0f} = {what} + {weight:g} x latency ({latency})"
    when = ""
    if winner.start is not None and winner.decision == "wait":
        when = f", starting {winner.start:%H:%M}Z"
    others = [c for c in every if c.skipped is None and c.route != winner.route]
    against = ""
    base = next((c for c in every if c.route == home), None) if home else None
    if base is not None and base.route != winner.route and base.intensity is not None:
        against = f"; home {base.route!r} {base.intensity:.0f}"
    elif others:
        runner = min(others, key=lambda c: math.inf if c.score is None else c.score)
        if runner.intensity is not None:
            against = f"; next best {runner.route!r} {runner.intensity:.0f}"
    skipped = [c for c in every if c.skipped is not None]
    dropped = ""
    if skipped:
        dropped = "; skipped " + ", ".join(f"{c.route!r} ({c.skipped})" for c in skipped)
    return f"{winner.route!r} at {what}{when} ({strategy}{against}){dropped}"


# --- fetching every zone's forecast at once ---


def _error_text(exc: BaseException, seconds: float) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, ForecastTimeout):
        return f"provider gave no answer within {seconds:g} s"
    text = str(exc) or type(exc).__name__
    return f"provider failed: {text}"[:300]


async def _fetch(provider: Any, start: datetime, end: datetime, seconds: float) -> Forecast:
    by = getattr(provider, "forecast_by", None)
    with anyio.fail_after(seconds):
        if by is not None:
            answer = await by(start, end, anyio.current_time() + seconds)
        else:
            answer = await provider.forecast(start, end)
    if not isinstance(answer, Forecast):
        raise ForecastUnavailable(
            f"{provider.name} returned {type(answer).__name__}, not a Forecast",
            provider=str(provider.name),
        )
    return answer


async def gather_forecasts(
    routes: Sequence[Route], start: datetime, end: datetime, seconds: float
) -> dict[str, Forecast | str]:
    """Every route's forecast of ``[start, end)`` (or why there is none), fetched concurrently:
    one request per provider object (routes sharing a provider share it; its cache and
    single-flight do the rest), each bounded by ``seconds``. Routes without a
    provider are left out."""
    providers = {id(r.provider): r.provider for r in routes if r.provider is not None}
    answers: dict[int, Forecast | str] = {}
    waiting = []
    for key, provider in providers.items():
        nowait = getattr(provider, "forecast_nowait", None)
        cached = None
        if nowait is not None:
            try:
                cached = nowait(start, end)
            except Exception as exc:
                answers[key] = _error_text(exc, seconds)
                continue
        if isinstance(cached, Forecast):
            answers[key] = cached
        else:
            waiting.append((key, provider))

    async def one(key: int, provider: Any) -> None:
        try:
            answers[key] = await _fetch(provider, start, end, seconds)
        except Exception as exc:  # skipped and said, never raised: the other zones decide
            answers[key] = _error_text(exc, seconds)
            log.warning(
                "ecoasync.route_forecast_failed",
                provider=getattr(provider, "name", type(provider).__name__),
                zone=getattr(provider, "zone", None),
                error=answers[key],
            )

    if len(waiting) == 1:
        await one(*waiting[0])
    elif waiting:
        async with anyio.create_task_group() as tg:
            for key, provider in waiting:
                tg.start_soon(one, key, provider)
    else:
        await anyio.lowlevel.checkpoint()
    return {r.name: answers[id(r.provider)] for r in routes if r.provider is not None}


def _valid_until(forecast: Forecast, at: datetime) -> datetime | None:
    slot = forecast.at(at)
    return slot.end if slot is not None else None


def _candidate(
    route: Route,
    grids: Mapping[str | None, Grid],
    percentile: float,
    **figures: Any,
) -> Candidate:
    litres, water_uncertain = water(route, grids)
    latency, source = route.latency_s(percentile)
    return Candidate(
        route=route.name,
        zone=route.zone,
        water_l_per_kwh=litres,
        latency_s=latency,
        latency_source=source,
        uncertain=water_uncertain or not route.grid_known,
        **figures,
    )


async def choose_route(
    routes: Routes | Iterable[Route],
    strategy: RouteStrategy | None = None,
    *,
    residency: Iterable[str] | str | None = None,
    max_latency: timedelta | str | None = None,
    duration: timedelta | str | None = None,
    forecast_timeout: float = DEFAULT_TIMEOUT_S,
    clock: Clock | None = None,
) -> RouteChoice:
    """The best route to run work on now, and why.

    Every candidate zone's forecast is fetched at once through its route's provider (cache
    and single-flight included); a provider that fails or gives no answer within
    ``forecast_timeout`` seconds is skipped and said so in the result: one slow zone never
    holds the choice past that bound. Routes without a provider are scored at
    their zone's EcoLogits annual average.

    Args:
        routes: a :class:`Routes` (its strategy and constraints apply unless overridden) or
            :class:`Route` values (the first is home).
        strategy: ``"lowest_carbon"``, ``"lowest_water"`` or ``"balanced"`` (see
            :class:`Routes`).
        residency: labels a route must carry one of; a hard filter before scoring.
        max_latency: a ceiling on the routes' latency (measured, else configured).
        duration: how long the work runs: the intensity is the forecast's mean over it
            (default: the current slot).
        forecast_timeout: seconds to wait for each zone's forecast.
        clock: the time source (default: the context's, see ``ecoasync.testing``).

    Raises:
        RouteError: a constraint leaves no route (the message names it).
        ForecastUnavailable: no route could be scored at all.
    """
    rs = Routes.of(routes)
    chosen_strategy = check_strategy(strategy if strategy is not None else rs.strategy)
    labels = _labels(residency, "residency") if residency is not None else rs.residency
    ceiling = _latency(max_latency, "max_latency") if max_latency is not None else rs.max_latency
    window = _latency(duration, "duration")
    if window is not None and window <= timedelta(0):
        raise RouteError(
            f"duration must be positive, got {duration!r}", field="duration", value=duration
        )
    seconds = forecast_timeout
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise RouteError(
            f"forecast_timeout must be a positive number of seconds, got {seconds!r}",
            field="forecast_timeout",
            value=seconds,
        )
    allowed, dropped = filter_routes(rs.routes, labels)
    now = (clock or current_clock()).now()
    end = now + (window or timedelta(hours=1)) + timedelta(minutes=1)
    zones = [z for r in allowed for z in ((r.zone,) if r.zone else r.among)]
    forecasts, grids = await _both(gather_forecasts(allowed, now, end, seconds), _grids(zones))
    candidates = []
    for route in allowed:
        answer = forecasts.get(route.name)
        figures: dict[str, Any] = {"start": now}
        if isinstance(answer, str):
            figures["skipped"] = answer
        elif isinstance(answer, Forecast):
            slot = answer.at(now)
            if window is None and slot is not None:
                figures["intensity"] = slot.forecast if slot.actual is None else slot.actual
                figures["source"] = "forecast" if slot.actual is None else "actual"
            else:
                figures["intensity"] = window_mean(answer, now, window or timedelta(minutes=30))
                figures["source"] = "forecast"
            figures["signal"] = str(answer.signal)
            figures["valid_until"] = _valid_until(answer, now)
            if figures["intensity"] is None:
                figures["skipped"] = "its forecast does not cover now"
        else:
            figures["intensity"], figures["source"] = static_intensity(route, grids)
            figures["signal"] = str(MIX_SIGNAL)
        candidates.append(_candidate(route, grids, rs.latency_percentile, **figures))
    candidates += [
        Candidate(route=r.name, zone=r.zone, skipped=f"residency: {why}") for r, why in dropped
    ]
    scored, winner, reason = decide(
        candidates,
        chosen_strategy,
        home=rs.home,
        latency_weight=rs.latency_weight,
        max_latency=ceiling,
    )
    home = next((c for c in scored if c.route == rs.home and c.skipped is None), None)
    valid = [c.valid_until for c in scored if c.skipped is None and c.valid_until is not None]
    return RouteChoice(
        route=rs.named(winner.route),
        strategy=chosen_strategy,
        at=now,
        start=now,
        intensity=winner.intensity,
        signal=winner.signal,
        home=rs.home,
        home_intensity=home.intensity if home is not None else None,
        valid_until=min(valid, default=None),
        candidates=scored,
        reason=reason,
    )


async def _both(first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
    """Await two things concurrently."""
    results: list[Any] = [None, None]

    async def run(k: int, aw: Awaitable[Any]) -> None:
        results[k] = await aw

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return results[0], results[1]


def choose_route_sync(
    routes: Routes | Iterable[Route],
    strategy: RouteStrategy | None = None,
    **options: Any,
) -> RouteChoice:
    """The sync twin of :func:`choose_route`, run in the sync API's shared event loop. Raises
    ``RuntimeError`` from a thread that runs an event loop (use ``await choose_route``)."""
    from . import _sync

    _sync._refuse_inside_event_loop("choose_route_sync()", "'await ecoasync.choose_route(...)'")
    _sync._keep_portal_alive()
    with _sync._PORTALS as portal:
        return portal.call(functools.partial(choose_route, routes, strategy, **options))


# --- failing over at call time ---

_CONNECTION_ERRORS = frozenset(
    {"APIConnectionError", "APITimeoutError", "ConnectError", "ReadTimeout"}
)


def fails_over(exc: BaseException) -> bool:
    """The rule for falling over to the next route: the route failed, not the request.

    A timeout, a connection error, or an HTTP status of 500 or more (the SDKs' ``APIStatusError``
    with ``status_code``, ``APITimeoutError``, ``APIConnectionError``). Not a 4xx (the request
    is wrong everywhere), not a refused budget, never a cancellation.
    """
    if not isinstance(exc, Exception):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status >= 500
    return any(cls.__name__ in _CONNECTION_ERRORS for cls in type(exc).__mro__)


# --- a session's routes ---


class RouteState:
    """Where a routed session runs: the choice, the current route, the routes it fell over from,
    and each candidate's forecast (to charge calls at the current route's grid). It lives on the
    session's accounting (``acct.route``)."""

    __slots__ = ("choice", "current", "failed", "forecasts", "reservation", "routes", "statics")

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
        self.reservation: tuple[SlotLedger, Reservation] | None = None

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
            ledger = self.routes.ledger(route.zone)
            self.reservation = (ledger, ledger.reserve(p))
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
        if self.reservation is not None:
            ledger, reservation = self.reservation
            ledger.release(reservation)
            self.reservation = None
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
