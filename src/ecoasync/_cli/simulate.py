"""``ecoasync simulate``: replay a trace and show what carbon-aware scheduling would have done."""

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
        default=STRATEGIES[0],
        help=f"the planning strategy (default {STRATEGIES[0]}; 'lowest' is the EcoTracker rule)",
    )
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="wait only for at least this fractional gain (default 0)",
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
        "--plot", metavar="OUT", help="draw the daily reductions to OUT (.png/.svg; 'plot' extra)"
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
    from .._policy import Policy
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
            strategy=args.policy,
            min_improvement=args.min_improvement,
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
