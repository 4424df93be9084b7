"""Text for people: rich tables in a terminal, plain aligned text otherwise.

Layer: edges (reports over recorded telemetry); imports values only (checks, exceptions,
durations) and the report's own modules: a report reads files, never a live session.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._summary import EQUIVALENCES

__all__ = ["Table", "fmt_g", "fmt_kwh", "render_report", "use_rich"]


_CONTROLS = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}
"""Control characters (ESC, newlines, C1, bidirectional overrides) and how they are shown."""


def printable(text: str) -> str:
    """``text`` (a tag, a model, a session name: anything telemetry carried) with its control
    characters shown as escapes, so it cannot drive the terminal or break the layout."""
    return text.translate(_CONTROLS)


def use_rich(stream: TextIO, plain: bool) -> bool:
    """Rich output only on a terminal, when rich is installed and not refused."""
    if plain or not stream.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def fmt_g(grams: float) -> str:
    if abs(grams) >= 1e6:
        return f"{grams / 1e6:,.3f} t"
    if abs(grams) >= 1e3:
        return f"{grams / 1e3:,.3f} kg"
    return f"{grams:,.3f} g"


def fmt_kwh(kwh: float) -> str:
    if abs(kwh) >= 1:
        return f"{kwh:,.3f} kWh"
    return f"{kwh * 1e3:,.3f} Wh"


def fmt_l(litres: float) -> str:
    return f"{litres:,.3f} L" if abs(litres) >= 1 else f"{litres * 1e3:,.3f} mL"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def fmt_h(seconds: float) -> str:
    from .._durations import human_duration

    return human_duration(seconds)


class Table:
    """A titled table; ``right`` marks the columns to right-align."""

    def __init__(self, title: str, headers: Sequence[str], right: Sequence[int] = ()) -> None:
        self.title = title
        self.headers = list(headers)
        self.right = set(right)
        self.rows: list[list[str]] = []

    def add(self, *cells: object) -> None:
        self.rows.append([printable(str(c)) for c in cells])

    def plain(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            out = [
                c.rjust(w) if i in self.right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return ("  " + "  ".join(out)).rstrip()

        parts = [self.title]
        if any(self.headers):
            parts.append(line(self.headers))
            parts.append("  " + "  ".join("-" * w for w in widths))
        parts.extend(line(r) for r in self.rows)
        return "\n".join(parts)

    def rich(self) -> Any:
        from rich.table import Table as RichTable
        from rich.text import Text

        table = RichTable(title=self.title, title_justify="left", show_header=any(self.headers))
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="right" if i in self.right else "left")
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))  # text, never markup ("[/bold]")
        return table


def _summary_table(s: dict[str, Any]) -> Table:
    t = Table("Summary", ["", ""])
    statuses = ", ".join(f"{k} {v}" for k, v in s["statuses"].items())
    t.add("Sessions", f"{s['sessions']:,}" + (f" ({statuses})" if statuses else ""))
    if s["nested_sessions"]:
        t.add("Nested sessions", f"{s['nested_sessions']:,} (within the sessions above)")
    t.add("LLM calls", f"{s['calls']:,}")
    t.add(
        "Energy",
        f"{fmt_kwh(s['energy_kwh'])} (range {fmt_kwh(s['energy_kwh_min'])} to "
        f"{fmt_kwh(s['energy_kwh_max'])})",
    )
    t.add("Emitted (usage)", f"{fmt_g(s['emitted_g'])} CO2eq")
    t.add("Baseline (run at once)", f"{fmt_g(s['baseline_g'])} CO2eq")
    t.add("Avoided by waiting", f"{fmt_g(s['avoided_g'])} CO2eq ({fmt_pct(s['avoided_pct'])})")
    t.add("Embodied (apart)", f"{fmt_g(s['embodied_g'])} CO2eq")
    if s.get("water_l"):
        t.add("Water (usage)", fmt_l(s["water_l"]))
    t.add("Average delay", f"{fmt_h(s['mean_delay_s'])} (max {fmt_h(s['max_delay_s'])})")
    if s.get("queued_jobs"):
        t.add(
            "Held by a job queue",
            f"{s['queued_jobs']} (started {s['mean_late_s']:.1f} s after plan on average)",
        )
    t.add("Downgrades", f"{s['downgrades']:,}")
    t.add("Budget trips", f"{s['budget_trips']:,}")
    t.add("Signal", ", ".join(s["signals"]) or "-")
    return t


def _signal_table(s: dict[str, Any]) -> Table:
    t = Table(
        "Per signal (average and marginal figures do not add up)",
        ["signal", "sessions", "energy", "emitted", "baseline", "avoided"],
        right=[1, 2, 3, 4, 5],
    )
    for kind, v in s["by_signal"].items():
        t.add(
            kind,
            f"{v['sessions']:,}",
            fmt_kwh(v["energy_kwh"]),
            fmt_g(v["emitted_g"]),
            fmt_g(v["baseline_g"]),
            fmt_g(v["avoided_g"]),
        )
    return t


def _equivalence_table(s: dict[str, Any]) -> Table:
    t = Table("Equivalences", ["", "of emitted", "of avoided"], right=[1, 2])
    for e in EQUIVALENCES:
        t.add(
            e.unit,
            f"{s['equivalences']['emitted'][e.key]:,.2f}",
            f"{s['equivalences']['avoided'][e.key]:,.2f}",
        )
    return t


def _breakdown_table(s: dict[str, Any]) -> Table:
    by = s["by"]
    rows = s[f"by_{by}"]
    if by in ("model", "tag"):
        t = Table(
            f"By {by}",
            [by, "sessions", "calls", "energy", "emitted", "share"],
            right=[1, 2, 3, 4, 5],
        )
        for r in rows:
            name = r[by] + ("" if r.get("known", True) else " (unknown: 0 energy)")
            t.add(
                name,
                f"{r['sessions']:,}",
                f"{r['calls']:,}",
                fmt_kwh(r["energy_kwh"]),
                fmt_g(r["emitted_g"]),
                fmt_pct(r["share_pct"]),
            )
        return t
    if by == "route":  # where the carbon (and water) went, with its basis
        t = Table(
            "By route (baseline: at once, at home)",
            [
                "route",
                "sessions",
                "calls",
                "emitted",
                "baseline",
                "avoided",
                "water",
                "share",
                "basis",
            ],
            right=[1, 2, 3, 4, 5, 6, 7],
        )
        for r in rows:
            t.add(
                r["route"],
                f"{r['sessions']:,}",
                f"{r['calls']:,}",
                fmt_g(r["emitted_g"]),
                fmt_g(r["baseline_g"]),
                fmt_g(r["avoided_g"]),
                fmt_l(r["water_l"]),
                fmt_pct(r["share_pct"]),
                ", ".join(r["basis"]),
            )
        return t
    t = Table(
        f"By {by}",
        [by, "sessions", "calls", "energy", "emitted", "baseline", "avoided", "delay", "share"],
        right=[1, 2, 3, 4, 5, 6, 7, 8],
    )
    for r in rows:
        t.add(
            r[by],
            f"{r['sessions']:,}",
            f"{r['calls']:,}",
            fmt_kwh(r["energy_kwh"]),
            fmt_g(r["emitted_g"]),
            fmt_g(r["baseline_g"]),
            fmt_g(r["avoided_g"]),
            fmt_h(r["mean_delay_s"]),
            fmt_pct(r["share_pct"]),
        )
    return t


def _header(s: dict[str, Any]) -> str:
    span = ""
    if s["first_at"]:
        span = (
            f", {s['first_at'][:16].replace('T', ' ')} to {s['last_at'][:16].replace('T', ' ')} UTC"
        )
    files = len(s["files"])
    return f"ecoasync report: {files} file{'s' if files != 1 else ''}{span}"


def _nothing(s: dict[str, Any]) -> str:
    """What to say when no session is counted: about the range only if one was given."""
    since, until = s["since"], s["until"]
    if since and until:
        return f"no sessions from {since} until {until}"
    if since or until:
        return f"no sessions {'from ' + since + ' on' if since else 'before ' + until}"
    return "no completed sessions in the input"


def _footer(s: dict[str, Any]) -> list[str]:
    lines = [f"  ! {flag}" for flag in s["flags"]]
    lines.append("  Equivalence constants:")
    lines.extend(
        f"    1 {c['unit']} = {c['g_per_unit']:.1f} gCO2eq: {c['source']}"
        for c in s["equivalences"]["constants"]
    )
    return lines


def render_report(s: dict[str, Any], stream: TextIO | None = None, *, rich: bool = False) -> None:
    """Print the report ``s`` (from :func:`summary`)."""
    out = stream or sys.stdout
    tables = [_summary_table(s)]
    if s["mixed_signals"] or len(s["by_signal"]) > 1:
        tables.append(_signal_table(s))
    tables.append(_equivalence_table(s))
    if s.get("by"):
        tables.append(_breakdown_table(s))
    if rich:
        from rich.console import Console

        console = Console(file=out)
        console.print(printable(_header(s)), style="bold", markup=False, highlight=False)
        if s["sessions"] == 0:
            console.print(f"  {_nothing(s)}", highlight=False, markup=False)
        for t in tables:
            console.print(t.rich())
        for line in _footer(s):
            console.print(printable(line), highlight=False, markup=False)
        return
    print(printable(_header(s)), file=out)
    if s["sessions"] == 0:
        print(f"  {_nothing(s)}", file=out)
    for t in tables:
        print(file=out)
        print(t.plain(), file=out)
    print(file=out)
    for line in _footer(s):
        print(printable(line), file=out)
