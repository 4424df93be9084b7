"""``ecoasync trace``: ``record`` a provider's forecasts and actuals into a trace CSV (``synth``
and ``errors``, in :mod:`._trace_synth`, add a synthetic forecast to a CSV of actuals and
measure a trace's forecast errors).

Layer: edges (the command line); imports any layer below, as a user's program would.

The CSV is what ``CsvForecastProvider`` and ``ecoasync simulate`` read:
``from,to,intensity_forecast,intensity_actual,index`` with times like ``2026-02-14T00:30Z``.
It is written chunk by chunk (the UK API serves at most 14 days per request) and flushed as it
goes; running the same command again resumes after the last complete row.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._exceptions import ForecastUnavailable
from .._forecast import as_utc
from ..providers._csv import parse_trace_time
from ._trace_synth import register_synth

__all__ = ["HEADER", "Row", "register", "run_record"]

HEADER = "from,to,intensity_forecast,intensity_actual,index"
PROVIDERS = ("uk", "electricitymaps")


@dataclass(frozen=True, slots=True)
class Row:
    start: datetime
    end: datetime
    forecast: float
    actual: float | None
    index: str | None

    def line(self) -> str:
        actual = "" if self.actual is None else f"{self.actual:g}"
        return f"{_t(self.start)},{_t(self.end)},{self.forecast:g},{actual},{_field(self.index)}\n"


def _field(text: str | None) -> str:
    """Text from the API as one CSV field on one line: a control character (a newline would
    start a row of the API's making) becomes a space; a comma or a quote is quoted as CSV does."""
    if not text:
        return ""
    clean = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in text)
    if "," in clean or '"' in clean:
        return '"' + clean.replace('"', '""') + '"'
    return clean


def _t(when: datetime) -> str:
    return f"{when:%Y-%m-%dT%H:%M}Z"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "trace",
        help="record, synthesize or measure grid traces (forecast and actual CSVs)",
        description="Work with grid traces (the CSV files CsvForecastProvider and simulate read).",
    )
    sub = parser.add_subparsers(title="subcommands", dest="trace_command", metavar="SUBCOMMAND")
    record = sub.add_parser(
        "record",
        help="fetch a provider's past forecasts and actuals into a CSV (resumable)",
        description="Fetch [--from, --to) in chunks and append it to --out as "
        f"'{HEADER}'. Run the same command again to resume after the last complete row.",
    )
    record.add_argument("--provider", choices=PROVIDERS, default="uk", help="default: uk")
    record.add_argument(
        "--from", dest="start", required=True, help="start, UTC: 2026-02-14 or 2026-02-14T06:00Z"
    )
    record.add_argument(
        "--to", dest="end", required=True, help="end (exclusive), UTC: 2026-03-15 or a time"
    )
    record.add_argument("--out", required=True, type=Path, help="the CSV to write or resume")
    record.add_argument("--base-url", default=None, help="the API root (proxies, mirrors, tests)")
    record.add_argument("--region", type=int, default=None, help="uk: DNO region id 1-17")
    record.add_argument("--postcode", default=None, help="uk: outward postcode, e.g. RG10")
    record.add_argument(
        "--zone", default=None, help="electricitymaps: zone or cloud region (aws:eu-west-2)"
    )
    record.add_argument(
        "--chunk-days", type=int, default=None, help="days per request (uk: at most 14)"
    )
    record.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    record.add_argument(
        "--attempts", type=int, default=5, help="tries per request, with backoff (default 5)"
    )
    record.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal, lines otherwise (default auto)",
    )
    record.set_defaults(func=_record_main)
    register_synth(sub)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _when(text: str, option: str) -> datetime:
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parse_trace_time(value)
    except ValueError:
        raise ValueError(
            f"{option} must be a date (2026-02-14) or a UTC time (2026-02-14T06:00Z), got {text!r}"
        ) from None


def _record_main(args: argparse.Namespace) -> int:
    try:
        start, end = _when(args.start, "--from"), _when(args.end, "--to")
        if end <= start:
            raise ValueError(f"--to must be after --from, got {args.start} .. {args.end}")
        chunk_days = args.chunk_days or (14 if args.provider == "uk" else 10)
        if not 1 <= chunk_days <= (14 if args.provider == "uk" else 100):
            raise ValueError(f"--chunk-days must be between 1 and 14 for uk, got {chunk_days}")
        fetch = _fetcher(args)
    except ValueError as exc:
        print(f"ecoasync trace record: {exc}", file=sys.stderr)
        return 2
    mode = args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    return anyio.run(
        run_record, fetch, args.out, start, end, timedelta(days=chunk_days), mode, sys.stderr
    )


Fetch = Callable[[datetime, datetime], Any]


