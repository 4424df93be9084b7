"""``ecoasync trace synth`` (a synthetic forecast added to a CSV of actuals, from
:mod:`ecoasync._synth`'s error model) and ``ecoasync trace errors`` (that model fitted to a
trace with both columns).

Layer: edges (the command line); imports any layer below, as a user's program would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._durations import format_duration
from ..providers._csv import parse_trace_time

__all__ = ["read_actuals", "register_synth"]


def register_synth(sub: Any) -> None:
    from .._synth import UK_ERRORS

    d = UK_ERRORS
    synth = sub.add_parser(
        "synth",
        help="add a synthetic forecast (a seeded error model) to a CSV of actuals",
        description="Read a CSV of actuals (from,to,intensity_actual, as Electricity Maps' "
        "exports converted; or a trace with intensity_forecast, whose forecast is replaced), "
        "equal slots with no gaps, and write a trace with a forecast made from the actuals: "
        "forecast(t) = actual(t - offset) + bias + a daily sinusoid + an AR(1) error. "
        "Percentages are of the series' mean actual. The defaults are the UK forecast's "
        "measured errors (ecoasync trace errors).",
    )
    synth.add_argument("input", type=Path, metavar="IN.csv", help="the actuals to read")
    synth.add_argument("--out", required=True, type=Path, help="the trace CSV to write")
    synth.add_argument(
        "--sigma",
        type=_pct,
        default=d.sigma_pct,
        help=f"the random error's standard deviation, %% of the mean (default {d.sigma_pct:g})",
    )
    synth.add_argument(
        "--rho",
        type=float,
        default=d.rho,
        help=f"the random error's correlation one hour apart, 0 <= rho < 1 (default {d.rho:g})",
    )
    synth.add_argument(
        "--bias",
        type=_pct,
        default=d.bias_pct,
        help=f"added to every slot, %% of the mean; negative: too low (default {d.bias_pct:g})",
    )
    synth.add_argument(
        "--offset",
        default=format_duration(d.lag),
        help="how late the forecast runs: the forecast at t reads the actual at t - OFFSET; "
        f"negative (-30m) runs early (default {format_duration(d.lag)})",
    )
    synth.add_argument(
        "--time-of-day",
        type=_pct,
        default=d.time_of_day_pct,
        help=f"amplitude of a daily-periodic error, %% of the mean (default {d.time_of_day_pct:g})",
    )
    synth.add_argument(
        "--time-of-day-peak",
        type=float,
        default=d.time_of_day_peak,
        metavar="HOUR",
        help=f"the UTC hour where that error is largest (default {d.time_of_day_peak:g})",
    )
    synth.add_argument("--seed", type=int, default=0, help="fixes the random error (default 0)")
    synth.set_defaults(func=_synth_main)
    errors = sub.add_parser(
        "errors",
        help="measure a trace's forecast errors (the parameters trace synth takes)",
        description="Fit trace synth's error model to a trace with both intensity_forecast and "
        "intensity_actual: the timing offset, the bias, the time-of-day error, and the spread "
        "and one-hour correlation of what is left.",
    )
    errors.add_argument("input", type=Path, metavar="TRACE.csv")
    errors.add_argument("--json", action="store_true", help="print one JSON object")
    errors.set_defaults(func=_errors_main)


def _pct(text: str) -> float:
    """A percentage option: ``10`` or ``10%``."""
    value = text.strip()
    return float(value[:-1] if value.endswith("%") else value)


def read_actuals(path: Path) -> Any:
    """A CSV of actuals as a ``Forecast`` (each slot's forecast set to its actual, to be
    replaced): ``from,to,intensity_actual`` (more columns are ignored), or a trace with an
    ``intensity_forecast`` column too, read by ``read_trace``. Blocking (the CLI's own I/O).
    Raises ``ValueError`` (``ForecastDataError``) naming the file and line of a bad row."""
    import csv

    from .._exceptions import ForecastDataError
    from .._forecast import Forecast, Slot
    from ..providers import read_trace

    source = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if "intensity_forecast" in header:
                return read_trace(path)
            missing = [c for c in ("from", "to", "intensity_actual") if c not in header]
            if missing:
                raise ForecastDataError(
                    f"{source}:1: missing column(s) {', '.join(missing)}; actuals need "
                    f"from,to,intensity_actual, got {','.join(header) or 'nothing'}",
                    source=source,
                    line=1,
                )
            reader.fieldnames = header
            slots = []
            for row in reader:
                try:
                    value = float((row["intensity_actual"] or "").strip())
                    start = parse_trace_time(row["from"] or "")
                    slots.append(Slot(start, parse_trace_time(row["to"] or ""), value, value))
                except (TypeError, ValueError) as exc:
                    raise ForecastDataError(
                        f"{source}:{reader.line_num}: bad row ({exc})",
                        source=source,
                        line=reader.line_num,
                    ) from None
    except OSError as exc:
        raise ForecastDataError(
            f"{source}: cannot read it ({exc.strerror})", source=source
        ) from None
    try:
        return Forecast(slots, provider=f"synth:{path.name}")
    except ValueError as exc:
        raise ForecastDataError(f"{source}: {exc}", source=source) from None


def _synth_main(args: argparse.Namespace) -> int:
    from .._exceptions import PolicyError
    from .._synth import ErrorModel, synthesize
    from .trace import HEADER, Row

    try:
        model = ErrorModel(
            sigma_pct=args.sigma,
            rho=args.rho,
            bias_pct=args.bias,
            offset=args.offset,
            time_of_day_pct=args.time_of_day,
            time_of_day_peak=args.time_of_day_peak,
            seed=args.seed,
        )
    except PolicyError as exc:
        flag = "--" + {
            "sigma_pct": "sigma",
            "bias_pct": "bias",
            "time_of_day_pct": "time-of-day",
        }.get(exc.field, exc.field.replace("_", "-"))
        print(f"ecoasync trace synth: {flag}: {exc}", file=sys.stderr)
        return 2
    try:
        trace = synthesize(read_actuals(args.input), model)
    except ValueError as exc:
        print(f"ecoasync trace synth: {exc}", file=sys.stderr)
        return 2
    text = "".join(Row(s.start, s.end, round(s.forecast, 2), s.actual, None).line() for s in trace)
    try:
        args.out.write_text(HEADER + "\n" + text, encoding="utf-8")
    except OSError as exc:
        print(f"ecoasync trace synth: cannot write {args.out} ({exc.strerror})", file=sys.stderr)
        return 2
    print(
        f"trace: wrote {len(trace)} rows to {args.out} ({trace.slots[0].start:%Y-%m-%dT%H:%M}Z .. "
        f"{trace.slots[-1].end:%Y-%m-%dT%H:%M}Z; sigma {model.sigma_pct:g} %, rho {model.rho:g}, "
        f"bias {model.bias_pct:g} %, offset {format_duration(model.lag)}, "
        f"time of day {model.time_of_day_pct:g} % at {model.time_of_day_peak:g}h, "
        f"seed {model.seed})",
        file=sys.stderr,
    )
    return 0


def _errors_main(args: argparse.Namespace) -> int:
    import json

    from .._exceptions import ForecastDataError
    from .._synth import measure
    from ..providers import read_trace

    try:
        model = measure(read_trace(args.input))
    except (ForecastDataError, ValueError) as exc:
        print(f"ecoasync trace errors: {exc}", file=sys.stderr)
        return 2
    figures = model.to_json()
    figures.pop("seed")
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.input.name}: forecast errors (percentages of the mean actual)")
    print(f"  offset           {figures['offset']} ({figures['offset_minutes']:g} min late)")
    print(f"  bias             {model.bias_pct:+.2f} %")
    print(
        f"  time of day      {model.time_of_day_pct:.2f} % peaking at {model.time_of_day_peak:.1f}h UTC"
    )
    print(f"  sigma            {model.sigma_pct:.2f} %")
    print(f"  rho (1 h apart)  {model.rho:.3f}")
    print(
        f"as trace synth flags: --sigma {model.sigma_pct:.2f} --rho {model.rho:.2f} "
        f"--bias {model.bias_pct:.2f} --offset {figures['offset']} "
        f"--time-of-day {model.time_of_day_pct:.2f} --time-of-day-peak {model.time_of_day_peak:.1f}"
    )
    return 0
