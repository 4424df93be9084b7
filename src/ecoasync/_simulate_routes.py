"""Replay several traces, one per route: where *and* when, against running at once at home.

Pure code (no I/O, no clock), used by ``ecoasync simulate --trace NAME=PATH ...`` and the
benchmarks. The traces must cover the same slots. For every scenario slot (as in
:func:`ecoasync._simulate.replay`), one job is submitted and, by ``mode``:

- ``temporal``: planned on the home route's forecast only (today's replay);
- ``spatial``: sent at once to the route whose forecast is lowest now;
- ``both``: planned on every route (the session's :func:`~ecoasync.plan` per route), the pair
  (route, start) with the lowest expected intensity taken, through the same
  :func:`~ecoasync._routing.decide` a live session uses.

Each job is charged the *actual* intensity of the route and slot it ran in. ``baseline_g`` is
running at once at home; ``oracle_g`` the best the mode could have done in hindsight (the
lowest actual over the routes and starts it may pick). Figures are location-based averages of
whatever the traces hold.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal

from ._forecast import Forecast
from ._planner import plan
from ._policy import Policy
from ._routing import Candidate, decide
from ._simulate import (
    DEFAULT_ENERGY_KWH,
    DayFigures,
    Progress,
    Replay,
    SimulationError,
    _inputs,
    _oracle,
    _prepare,
    _Prepared,
    _ran_in,
)

__all__ = ["MODES", "Mode", "RoutedReplay", "replay_routes"]

Mode = Literal["temporal", "spatial", "both"]
MODES: Final[tuple[Mode, ...]] = ("temporal", "spatial", "both")


@dataclass(frozen=True, slots=True)
class RoutedReplay:
    """A replay over several routes: the usual figures, and how many jobs went where."""

    mode: Mode
    home: str
    figures: Replay
    jobs: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """Today's keys (``scenarios``, ``baseline_g`` at once at home, ``scheduled_g``,
        ``oracle_g``, ...) plus ``mode``, ``home``, ``routes`` (jobs and share per route) and
        ``basis``."""
        total = sum(self.jobs.values())
        return {
            **self.figures.to_json(),
            "mode": self.mode,
            "home": self.home,
            "routes": {
                name: {"jobs": n, "share_pct": round(100.0 * n / total, 3) if total else 0.0}
                for name, n in self.jobs.items()
            },
            "basis": "location-based average (the traces' actual intensities)",
        }


def _aligned(preps: Mapping[str, _Prepared]) -> None:
    """The traces must cover the same slots: a clear error naming the first that does not."""
    names = list(preps)
    first = preps[names[0]]
    for name in names[1:]:
        other = preps[name]
        a, b = first.trace, other.trace
        if first.slot != other.slot:
            raise SimulationError(
                f"traces {names[0]!r} and {name!r} have different slot lengths "
                f"({first.slot} and {other.slot}); resample them to one length"
            )
        if a.start != b.start or a.end != b.end or len(a) != len(b):
            raise SimulationError(
                f"traces {names[0]!r} ({_span(a)}) and {name!r} ({_span(b)}) cover different "
                "time ranges; give every route a trace over the same range"
            )
        if a._columns().starts != b._columns().starts:
            raise SimulationError(
                f"traces {names[0]!r} and {name!r} have different slots (gaps in one of them); "
                "give every route a trace over the same slots"
            )
        if first.scenarios != other.scenarios:
            raise SimulationError(
                f"traces {names[0]!r} and {name!r} have actuals on different days; every "
                "route's trace needs intensity_actual on the same slots"
            )


def _span(trace: Forecast) -> str:
    assert trace.start is not None and trace.end is not None
    return f"{trace.start:%Y-%m-%dT%H:%MZ} .. {trace.end:%Y-%m-%dT%H:%MZ}"


def replay_routes(
    traces: Mapping[str, Forecast],
    policy: Policy,
    *,
    home: str | None = None,
    mode: Mode = "both",
    energy_kwh: float = DEFAULT_ENERGY_KWH,
    progress: Progress | None = None,
) -> RoutedReplay:
    """Replay ``traces`` (route name → trace over the same slots) under ``policy`` and ``mode``.

    With one route, ``temporal`` and ``both`` give exactly :func:`~ecoasync._simulate.replay`'s
    figures; with identical traces for every route, ``both`` gives ``temporal``'s.

    Raises :class:`SimulationError` for traces over different ranges, an unknown home or mode,
    or no complete day to replay.
    """
    if not traces:
        raise SimulationError("give at least one trace")
    names = list(traces)
    home = names[0] if home is None else home
    if home not in traces:
        raise SimulationError(f"home {home!r} is not one of the traces ({', '.join(names)})")
    if mode not in MODES:
        raise SimulationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    preps = {name: _prepare(trace, policy) for name, trace in traces.items()}
    _aligned(preps)
    policy = policy.evolve(jitter=timedelta(0))
    # what each mode may pick: which routes, and with which delay budget
    routes = [home] if mode == "temporal" else [home, *(n for n in names if n != home)]
    planning = policy.evolve(max_delay=timedelta(0)) if mode == "spatial" else policy
    main = preps[home]
    ahead = 0 if mode == "spatial" else main.ahead
    actual = {name: preps[name].actual for name in routes}
    total = len(main.scenarios)
    base = sched = orc = 0.0
    delays: list[float] = []
    regressions = 0
    per_day = total // len(main.days)
    figures: list[list[float]] = [[0, 0.0, 0.0, 0.0] for _ in main.days]
    jobs = dict.fromkeys(routes, 0)
    every = max(total // 100, 1)
    hour = timedelta(hours=1)
    for n, i in enumerate(main.scenarios):
        plans = {}
        candidates = []
        for name in routes:
            forecast, history, now = _inputs(preps[name], i, planning)
            p = plan(forecast, now, planning, history=history)
            plans[name] = p
            candidates.append(Candidate(route=name, zone=None, intensity=p.planned_intensity))
        if len(routes) == 1:
            chosen = routes[0]
        else:
            chosen = decide(candidates, "lowest_carbon", home=home)[1].route
        p = plans[chosen]
        waited = p.start - p.created_at
        j = _ran_in(preps[chosen], i, waited)
        o = min(
            (actual[name][_oracle(actual[name], i, ahead)] for name in routes),
        )
        a_now, a_run, a_best = (
            actual[home][i] * energy_kwh,
            actual[chosen][j] * energy_kwh,
            o * energy_kwh,
        )
        base += a_now
        sched += a_run
        orc += a_best
        regressions += a_run > a_now
        delays.append(waited / hour)
        jobs[chosen] += 1
        day = figures[n // per_day]
        day[0] += 1
        day[1] += a_now
        day[2] += a_run
        day[3] += a_best
        if progress is not None and (n % every == 0 or n == total - 1):
            progress(n + 1, total)
    daily = tuple(
        DayFigures(d.isoformat(), int(v[0]), v[1], v[2], v[3])
        for d, v in zip(main.days, figures, strict=True)
    )
    return RoutedReplay(
        mode=mode,
        home=home,
        figures=Replay(
            scenarios=total,
            days=len(main.days),
            baseline_g=base,
            scheduled_g=sched,
            oracle_g=orc,
            mean_delay_h=statistics.fmean(delays),
            median_delay_h=statistics.median(delays),
            regressions=regressions,
            daily=daily,
            strategy=policy.strategy,
            delays_h=tuple(delays),
        ),
        jobs=jobs,
    )
