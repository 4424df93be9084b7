"""The figures of ``ecoasync report``: totals, breakdowns, equivalences, data quality.

Layer: edges (reports over recorded telemetry); imports values only (checks, exceptions,
durations) and the report's own modules: a report reads files, never a live session.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ._load import Loaded
from ._rows import Part, Row

__all__ = [
    "BREAKDOWNS",
    "EQUIVALENCES",
    "Equivalence",
    "breakdown",
    "data_quality",
    "duplicates_note",
    "equivalences",
    "select",
    "summary",
    "totals",
]


@dataclass(frozen=True, slots=True)
class Equivalence:
    """A real-world comparison: ``grams_per_unit`` gCO2eq per one ``unit``."""

    key: str
    unit: str
    label: str
    grams_per_unit: float
    source: str


EQUIVALENCES: Final[tuple[Equivalence, ...]] = (
    Equivalence(
        "car_km",
        "km driven by an average petrol car",
        "km by car",
        393.0 / 1.609344,
        "US EPA Greenhouse Gas Equivalencies Calculator (2024 update): 3.93e-4 tCO2e per mile "
        "for an average gasoline passenger vehicle; converted at 1.609344 km/mile",
    ),
    Equivalence(
        "smartphone_charges",
        "full smartphone charge",
        "smartphone charges",
        12.4,
        "US EPA Greenhouse Gas Equivalencies Calculator (2024 update): 1.24e-5 tCO2 per "
        "smartphone charged (US average grid)",
    ),
)


def equivalences(grams: float) -> dict[str, float]:
    return {e.key: grams / e.grams_per_unit for e in EQUIVALENCES}


def select(rows: Iterable[Row], since: datetime | None, until: datetime | None) -> list[Row]:
    """Rows whose work ran (or was submitted) in ``[since, until)``."""
    return [
        r for r in rows if (since is None or r.when >= since) and (until is None or r.when < until)
    ]


def totals(top: Sequence[Row], every: Sequence[Row] | None = None) -> dict[str, Any]:
    """Totals over ``top`` (rows not included in a parent's figures). Counters a session
    keeps only for itself (downgrades, budget trips) are counted over ``every`` row."""
    every = top if every is None else every
    emitted = sum(r.emitted_g for r in top)
    baseline = sum(r.baseline_g for r in top)
    avoided = baseline - emitted
    delays = [r.delay_s for r in top]
    return {
        "sessions": len(top),
        "nested_sessions": len(every) - len(top),
        "calls": sum(r.calls for r in top),
        "energy_kwh": sum(r.energy_kwh for r in top),
        "energy_kwh_min": sum(r.energy_kwh_min for r in top),
        "energy_kwh_max": sum(r.energy_kwh_max for r in top),
        "emitted_g": emitted,
        "baseline_g": baseline,
        "avoided_g": avoided,
        "avoided_pct": (100.0 * avoided / baseline) if baseline > 0 else None,
        "embodied_g": sum(r.embodied_g for r in top),
        "water_l": sum(r.water_l for r in top),
        "mean_delay_s": (sum(delays) / len(delays)) if delays else 0.0,
        "max_delay_s": max(delays, default=0.0),
        "downgrades": sum(r.downgrades for r in every),
        "budget_trips": sum(1 for r in every if r.budget_tripped),
        "statuses": dict(sorted(Counter(r.status for r in top).items())),
        "queued_jobs": len(late := [r.late_s or 0.0 for r in top if r.queue]),
        "mean_late_s": (sum(late) / len(late)) if late else 0.0,
    }


def _day(r: Row) -> str:
    return r.when.strftime("%Y-%m-%d")


_SESSION_KEYS: Final[dict[str, Callable[[Row], str]]] = {
    "day": _day,
    "provider": lambda r: r.provider or "(none)",
    "zone": lambda r: r.zone or "(none)",
    "name": lambda r: r.name,
    "signal": lambda r: r.signal or "(unknown)",
    "status": lambda r: r.status,
    "route": lambda r: r.route or "(none)",
    "queue": lambda r: r.queue or "(in-process)",
}
BREAKDOWNS: Final[tuple[str, ...]] = ("model", "tag", *_SESSION_KEYS)


def breakdown(by: str, top: Sequence[Row], every: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows of a breakdown, largest emissions first (days in date order).

    ``model`` and ``tag`` split sessions into their models' and agent tags' shares (calls,
    energy, emissions: baselines are per session, not per call); the others group whole
    sessions and carry every total.
    """
    if by in ("model", "tag"):
        acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])
        unknown: set[str] = set()
        for r in top:
            parts: dict[str, Part] = dict(r.models if by == "model" else r.by_tag)
            for key, part in parts.items():
                a = acc[key]
                a[0] += part.calls
                a[1] += part.energy_kwh
                a[2] += part.emitted_g
                a[3] += 1
            if by == "model":
                unknown.update(r.unknown_models)
        total = sum(a[2] for a in acc.values())
        out: list[dict[str, Any]] = [
            {
                by: key,
                "sessions": int(a[3]),
                "calls": int(a[0]),
                "energy_kwh": a[1],
                "emitted_g": a[2],
                "share_pct": (100.0 * a[2] / total) if total > 0 else None,
                **({"known": key not in unknown} if by == "model" else {}),
            }
            for key, a in acc.items()
        ]
        out.sort(key=lambda d: (-d["emitted_g"], str(d[by])))
        return out
    if by not in _SESSION_KEYS:
        raise ValueError(f"--by must be one of {', '.join(BREAKDOWNS)}, got {by!r}")
    key_of = _SESSION_KEYS[by]
    groups_top: dict[str, list[Row]] = defaultdict(list)
    groups_every: dict[str, list[Row]] = defaultdict(list)
    for r in top:
        groups_top[key_of(r)].append(r)
    for r in every:
        groups_every[key_of(r)].append(r)
    grand = sum(r.emitted_g for r in top)
    rows = []
    for key in groups_top:
        t = totals(groups_top[key], groups_every[key])
        t.pop("statuses")
        t["share_pct"] = (100.0 * t["emitted_g"] / grand) if grand > 0 else None
        if by == "route":  # say what the figures are (location-based or marginal)
            t["basis"] = sorted({r.signal or "(unknown)" for r in groups_top[key]})
        rows.append({by: key, **t})
    if by == "day":
        rows.sort(key=lambda d: d["day"])
    else:
        rows.sort(key=lambda d: (-d["emitted_g"], d[by]))
    return rows


