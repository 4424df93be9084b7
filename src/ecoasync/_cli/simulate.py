"""``ecoasync simulate``: replay a trace and show what carbon-aware scheduling would have done.

Layer: edges (the command line); imports any layer below, as a user's program would.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

__all__ = ["register"]


def register(commands: Any) -> None:
    from .._policy import STRATEGIES

    parser = commands.add_parser(
        "simulate",
        help="replay a trace: savings and delays of ecoasync's planner vs running at once and an oracle",
        description="For every slot of every complete UTC day of the trace (whose look-ahead lies "
        "inside it) one job is submitted; running it at once, planning it with ecoasync's "
        "planner on the forecast, and an oracle on the actuals are each charged the actual "
        "intensity of the slot the job ran in.",
    )
    parser.add_argument(
        "--trace",
        required=True,
        action="append",
        metavar="[NAME=]PATH",
        help="a CSV with from,to,intensity_forecast,intensity_actual (times in UTC); repeat "
        "as NAME=PATH, one per route over the same time range, to simulate where and when",
    )
    parser.add_argument(
        "--home",
        metavar="NAME",
        help="with several traces: where the work runs by default (the baseline; default the first)",
    )
    parser.add_argument(
        "--mode",
        choices=("temporal", "spatial", "both"),
        help="temporal: when, at home; spatial: where, at once; both: the pair (route, start) "
        "(default both with several traces, temporal with one)",
    )
    parser.add_argument(
        "--max-delay", default="4h", help="the delay budget, e.g. 4h, 90m (default 4h)"
    )
    parser.add_argument(
        "--energy-kwh",
        type=float,
        default=None,
        help="energy per job in kWh (default 0.0005)",
    )
    parser.add_argument(
        "--policy",
        choices=STRATEGIES,
        default=None,
        help=f"the planning strategy (default {STRATEGIES[0]}; 'lowest' is the EcoTracker rule)",
    )
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=None,
        help="wait only for at least this fractional gain (default 0)",
    )
    parser.add_argument(
        "--frontier",
        action="store_true",
        help="sweep both strategies over min_improvement 0, 2, 5, 10, 15, 20 and 30 %% (and "
        "the calibrated one over caution 0, 0.5 and 1) and show savings against mean delay, "
        "the Pareto-efficient points marked; with --plot, draw them",
    )
    parser.add_argument(
        "--jobs-per-slot",
        type=int,
        default=None,
        metavar="N",
        help="also submit N jobs per slot and compare jitter alone with the slot ledger",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plot",
        metavar="OUT",
        help="draw the daily reductions (with --frontier: savings against mean delay) to OUT "
        "(.png/.svg; 'plot' extra)",
    )
    parser.set_defaults(func=_main)


class _Bar:
    """A one-line progress bar on a terminal's stderr."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label

    def __call__(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\r" + " " * (width + len(self.label) + 30) + "\r")
        self.stream.flush()


def _main(args: argparse.Namespace) -> int:
    from .._exceptions import ForecastDataError, PolicyError
    from .._policy import STRATEGIES, Policy
    from .._simulate import DEFAULT_ENERGY_KWH, SimulationError, replay, replay_herd
    from ..providers import read_trace

    energy = DEFAULT_ENERGY_KWH if args.energy_kwh is None else args.energy_kwh
    if not energy > 0 or energy != energy or energy == float("inf"):
        print(f"ecoasync simulate: --energy-kwh must be > 0, got {energy}", file=sys.stderr)
        return 2
    if args.jobs_per_slot is not None and args.jobs_per_slot < 1:
        print(
            f"ecoasync simulate: --jobs-per-slot must be >= 1, got {args.jobs_per_slot}",
            file=sys.stderr,
        )
        return 2
    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        print(
            f"ecoasync simulate: --plot must end in .png or .svg, got {args.plot!r}",
            file=sys.stderr,
        )
        return 2
    try:
        policy = Policy(
            max_delay=args.max_delay,
            strategy=args.policy or STRATEGIES[0],
            min_improvement=0.0 if args.min_improvement is None else args.min_improvement,
        )
    except PolicyError as exc:
        print(f"ecoasync simulate: {exc}", file=sys.stderr)
        return 2
    named = _named_traces(args.trace)
    if named is None:
        print(
            "ecoasync simulate: with several --trace options, name each: --trace NAME=PATH",
            file=sys.stderr,
        )
        return 2
    if args.frontier:
        return _frontier_main(args, named, policy, energy)
    if len(named) > 1 or args.mode or args.home or next(iter(named)):  # several routes
        if args.jobs_per_slot:
            print("ecoasync simulate: --jobs-per-slot takes one unnamed trace", file=sys.stderr)
            return 2
        return _routes_main(args, named, policy, energy)
    try:
        trace = read_trace(args.trace[0])
    except ForecastDataError as exc:
        print(f"ecoasync simulate: {exc}", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()
    try:
        result = replay(
            trace,
            policy,
            energy_kwh=energy,
            progress=_Bar(sys.stderr, "replaying") if tty and len(trace) > 2000 else None,
        )
        herd = (
            replay_herd(
                trace,
                policy,
                args.jobs_per_slot,
                energy_kwh=energy,
                progress=_Bar(sys.stderr, "herd") if tty else None,
            )
            if args.jobs_per_slot
            else None
        )
    except SimulationError as exc:
        print(f"ecoasync simulate: {args.trace[0]}: {exc}", file=sys.stderr)
        return 2
    payload = result.to_json()
    if args.plot:
        code = _plot(args.plot, payload)
        if code:
            return code
    if args.json:
        if herd is not None:
            payload["herd"] = herd.to_json()
        print(json.dumps(payload))
        return 0
    print(_table(result, policy, energy, args.trace[0]))
    if herd is not None:
        print(_herd_table(herd))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _named_traces(values: list[str]) -> dict[str, str] | None:
    """``NAME=PATH`` options as ``{name: path}`` (one bare ``PATH`` is ``{"": path}``); None
    when several are given and one has no name."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or "/" in name or "\\" in name:
            name, path = "", value
        if not name and len(values) > 1:
            return None
        out[name] = path
    return out


def _routes_main(
    args: argparse.Namespace, named: dict[str, str], policy: Any, energy: float
) -> int:
    from .._exceptions import ForecastDataError
    from .._simulate import SimulationError
    from .._simulate_routes import Mode, replay_routes
    from ..providers import read_trace

    if len(set(named)) != len(args.trace):
        print("ecoasync simulate: two --trace options have the same NAME", file=sys.stderr)
        return 2
    traces = {}
    for name, path in named.items():
        try:
            traces[name or "home"] = read_trace(path, zone=name or None)
        except ForecastDataError as exc:
            print(f"ecoasync simulate: {exc}", file=sys.stderr)
            return 2
    mode: Mode = args.mode or ("both" if len(traces) > 1 else "temporal")
    try:
        result = replay_routes(
            traces,
            policy,
            home=args.home,
            mode=mode,
            energy_kwh=energy,
            progress=_Bar(sys.stderr, f"replaying ({mode})") if sys.stderr.isatty() else None,
        )
    except SimulationError as exc:
        print(f"ecoasync simulate: {exc}", file=sys.stderr)
        return 2
    payload = result.to_json()
    if args.plot:
        code = _plot(args.plot, payload)
        if code:
            return code
    if args.json:
        print(json.dumps(payload))
        return 0
    where = ", ".join(traces)
    print(_table(result.figures, policy, energy, f"{mode} over {where} (home {result.home})"))
    print("")
    print("  jobs per route")
    for name, share in payload["routes"].items():
        print(f"    {name:<20}{share['jobs']:>10,}  {share['share_pct']:6.2f} %")
    print(f"  basis: {payload['basis']}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _frontier_main(
    args: argparse.Namespace, named: dict[str, str], policy: Any, energy: float
) -> int:
    import time

    from .._exceptions import ForecastDataError
    from .._frontier import frontier, frontier_policies
    from .._simulate import SimulationError
    from ..providers import read_trace

    unsupported = [
        flag
        for flag, given in (
            ("several --trace", len(named) > 1),
            ("--trace NAME=PATH", len(named) == 1 and next(iter(named)) != ""),
            ("--mode", args.mode),
            ("--home", args.home),
            ("--jobs-per-slot", args.jobs_per_slot),
            ("--policy", args.policy),
            ("--min-improvement", args.min_improvement is not None),
        )
        if given
    ]
    if unsupported:
        print(
            "ecoasync simulate: --frontier sweeps one trace at home over both strategies, "
            f"min_improvement and caution itself; drop {', '.join(unsupported)} "
            "(for several routes, run --frontier on each route's trace)",
            file=sys.stderr,
        )
        return 2
    path = args.trace[0]
    try:
        trace = read_trace(path)
    except ForecastDataError as exc:
        print(f"ecoasync simulate: {exc}", file=sys.stderr)
        return 2
    count = len(frontier_policies(policy))
    began = time.perf_counter()
    try:
        points = frontier(
            trace,
            policy,
            energy_kwh=energy,
            progress=_Bar(sys.stderr, f"sweeping {count} policies")
            if sys.stderr.isatty()
            else None,
        )
    except SimulationError as exc:
        print(f"ecoasync simulate: {path}: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - began
    payload = _frontier_json(points, policy, energy)
    if args.plot:
        code = _plot_frontier(args.plot, payload, path)
        if code:
            return code
    if args.json:
        print(json.dumps(payload))
        return 0
    print(_frontier_table(points, payload, policy, energy, path, seconds))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _frontier_json(points: Any, policy: Any, energy: float) -> dict[str, Any]:
    from .._frontier import FRONTIER_MIN_IMPROVEMENTS

    first = points[0].result
    return {
        "scenarios": first.scenarios,
        "days": first.days,
        "max_delay_h": round(policy.max_delay.total_seconds() / 3600, 4),
        "energy_kwh": energy,
        "baseline_g": round(first.baseline_g, 6),
        "oracle_g": round(first.oracle_g, 6),
        "oracle_reduction_pct": round(
            100 * (1 - first.oracle_g / first.baseline_g) if first.baseline_g > 0 else 0.0, 3
        ),
        "min_improvements": list(FRONTIER_MIN_IMPROVEMENTS),
        "cautions": sorted({p.caution for p in points if p.caution is not None}),
        "points": [p.to_json() for p in points],
    }


def _frontier_table(
    points: Any, payload: dict[str, Any], policy: Any, energy: float, path: str, seconds: float
) -> str:
    from .._durations import format_duration

    lines = [
        f"{path}: the carbon-for-delay frontier, {len(points)} policies, "
        f"{payload['scenarios']:,} jobs each over {payload['days']} days, "
        f"max_delay {format_duration(policy.max_delay)}, {energy:g} kWh each "
        f"({seconds:.1f} s)",
        f"  the oracle (hindsight) saves {payload['oracle_reduction_pct']:.2f} % of running at once"
        + (
            ""
            if payload["baseline_g"] - payload["oracle_g"] > 1e-9
            else " (no start within the budget saves anything: a longer --max-delay?)"
        ),
        "",
        f"  {'strategy':<12}{'caution':>8}{'min_improvement':>17}{'oracle share':>14}"
        f"{'reduction':>11}{'mean delay':>12}{'regressions':>13}",
    ]
    for p in points:
        r = p.result
        caution = "-" if p.caution is None else f"{p.caution:g}"
        mark = ("  *" if p.efficient else "   ") + ("  default" if p.default else "")
        lines.append(
            f"  {p.strategy:<12}{caution:>8}{100 * p.min_improvement:>15g} %"
            f"{r.oracle_capture_pct:>12.1f} %{r.reduction_pct:>9.2f} %"
            f"{r.mean_delay_h:>10.2f} h{r.regressions:>13,}{mark}".rstrip()
        )
    lines += [
        "",
        "  * Pareto-efficient: no other point saves more with no more mean delay (or as much "
        "with less).",
        "  Pick the * point with the most savings at a mean delay you accept and set it: "
        "Policy(strategy=..., min_improvement=..., caution=...).",
    ]
    return "\n".join(lines)


def _plot_frontier(out: str, payload: dict[str, Any], path: str) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "ecoasync simulate: --plot needs matplotlib: pip install 'ecoasync[plot]'",
            file=sys.stderr,
        )
        return 2
    from pathlib import Path

    from .._report._plot_frontier import render_frontier

    render_frontier(
        out,
        payload["points"],
        oracle_reduction_pct=payload["oracle_reduction_pct"],
        title=f"ecoasync simulate --frontier: {Path(path).name}, {payload['scenarios']:,} jobs, "
        f"max_delay {payload['max_delay_h']:g} h",
    )
    return 0


def _pct(value: float) -> str:
    """A signed percentage; a change that rounds to zero is +0.00, never -0.00."""
    return f"{round(value, 2) + 0.0:+.2f} %"


def _table(result: Any, policy: Any, energy: float, path: str) -> str:
    from .._durations import format_duration, human_duration

    saved = result.baseline_g - result.oracle_g > 1e-12
    capture = f"{result.oracle_capture_pct:.1f} %" if saved else "- (no start saves anything)"
    lines = [
        f"{path}: {result.scenarios:,} jobs over {result.days} days, "
        f"max_delay {format_duration(policy.max_delay)}, {energy:g} kWh each, "
        f"strategy {policy.strategy!r}",
        "",
        f"  {'run at once':<22}{result.baseline_g:>12.3f} gCO2eq",
        f"  {'ecoasync planner':<22}{result.scheduled_g:>12.3f} gCO2eq  "
        f"({_pct(-result.reduction_pct)})",
        f"  {'oracle (hindsight)':<22}{result.oracle_g:>12.3f} gCO2eq  "
        f"({_pct(-100 * (1 - result.oracle_g / result.baseline_g))})",
        "",
        f"  share of the oracle's savings  {capture}",
        f"  delay                          mean {human_duration(result.mean_delay_h * 3600)}, "
        f"median {human_duration(result.median_delay_h * 3600)}",
        f"  worse than running at once     {result.regressions:,} jobs",
    ]
    return "\n".join(lines)


def _herd_table(herd: Any) -> str:
    return "\n".join(
        [
            "",
            f"  {herd.jobs_per_slot} jobs per slot ({herd.jobs:,} jobs):",
            f"    {'':<14}{'peak jobs/slot':>15}{'busy slots':>12}{'gCO2eq':>12}",
            f"    {'jitter alone':<14}{herd.jitter_peak:>15}{herd.jitter_busy_slots:>12}"
            f"{herd.jitter_g:>12.3f}",
            f"    {'slot ledger':<14}{herd.ledger_peak:>15}{herd.ledger_busy_slots:>12}"
            f"{herd.ledger_g:>12.3f}",
            f"    the ledger keeps {herd.carbon_kept_pct:.1f} % of jitter's savings",
        ]
    )


def _plot(out: str, payload: dict[str, Any]) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "ecoasync simulate: --plot needs matplotlib: pip install 'ecoasync[plot]'",
            file=sys.stderr,
        )
        return 2
    from .._report._plot import daily_from_simulation, render

    render(
        out,
        kinds=["daily"],
        daily=daily_from_simulation(payload),
        daily_source="simulation",
        title="ecoasync simulate: daily reduction",
    )
    return 0
