"""``ecoasync report``: what LLM work emitted, what waiting avoided, and for whom."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._report._load import Loaded

__all__ = ["parse_when", "register", "warn_about_input"]

DEFAULT_PATH = "ecoasync.jsonl"


def register(commands: Any) -> None:
    from .._report._load import FORMATS
    from .._report._summary import BREAKDOWNS

    parser = commands.add_parser(
        "report",
        help="summarise telemetry: energy, gCO2eq emitted/avoided, breakdowns, ESG export",
        description="Read telemetry written by JsonlSink (or llm-eco-tracker's, with --format) "
        "and report sessions, LLM calls, energy, gCO2eq emitted, baseline and avoided, delays, "
        "downgrades and budget trips. Malformed lines are skipped and counted.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help=f"telemetry files (default ./{DEFAULT_PATH}); rotated files too, e.g. {DEFAULT_PATH}*",
    )
    parser.add_argument("--by", choices=BREAKDOWNS, help="add a breakdown")
    parser.add_argument(
        "--since", type=parse_when, help="only sessions from this UTC date or time on (2026-03-01)"
    )
    parser.add_argument(
        "--until", type=parse_when, help="only sessions before this UTC date or time (exclusive)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--esg",
        choices=("csv", "json"),
        help="ESG export: per-period totals (kgCO2eq, tCO2eq), GHG Protocol Scope 3 Category 1",
    )
    parser.add_argument(
        "--period",
        action="append",
        metavar="PERIOD",
        help="with --esg: 2026, 2026-Q1 or 2026-03 (repeatable; default: each quarter in the data)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="input format: ecoasync (JsonlSink), llm-eco-tracker (its JSONL or logger lines), "
        "auto (per line; default)",
    )
    parser.add_argument("--plain", action="store_true", help="plain text even in a terminal")
    parser.set_defaults(func=_main)


def parse_when(text: str) -> datetime:
    """``2026-03-01`` or an ISO 8601 time; naive means UTC."""
    from .._report._load import parse_time

    try:
        return parse_time(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-03-01 or a time like 2026-03-01T12:00Z, got {text!r}"
        ) from None


def _main(args: argparse.Namespace) -> int:
    from .._report._esg import esg_csv, esg_records, parse_period, periods_in
    from .._report._load import TelemetryInputError, load
    from .._report._render import render_report, use_rich
    from .._report._summary import select, summary

    paths = args.paths or [DEFAULT_PATH]
    if args.period and not args.esg:
        print("ecoasync report: --period needs --esg csv|json", file=sys.stderr)
        return 2
    if args.esg and args.by:
        print("ecoasync report: --by does not apply to --esg", file=sys.stderr)
        return 2
    for period in args.period or ():
        try:
            parse_period(period)
        except ValueError as exc:
            print(f"ecoasync report: --period: {exc}", file=sys.stderr)
            return 2
    try:
        loaded = load(paths, fmt=args.format)
    except TelemetryInputError as exc:
        missing = not args.paths and not os.path.exists(DEFAULT_PATH)
        hint = " (write it with ecoasync.sinks.JsonlSink, or pass the file's path)"
        print(f"ecoasync report: {exc}{hint if missing else ''}", file=sys.stderr)
        return 2
    warn_about_input("ecoasync report", loaded)
    if args.esg:
        rows = select(loaded.rows, args.since, args.until)
        periods = args.period or periods_in(rows)
        records = esg_records(loaded, periods)
        if args.esg == "json":
            doc = {
                "periods": records,
                "skipped_lines": loaded.skipped,
                "first_bad_line": loaded.first_bad,
                "duplicate_sessions": loaded.duplicate_sessions,
                "duplicate_calls": loaded.duplicate_calls,
            }
            json.dump(doc, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(esg_csv(records))
        return 0
    report = summary(loaded, since=args.since, until=args.until, by=args.by)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    render_report(report, sys.stdout, rich=use_rich(sys.stdout, args.plain))
    return 0


def warn_about_input(prog: str, loaded: Loaded) -> None:
    """Tell stderr what reading the input dropped: malformed lines, records read twice."""
    from .._report._summary import duplicates_note

    if loaded.skipped:
        print(
            f"{prog}: skipped {loaded.skipped} malformed line(s); the first at {loaded.first_bad}",
            file=sys.stderr,
        )
    if loaded.duplicate_sessions or loaded.duplicate_calls:
        note = duplicates_note(loaded.duplicate_sessions, loaded.duplicate_calls)
        print(f"{prog}: {note}", file=sys.stderr)