def data_quality(top: Sequence[Row], loaded: Loaded | None = None) -> dict[str, Any]:
    """Flags a reader of the figures should know: where intensities came from, unknown
    models, imported records, mixed signals, skipped lines."""
    emitted = sum(r.emitted_g for r in top) or 0.0
    by_source: dict[str, float] = defaultdict(float)
    sessions_by_source: Counter[str] = Counter()
    for r in top:
        if r.calls or r.energy_kwh:
            by_source[r.run_source] += r.emitted_g
            sessions_by_source[r.run_source] += 1
    unknown = sorted({m for r in top for m in r.unknown_models})
    kinds = sorted({r.signal_kind for r in top if r.calls or r.energy_kwh})
    imported = sum(1 for r in top if r.origin != "ecoasync")
    out: dict[str, Any] = {
        "intensity_sources": {
            src: {
                "sessions": sessions_by_source[src],
                "emitted_g": g,
                "share_pct": (100.0 * g / emitted) if emitted > 0 else None,
            }
            for src, g in sorted(by_source.items())
        },
        "forecast_only_sessions": sessions_by_source["forecast"],
        "mix_fallback_sessions": sessions_by_source["mix"],
        "no_intensity_sessions": sessions_by_source["none"],
        "unknown_models": unknown,
        "unknown_model_sessions": sum(1 for r in top if r.unknown_models),
        "imported_sessions": imported,
        "signal_kinds": kinds,
        "mixed_signals": "average" in kinds and "marginal" in kinds,
    }
    if loaded is not None:
        out["skipped_lines"] = loaded.skipped
        out["first_bad_line"] = loaded.first_bad
        out["incomplete_session_calls"] = loaded.orphan_calls
        out["duplicate_sessions"] = loaded.duplicate_sessions
        out["duplicate_calls"] = loaded.duplicate_calls
    return out


