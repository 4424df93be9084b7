"""Choosing where work runs, as pure code: the grid figures EcoLogits knows per zone, and
:func:`decide`, which makes what a choice says (:class:`Candidate`, :class:`RouteChoice`:
values, in :mod:`ecoasync._route_choice`).

:func:`decide` scores candidates under a strategy, applies the latency ceiling and the share
cap, and picks the lowest score (ties go to home, then to the order given). The live session
(``Policy(routes=...)``, :mod:`ecoasync._routed`), :func:`~ecoasync.choose_route`
(:mod:`ecoasync._choose`) and the simulator (:mod:`ecoasync._simulate_routes`) all call it.
The failover rule, :func:`fails_over`, is here too.

Layer: decisions (pure). Imports values; EcoLogits' electricity mixes through the
instrumentation's energy model, lazily (the one exception tests/test_layers.py allows).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from ._checks import is_whole
from ._exceptions import ForecastUnavailable
from ._forecast import Forecast, Signal
from ._route import DEFAULT_WUE, Route, RouteError, RouteStrategy
from ._route_choice import Basis, Candidate, RouteChoice

__all__ = [
    "MIX_SIGNAL",
    "Basis",
    "Candidate",
    "Grid",
    "RouteChoice",
    "decide",
    "fails_over",
    "grid",
    "static_intensity",
    "water",
]

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
    the first time (EcoLogits is imported): async code calls it through :func:`ecoasync._choose.load_grids`."""
    from ._instrument import _impacts

    _, _, mixes, _ = _impacts._ecologits()
    code = _impacts.zone_to_mix_zone(zone) or "WOR"
    found = mixes.find_electricity_mix(zone=code) or mixes.find_electricity_mix(zone="WOR")
    warnings = {str(getattr(w, "code", w)) for w in (found.warnings or ())}
    known = code != "WOR" and "electricity-mix-wue-world" not in warnings
    return Grid(found.gwp * 1000.0, found.wue, known)


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


def valid_until_of(forecast: Forecast, at: datetime) -> datetime | None:
    slot = forecast.at(at)
    return slot.end if slot is not None else None


def make_candidate(
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
    if is_whole(status):
        return status >= 500
    return any(cls.__name__ in _CONNECTION_ERRORS for cls in type(exc).__mro__)
