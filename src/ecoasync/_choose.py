"""``choose_route``: the best route to run work on now. Every candidate zone's forecast is
fetched at once through its route's provider; a zone that fails or hangs is skipped within
the bound and said so; :func:`~ecoasync._routing.decide` chooses.

Layer: session. Imports values and the decisions (the planner's window mean, routing); the
sync shim lazily, for ``choose_route_sync``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel

from ._backend import run_sync
from ._checks import is_number
from ._clock import Clock, current_clock
from ._exceptions import ForecastTimeout, ForecastUnavailable
from ._forecast import Forecast
from ._log import get_logger
from ._planner import window_mean
from ._provider import ForecastBy, ForecastNowait, ForecastProvider
from ._route import Route, RouteError, RouteStrategy, parse_latency
from ._routes import Routes, check_strategy, filter_routes, parse_labels
from ._routing import (
    MIX_SIGNAL,
    Candidate,
    Grid,
    RouteChoice,
    decide,
    grid,
    make_candidate,
    static_intensity,
    valid_until_of,
)

__all__ = ["DEFAULT_TIMEOUT_S", "choose_route", "choose_route_sync", "gather_forecasts"]

log = get_logger()

DEFAULT_TIMEOUT_S = 10.0
"""How long :func:`choose_route` waits for each zone's forecast before skipping it."""


async def load_grids(zones: Iterable[str | None]) -> dict[str | None, Grid]:
    """:func:`~ecoasync._routing.grid` for each zone, off the event loop until EcoLogits is
    imported."""
    wanted = list(dict.fromkeys(zones))
    if "ecologits.electricity_mix_repository" in sys.modules:
        return {z: grid(z) for z in wanted}
    return await run_sync(lambda: {z: grid(z) for z in wanted})


def _error_text(exc: BaseException, seconds: float) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, ForecastTimeout):
        return f"provider gave no answer within {seconds:g} s"
    text = str(exc) or type(exc).__name__
    return f"provider failed: {text}"[:300]


async def _fetch(
    provider: ForecastProvider, start: datetime, end: datetime, deadline: float
) -> Forecast:
    """The provider's forecast, or ``TimeoutError`` at ``deadline`` (``anyio.current_time()``);
    a :class:`ForecastBy` provider carries the deadline on the request it shares."""
    with anyio.CancelScope(deadline=deadline):
        if isinstance(provider, ForecastBy):
            answer = await provider.forecast_by(start, end, deadline)
        else:
            answer = await provider.forecast(start, end)
        if not isinstance(answer, Forecast):
            raise ForecastUnavailable(
                f"{provider.name} returned {type(answer).__name__}, not a Forecast",
                provider=str(provider.name),
            )
        return answer
    raise TimeoutError


async def gather_forecasts(
    routes: Sequence[Route], start: datetime, end: datetime, *, deadline: float, bound_s: float
) -> dict[str, Forecast | str]:
    """Every route's forecast of ``[start, end)`` (or why there is none), fetched concurrently:
    one request per provider object (routes sharing a provider share it; its cache and
    single-flight do the rest), all bounded by ``deadline`` (``anyio.current_time()``;
    ``bound_s`` is how many seconds that was, for the messages). Routes without a provider
    are left out."""
    providers = {id(r.provider): r.provider for r in routes if r.provider is not None}
    answers: dict[int, Forecast | str] = {}
    waiting: list[tuple[int, ForecastProvider]] = []
    for key, provider in providers.items():
        cached = None
        if isinstance(provider, ForecastNowait):
            try:
                cached = provider.forecast_nowait(start, end)
            except Exception as exc:
                answers[key] = _error_text(exc, bound_s)
                continue
        if isinstance(cached, Forecast):
            answers[key] = cached
        else:
            waiting.append((key, provider))

    async def one(key: int, provider: ForecastProvider) -> None:
        try:
            answers[key] = await _fetch(provider, start, end, deadline)
        except Exception as exc:  # skipped and said, never raised: the other zones decide
            answers[key] = _error_text(exc, bound_s)
            log.warning(
                "ecoasync.route_forecast_failed",
                provider=str(provider.name),
                zone=getattr(provider, "zone", None),  # (a label, not a capability)
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
    labels = parse_labels(residency, "residency") if residency is not None else rs.residency
    ceiling = (
        parse_latency(max_latency, "max_latency") if max_latency is not None else rs.max_latency
    )
    window = parse_latency(duration, "duration")
    if window is not None and window <= timedelta(0):
        raise RouteError(
            f"duration must be positive, got {duration!r}", field="duration", value=duration
        )
    seconds = forecast_timeout
    if not is_number(seconds) or not seconds > 0:
        raise RouteError(
            f"forecast_timeout must be a positive number of seconds, got {seconds!r}",
            field="forecast_timeout",
            value=seconds,
        )
    allowed, dropped = filter_routes(rs.routes, labels)
    now = (clock or current_clock()).now()
    end = now + (window or timedelta(hours=1)) + timedelta(minutes=1)
    zones = [z for r in allowed for z in ((r.zone,) if r.zone else r.among)]
    deadline = anyio.current_time() + seconds
    forecasts, grids = await both(
        gather_forecasts(allowed, now, end, deadline=deadline, bound_s=seconds), load_grids(zones)
    )
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
            figures["valid_until"] = valid_until_of(answer, now)
            if figures["intensity"] is None:
                figures["skipped"] = "its forecast does not cover now"
        else:
            figures["intensity"], figures["source"] = static_intensity(route, grids)
            figures["signal"] = str(MIX_SIGNAL)
        candidates.append(make_candidate(route, grids, rs.latency_percentile, **figures))
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


async def both(first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
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
    with _sync._shared_portals() as portal:
        return portal.call(functools.partial(choose_route, routes, strategy, **options))
