"""Figures for ``ecoasync plot`` (matplotlib, Agg backend; the ``plot`` extra).

Text that comes from the user or the telemetry (model names, the signal, the title) goes
through :func:`literal`: matplotlib reads text between two ``$`` as mathtext, so a model
named ``cost $5 run_$x$`` would be typeset (or fail to draw) instead of shown as written.

Layer: edges. Imports values (checks, exceptions) and the report's rows; matplotlib lazily.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .._checks import is_number
from .._exceptions import PlotInputError
from ._rows import Row, parse_time

__all__ = [
    "PlotInputError",
    "daily_from_rows",
    "daily_from_simulation",
    "literal",
    "read_simulation",
    "render",
]


def literal(text: object) -> str:
    """``text`` as matplotlib shows it as written: every ``$`` escaped, so none of it is read
    as mathtext."""
    return str(text).replace("$", r"\$")


def read_simulation(path: str) -> dict[str, Any] | None:
    """The object printed by ``ecoasync simulate --json`` (or ``--frontier --json``), or None
    if ``path`` is not one (telemetry is many lines; a simulation is one JSON object with
    ``daily`` or ``reduction_pct``, a frontier one with ``points``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if (
        isinstance(data, dict)
        and ("daily" in data or "reduction_pct" in data or "points" in data)
        and "event" not in data
    ):
        return data
    return None


def _num(value: object) -> float | None:
    if not is_number(value):
        return None
    return float(value)


def daily_from_simulation(sim: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(day, reduction %) per day from a simulation's ``daily`` figures.

    Tolerant of the shape: ``daily`` may be a list of objects or an object keyed by day;
    each day gives ``reduction_pct`` or ``baseline_g`` with ``scheduled_g`` (or
    ``emitted_g``); its label is ``day``/``date`` or the key.
    """
    daily = sim.get("daily")
    items: list[tuple[str, Any]] = []
    if isinstance(daily, Mapping):
        items = [(str(k), v) for k, v in daily.items()]
    elif isinstance(daily, list):
        for i, entry in enumerate(daily):
            label = entry.get("day") or entry.get("date") if isinstance(entry, Mapping) else None
            items.append((str(label or i), entry))
    out = []
    for label, entry in items:
        value: float | None = None
        if isinstance(entry, Mapping):
            value = _num(entry.get("reduction_pct"))
            if value is None:
                base = _num(entry.get("baseline_g"))
                done = _num(entry.get("scheduled_g", entry.get("emitted_g")))
                if base and done is not None:
                    value = 100.0 * (1.0 - done / base)
        else:
            value = _num(entry)
        if value is not None:
            out.append((label, value))
    return out


def daily_from_rows(top: Sequence[Row]) -> list[tuple[str, float]]:
    """(day, reduction %) per day of telemetry: 1 - emitted/baseline of the day's sessions."""
    base: dict[str, float] = defaultdict(float)
    emitted: dict[str, float] = defaultdict(float)
    for r in top:
        day = r.when.strftime("%Y-%m-%d")
        base[day] += r.baseline_g
        emitted[day] += r.emitted_g
    return [(d, 100.0 * (1 - emitted[d] / base[d])) for d in sorted(base) if base[d] > 0]


def busiest_day(top: Sequence[Row]) -> str | None:
    counts = Counter(r.submitted_at.strftime("%Y-%m-%d") for r in top)
    return max(sorted(counts), key=lambda d: counts[d]) if counts else None


def _timeline(ax: Any, top: Sequence[Row], day: str, trace: Sequence[Any] | None) -> None:
    start = parse_time(day)
    end = start + timedelta(days=1)
    rows = [r for r in top if start <= r.submitted_at < end]
    if trace:
        slots = [s for s in trace if s.end > start and s.start < end + timedelta(hours=12)]
        xs = [s.start for s in slots]
        ax.step(
            xs,
            [s.forecast for s in slots],
            where="post",
            color="0.55",
            lw=1.2,
            label="grid forecast",
        )
        actual = [(s.start, s.actual) for s in slots if s.actual is not None]
        if actual:
            ax.step(
                *zip(*actual, strict=True), where="post", color="black", lw=1.2, label="grid actual"
            )
    else:
        points = sorted(
            [
                (r.submitted_at, r.baseline_intensity)
                for r in rows
                if r.baseline_intensity is not None
            ]
            + [
                (r.started_at, r.run_intensity)
                for r in rows
                if r.started_at is not None and r.run_intensity is not None
            ]
        )
        if points:
            ax.plot(*zip(*points, strict=True), color="0.6", lw=1, label="grid intensity (sampled)")
    for i, r in enumerate(rows):
        if r.baseline_intensity is None:
            continue
        label = i == 0
        ax.scatter(
            [r.submitted_at],
            [r.baseline_intensity],
            marker="o",
            facecolors="none",
            edgecolors="tab:red",
            s=36,
            zorder=3,
            label="submitted" if label else None,
        )
        if r.started_at is not None and r.run_intensity is not None:
            ax.scatter(
                [r.started_at],
                [r.run_intensity],
                marker="o",
                color="tab:green",
                s=36,
                zorder=3,
                label="ran" if label else None,
            )
            if r.started_at > r.submitted_at:
                ax.annotate(
                    "",
                    xy=(r.started_at, r.run_intensity),
                    xytext=(r.submitted_at, r.baseline_intensity),
                    arrowprops={"arrowstyle": "->", "color": "tab:green", "alpha": 0.5, "lw": 0.8},
                )
    signal = next((r.signal for r in rows if r.signal), None)
    ax.set_title(f"Grid intensity on {literal(day)} (UTC): when work was submitted and when it ran")
    ax.set_ylabel(f"gCO2eq/kWh ({literal(signal)})" if signal else "gCO2eq/kWh")
    ax.set_xlim(start, end + timedelta(hours=6))
    import matplotlib.dates as mdates

    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)


def _daily(ax: Any, daily: Sequence[tuple[str, float]], source: str) -> None:
    values = [v for _, v in daily]
    ax.hist(
        values,
        bins=min(30, max(5, len(values) // 2)),
        color="tab:green",
        alpha=0.75,
        edgecolor="white",
    )
    mean, median = statistics.fmean(values), statistics.median(values)
    ax.axvline(median, color="black", lw=1.2, label=f"median {median:.1f} %")
    ax.axvline(mean, color="black", lw=1.2, ls="--", label=f"mean {mean:.1f} %")
    ax.axvline(0, color="tab:red", lw=0.8)
    ax.set_title(f"Daily reduction vs running at once ({len(values)} days, {literal(source)})")
    ax.set_xlabel("reduction of gCO2eq (%)")
    ax.set_ylabel("days")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of days: whole ticks
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _models(ax: Any, models: Sequence[Mapping[str, Any]]) -> None:
    shown = list(models)[:12][::-1]
    names = [literal(m["model"]) for m in shown]
    values = [float(m["emitted_g"]) for m in shown]
    ax.barh(names, values, color="tab:blue", alpha=0.8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3g} g", va="center", fontsize="small")
    ax.set_title("Emissions per model (usage, gCO2eq)")
    ax.set_xlabel("gCO2eq")
    ax.grid(alpha=0.3, axis="x")


def render(
    out: str,
    *,
    kinds: Sequence[str],
    top: Sequence[Row] = (),
    models: Sequence[Mapping[str, Any]] = (),
    daily: Sequence[tuple[str, float]] = (),
    daily_source: str = "telemetry",
    day: str | None = None,
    trace: Sequence[Any] | None = None,
    title: str | None = None,
) -> list[str]:
    """Draw the asked figures (``timeline``, ``daily``, ``models``) into one file (PNG or
    SVG by its suffix); returns the panels drawn. Raises :class:`PlotInputError` if nothing
    can be drawn."""
    panels: list[str] = []
    if "timeline" in kinds and top:
        day = day or busiest_day(top)
        if day is not None:
            panels.append("timeline")
    if "daily" in kinds and daily:
        panels.append("daily")
    if "models" in kinds and models:
        panels.append("models")
    if not panels:
        raise PlotInputError(
            "nothing to plot: no sessions"
            + (" and no daily figures" if "daily" in kinds else "")
            + " in the input (or the range)"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lower = [p for p in panels if p != "timeline"]
    rows = (1 if "timeline" in panels else 0) + (1 if lower else 0)
    fig = plt.figure(figsize=(11, 4.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, max(1, len(lower)))
    r = 0
    if "timeline" in panels:
        assert day is not None
        _timeline(fig.add_subplot(grid[0, :]), top, day, trace)
        r = 1
    for c, panel in enumerate(lower):
        ax = fig.add_subplot(grid[r, c])
        if panel == "daily":
            _daily(ax, daily, daily_source)
        else:
            _models(ax, models)
    if title:
        fig.suptitle(literal(title))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return panels