def _fetcher(args: argparse.Namespace) -> Any:
    """The provider as an async ``fetch(start, end) -> list[Row]`` with ``aclose()``."""
    from ..providers import Retry

    retry = Retry(attempts=args.attempts, max_retry_after=300)
    if args.provider == "uk":
        from ..providers import UKCarbonIntensityProvider

        options: dict[str, Any] = {"timeout": args.timeout, "region": args.region, "retry": retry}
        if args.postcode:
            options["postcode"] = args.postcode
        if args.base_url:
            options["base_url"] = args.base_url
        uk = UKCarbonIntensityProvider(**options)

        async def fetch_uk(a: datetime, b: datetime) -> list[Row]:
            return [
                Row(r.start, r.end, r.forecast, r.actual, r.index)
                for r in await uk.intensity_rows(a, b)
                if r.forecast is not None
            ]

        fetch_uk.aclose = uk.aclose  # type: ignore[attr-defined]
        return fetch_uk
    from ..providers import ElectricityMapsProvider

    if not args.zone:
        raise ValueError("--zone is needed for electricitymaps (e.g. --zone DE or aws:eu-west-2)")
    em_options: dict[str, Any] = {"timeout": args.timeout, "retry": retry}
    if args.base_url:
        em_options["base_url"] = args.base_url
    em = ElectricityMapsProvider(args.zone, **em_options)

    async def fetch_em(a: datetime, b: datetime) -> list[Row]:
        history = await em.history(a, b)
        return [Row(s.start, s.end, s.forecast, s.actual, None) for s in history]

    fetch_em.aclose = em.aclose  # type: ignore[attr-defined]
    return fetch_em


def resume_point(path: Path) -> datetime | None:
    """The ``to`` of the last complete row of ``path`` (a partial last line is cut off).

    Blocking; call it from a worker thread. Raises ValueError if the file is not a trace.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            handle.truncate(cut)  # a run stopped mid-line: drop the partial row
            data = data[:cut]
    lines = data.decode("utf-8-sig").splitlines()
    if not lines:
        return None
    if lines[0].strip() != HEADER:
        raise ValueError(
            f"{path} exists and is not a trace written by this command (header {lines[0]!r})"
        )
    if len(lines) == 1:
        return None
    last = lines[-1].split(",")
    try:
        return parse_trace_time(last[1])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: cannot read the last row {lines[-1]!r}") from None


class _Progress:
    """A bar on a terminal (rich when installed), plain lines otherwise."""

    def __init__(self, mode: str, stream: TextIO, total: float, done: float) -> None:
        self.mode = mode
        self.stream = stream
        self.total = max(total, 1e-9)
        self.rich: Any = None
        if mode == "bar":
            try:
                from rich.progress import Progress

                self.rich = Progress(transient=False, console=_console(stream))
                self.rich.start()
                self.task = self.rich.add_task("recording", total=self.total, completed=done)
            except ImportError:
                self.rich = None

    def update(self, done: float, at: datetime, rows: int) -> None:
        share = min(done / self.total, 1.0)
        if self.mode == "none":
            return
        if self.mode == "lines":
            print(f"trace: up to {_t(at)}, {rows} rows ({share:.0%})", file=self.stream, flush=True)
        elif self.rich is not None:
            self.rich.update(self.task, completed=done, description=f"up to {_t(at)}")
        else:
            width = 30
            filled = round(share * width)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {share:4.0%} up to {_t(at)}, {rows} rows")
            self.stream.flush()

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()
        elif self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()


def _console(stream: TextIO) -> Any:
    from rich.console import Console

    return Console(file=stream)


async def run_record(
    fetch: Any,
    out: Path,
    start: datetime,
    end: datetime,
    chunk: timedelta,
    progress: str = "lines",
    stream: TextIO = sys.stderr,
) -> int:
    """Record ``[start, end)`` into ``out`` in chunks, resuming after its last row."""
    start, end = as_utc(start), as_utc(end)
    try:
        resumed = await anyio.to_thread.run_sync(resume_point, out)
    except ValueError as exc:
        print(f"ecoasync trace record: {exc}", file=stream)
        return 2
    at = max(start, resumed) if resumed is not None else start
    if at >= end:
        print(f"trace: {out} already covers up to {_t(end)}; nothing to do", file=stream)
        await fetch.aclose()
        return 0
    if resumed is not None and resumed > start:
        print(f"trace: resuming {out} at {_t(at)}", file=stream)
    bar = _Progress(progress, stream, (end - start).total_seconds(), (at - start).total_seconds())
    rows = 0
    try:
        new = resumed is None
        async with await anyio.open_file(out, "a", encoding="utf-8", newline="") as handle:
            if new:
                await handle.write(HEADER + "\n")
            while at < end:
                upto = min(at + chunk, end)
                try:
                    got = [r for r in await fetch(at, upto) if at <= r.start < upto]
                except ForecastUnavailable as exc:
                    bar.close()
                    print(
                        f"ecoasync trace record: {exc}\n{rows} rows written to {out} up to {_t(at)}; "
                        "run the same command again to resume",
                        file=stream,
                    )
                    return 1
                await handle.write("".join(r.line() for r in got))
                await handle.flush()
                await anyio.to_thread.run_sync(os.fsync, handle.wrapped.fileno())
                rows += len(got)
                at = upto
                bar.update((at - start).total_seconds(), at, rows)
    finally:
        await fetch.aclose()
    bar.close()
    print(f"trace: wrote {rows} rows to {out} ({_t(start)} .. {_t(end)})", file=stream)
    return 0