def flags(quality: dict[str, Any]) -> list[str]:
    """Human sentences for the data-quality flags that are raised."""
    out = []
    if quality["mixed_signals"]:
        out.append(
            "average and marginal intensities are both present: their sums are not comparable "
            "(see the per-signal totals, or --by signal)"
        )
    if "unknown" in quality["signal_kinds"]:
        out.append("some sessions carry no signal (average or marginal unknown)")
    if quality["forecast_only_sessions"]:
        out.append(
            f"{quality['forecast_only_sessions']} session(s) charged at forecast intensities "
            "(no measured value yet)"
        )
    if quality["mix_fallback_sessions"]:
        out.append(
            f"{quality['mix_fallback_sessions']} session(s) charged at a static electricity mix "
            "(no forecast)"
        )
    if quality["no_intensity_sessions"]:
        out.append(f"{quality['no_intensity_sessions']} session(s) had no intensity at all (0 g)")
    if quality["unknown_models"]:
        out.append("unknown models, counted with 0 energy: " + ", ".join(quality["unknown_models"]))
    if quality["imported_sessions"]:
        out.append(
            f"{quality['imported_sessions']} session(s) imported from llm-eco-tracker "
            "(forecast intensities, no energy range, no embodied share, no signal)"
        )
    if quality.get("skipped_lines"):
        out.append(
            f"skipped {quality['skipped_lines']} malformed line(s); the first at "
            f"{quality['first_bad_line']}"
        )
    if quality.get("duplicate_sessions") or quality.get("duplicate_calls"):
        out.append(duplicates_note(quality["duplicate_sessions"], quality["duplicate_calls"]))
    if quality.get("incomplete_session_calls"):
        out.append(
            f"{quality['incomplete_session_calls']} call(s) of sessions without a 'completed' "
            "line (still running or interrupted) are not in the totals"
        )
    return out


def duplicates_note(sessions: int, calls: int) -> str:
    """The sentence that says how many records read twice were dropped."""
    parts = [f"{sessions} session record(s)"] if sessions else []
    parts += [f"{calls} call line(s)"] if calls else []
    return (
        f"dropped {' and '.join(parts)} read more than once (the same file twice, a copy, "
        "or overlapping rotated files): each record counts once"
    )


def summary(
    loaded: Loaded,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """The report as one JSON-ready object."""
    every = select(loaded.rows, since, until)
    ids = {r.session_id for r in loaded.rows}
    top = [r for r in every if r.parent_id is None or r.parent_id not in ids]
    out: dict[str, Any] = {
        "files": list(loaded.files),
        "since": since.isoformat().replace("+00:00", "Z") if since else None,
        "until": until.isoformat().replace("+00:00", "Z") if until else None,
        "first_at": _iso(min((r.when for r in top), default=None)),
        "last_at": _iso(max((r.when for r in top), default=None)),
    }
    out.update(totals(top, every))
    kinds = sorted({r.signal_kind for r in top})
    out["signals"] = sorted({r.signal or "(unknown)" for r in top})
    out["by_signal"] = {
        kind: _pick(totals([r for r in top if r.signal_kind == kind])) for kind in kinds
    }
    quality = data_quality(top, loaded)
    out["mixed_signals"] = quality["mixed_signals"]
    out["equivalences"] = {
        "emitted": equivalences(out["emitted_g"]),
        "avoided": equivalences(out["avoided_g"]),
        "constants": [
            {
                "key": e.key,
                "unit": e.unit,
                "label": e.label,
                "g_per_unit": e.grams_per_unit,
                "source": e.source,
            }
            for e in EQUIVALENCES
        ],
    }
    out["data_quality"] = quality
    out["flags"] = flags(quality)
    if by is not None:
        out["by"] = by
        out[f"by_{by}"] = breakdown(by, top, every)
    return out


def _pick(t: dict[str, Any]) -> dict[str, Any]:
    keys = ("sessions", "calls", "energy_kwh", "emitted_g", "baseline_g", "avoided_g")
    return {k: t[k] for k in keys}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None
