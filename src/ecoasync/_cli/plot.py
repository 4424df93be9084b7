"""``ecoasync plot``: the grid and the work over a day, the daily reduction, per-model emissions.

Layer: edges (the command line); imports any layer below, as a user's program would.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._forecast import Slot
    from .._report._load import Row

__all__ = ["register"]

KINDS = ("timeline", "daily", "models")


def register(commands: Any) -> None:
    from .._report._load import FORMATS
    from .report import DEFAULT_PATH, parse_when

    parser = commands.add_parser(
        "plot",
        help="plot telemetry or simulate results to PNG or SVG (needs the 'plot' extra)",
        description="Draw, from telemetry: the grid intensity over a day with when each job was "
        "submitted and when it ran, the distribution of daily reductions, and emissions per "
        "model. From an 'ecoasync simulate --json' result: the daily reduction distribution.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help=f"telemetry files (default ./{DEFAULT_PATH}) or one simulate --json output",
    )
    parser.add_argument(
        "-o",
        "--out",
        default="ecoasync.png",
        help="output file, .png or .svg (default ecoasync.png)",
    )
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="panels to draw (repeatable; default: all that the input allows)",
    )
    parser.add_argument(
        "--day", type=parse_when, help="the day of the timeline (default: the busiest)"
    )
    parser.add_argument(
        "--trace",
        help="a trace CSV (from,to,intensity_forecast[,intensity_actual]) to draw the grid curve",
    )
    parser.add_argument("--since", type=parse_when, help="only sessions from this UTC time on")
    parser.add_argument("--until", type=parse_when, help="only sessions before this UTC time")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="telemetry input format")
    parser.add_argument("--title", help="a title over the figure")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .._report._load import TelemetryInputError, load
    from .._report._plot import (
        PlotInputError,
        daily_from_rows,
        daily_from_simulation,
        read_simulation,
        render,
    )
    from .._report._summary import breakdown, select
    from .report import DEFAULT_PATH, warn_about_input

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".svg"):
        print(f"ecoasync plot: --out must end in .png or .svg, got {args.out!r}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("ecoasync plot: needs matplotlib: pip install 'ecoasync[plot]'", file=sys.stderr)
        return 2
    kinds = args.kind or list(KINDS)
    paths = args.paths or [DEFAULT_PATH]
    trace = None
    if args.trace:
        from .._exceptions import ForecastDataError
        from ..providers import read_trace

        try:
            trace = list(read_trace(args.trace))
        except ForecastDataError as exc:
            print(f"ecoasync plot: --trace: {exc}", file=sys.stderr)
            return 2
    sim = read_simulation(paths[0]) if len(paths) == 1 and Path(paths[0]).is_file() else None
    try:
        if sim is not None and "points" in sim:
            return _frontier(str(out), sim, paths[0], args.title)
        if sim is not None:
            daily = daily_from_simulation(sim)
            if not daily:
                print(
                    f"ecoasync plot: {paths[0]}: a simulate result without daily figures",
                    file=sys.stderr,
                )
                return 2
            panels = render(
                str(out), kinds=["daily"], daily=daily, daily_source="simulation", title=args.title
            )
        else:
            loaded = load(paths, fmt=args.format)
            warn_about_input("ecoasync plot", loaded)
            ids = {r.session_id for r in loaded.rows}
            every = select(loaded.rows, args.since, args.until)
            top = [r for r in every if r.parent_id is None or r.parent_id not in ids]
            day = args.day.strftime("%Y-%m-%d") if args.day else None
            if day is not None and "timeline" in kinds and top:
                problem = _empty_day(day, top, trace)
                if problem:
                    print(f"ecoasync plot: {problem}", file=sys.stderr)
                    return 1
            panels = render(
                str(out),
                kinds=kinds,
                top=top,
                models=breakdown("model", top, every),
                daily=daily_from_rows(top),
                day=day,
                trace=trace,
                title=args.title,
            )
    except TelemetryInputError as exc:
        print(f"ecoasync plot: {exc}", file=sys.stderr)
        return 2
    except PlotInputError as exc:
        print(f"ecoasync plot: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({', '.join(panels)})")
    return 0


def _frontier(out: str, sim: dict[str, Any], path: str, title: str | None) -> int:
    """Draw the output of ``ecoasync simulate --frontier --json``."""
    from .._checks import is_number
    from .._report._plot_frontier import render_frontier

    points = sim["points"]
    keys = ("strategy", "min_improvement", "mean_delay_h", "oracle_capture_pct", "pareto")
    if not isinstance(points, list) or not all(
        isinstance(p, dict) and all(k in p for k in keys) for p in points
    ):
        print(
            f"ecoasync plot: {path}: a frontier result needs points with {', '.join(keys)} "
            "(the output of: ecoasync simulate --frontier --json)",
            file=sys.stderr,
        )
        return 2
    reduction = sim.get("oracle_reduction_pct")
    render_frontier(
        out,
        points,
        oracle_reduction_pct=float(reduction) if is_number(reduction) else 0.0,
        title=title or f"ecoasync simulate --frontier: {Path(path).name}",
    )
    print(f"wrote {out} (frontier)")
    return 0


def _empty_day(day: str, top: Sequence[Row], trace: Sequence[Slot] | None) -> str | None:
    """Why the timeline of ``day`` would be empty (no session submitted then and no trace
    over it), or None if it has something to draw."""
    if any(r.submitted_at.strftime("%Y-%m-%d") == day for r in top):
        return None
    from datetime import timedelta

    from .._report._load import parse_time

    start = parse_time(day)
    end = start + timedelta(days=1)
    if trace and any(s.start < end and s.end > start for s in trace):
        return None
    first = min(r.submitted_at for r in top).strftime("%Y-%m-%d")
    last = max(r.submitted_at for r in top).strftime("%Y-%m-%d")
    return (
        f"--day {day}: no session was submitted that day (the telemetry runs from {first} to "
        f"{last}); pick a day in that range, or leave --day out for the busiest day"
    )
