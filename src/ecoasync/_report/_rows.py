"""Session rows: one session as ``ecoasync report`` and ``ecoasync plot`` need it, and how a
record of each format becomes one (ecoasync's ``completed`` record, llm-eco-tracker's
record). Reading files, formats per line and overlapping inputs are :mod:`._load`'s.

Layer: edges. Imports values only (checks); no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._checks import is_number

__all__ = ["PEER", "Part", "Row", "parse_time", "row_from_peer", "row_from_record"]

PEER = "llm-eco-tracker"


@dataclass(frozen=True, slots=True)
class Part:
    """A share of a session: one model's or one tag's figures."""

    calls: int = 0
    energy_kwh: float = 0.0
    emitted_g: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One session, as the report needs it (from ecoasync or imported)."""

    session_id: str
    name: str
    tags: tuple[str, ...] = ()
    parent_id: str | None = None
    status: str = "completed"
    submitted_at: datetime
    started_at: datetime | None = None
    ended_at: datetime
    delay_s: float = 0.0
    decision: str = ""
    provider: str | None = None
    zone: str | None = None
    signal: str | None = None
    calls: int = 0
    energy_kwh: float = 0.0
    energy_kwh_min: float = 0.0
    energy_kwh_max: float = 0.0
    emitted_g: float = 0.0
    baseline_g: float = 0.0
    embodied_g: float = 0.0
    downgrades: int = 0
    budget_tripped: bool = False
    unknown_models: tuple[str, ...] = ()
    run_source: str = "none"
    baseline_source: str = "none"
    baseline_intensity: float | None = None
    run_intensity: float | None = None
    models: Mapping[str, Part] = field(default_factory=dict)
    by_tag: Mapping[str, Part] = field(default_factory=dict)
    origin: str = "ecoasync"
    route: str | None = None
    water_l: float = 0.0
    queue: str | None = None
    """The job queue that held the wait (``celery``, ``procrastinate``), or None in-process."""
    late_s: float | None = None
    """How late the queue started the job against its plan (seconds)."""

    @property
    def when(self) -> datetime:
        """When the work ran (its start), else when it was submitted: what days and periods use."""
        return self.started_at or self.submitted_at

    @property
    def avoided_g(self) -> float:
        return self.baseline_g - self.emitted_g

    @property
    def signal_kind(self) -> str:
        """``average``, ``marginal`` or ``unknown``: figures of different kinds never add up."""
        if not self.signal:
            return "unknown"
        kind = self.signal.split("/", 1)[0]
        return kind if kind in ("average", "marginal") else "unknown"


def parse_time(value: object) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; a naive time is taken as UTC) in UTC."""
    if not isinstance(value, str):
        raise TypeError(f"not a time: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _num(value: object, default: float = 0.0) -> float:
    if value is None:
        return default
    if not is_number(value):
        raise TypeError(f"not a number: {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"not a finite number: {value!r}")
    return out


def _opt(value: object) -> float | None:
    return None if value is None else _num(value)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parts(value: object) -> dict[str, Part]:
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for key, part in value.items():
        if isinstance(part, Mapping):
            out[str(key)] = Part(
                calls=int(_num(part.get("calls"))),
                energy_kwh=_num(part.get("energy_kwh")),
                emitted_g=_num(part.get("emitted_g")),
            )
    return out


def row_from_record(record: Mapping[str, Any]) -> Row:
    """A row from a ``Completed`` event's ``record`` (raises ``ValueError`` if malformed)."""
    started = record.get("started_at")
    return Row(
        session_id=str(record["session_id"]),
        name=str(record.get("name") or "session"),
        tags=tuple(str(t) for t in record.get("tags") or ()),
        parent_id=_str(record.get("parent_id")),
        status=str(record.get("status") or "completed"),
        submitted_at=parse_time(record["submitted_at"]),
        started_at=parse_time(started) if started else None,
        ended_at=parse_time(record["ended_at"]),
        delay_s=_num(record.get("delay_s")),
        decision=str(record.get("decision") or ""),
        provider=_str(record.get("provider")),
        zone=_str(record.get("zone")),
        signal=_str(record.get("signal")),
        calls=int(_num(record.get("calls"))),
        energy_kwh=_num(record.get("energy_kwh")),
        energy_kwh_min=_num(record.get("energy_kwh_min")),
        energy_kwh_max=_num(record.get("energy_kwh_max")),
        emitted_g=_num(record.get("emitted_g")),
        baseline_g=_num(record.get("baseline_g")),
        embodied_g=_num(record.get("embodied_g")),
        downgrades=int(_num(record.get("downgrades"))),
        budget_tripped=bool(record.get("budget_tripped")),
        unknown_models=tuple(str(m) for m in record.get("unknown_models") or ()),
        run_source=str(record.get("run_intensity_source") or "none"),
        baseline_source=str(record.get("baseline_intensity_source") or "none"),
        baseline_intensity=_opt(record.get("baseline_intensity")),
        run_intensity=_opt(record.get("run_intensity")),
        models=_parts(record.get("models")),
        by_tag=_parts(record.get("by_tag")),
        route=_str(record.get("route")),
        water_l=_num(record.get("water_l")),
        queue=_str(record.get("queue")),
        late_s=_opt(record.get("late_s")),
    )


def row_from_peer(payload: Mapping[str, Any], where: str) -> Row:
    """A row from one llm-eco-tracker telemetry record (one per job).

    Its format: ``timestamp`` (completion, ISO 8601), ``energy_kwh``, ``baseline_gco2eq``,
    ``actual_gco2eq``, ``saved_gco2eq``, optional ``schedule_plan`` (intervals, forecast
    intensities, ``execution_delay_seconds``), ``forecast_provider``, ``llm_provider``,
    ``model``, ``model_usage`` (requested/effective model, ``call_count``, ``downgraded``)
    and ``metadata`` (budget fields). It charges forecast intensities, records no signal,
    zone, energy range or embodied share: the row says so through its fields.
    """
    if "actual_gco2eq" not in payload and "baseline_gco2eq" not in payload:
        raise ValueError("not an llm-eco-tracker record (no actual_gco2eq/baseline_gco2eq)")
    when = parse_time(payload["timestamp"])
    energy = _num(payload.get("energy_kwh"))
    actual = _opt(payload.get("actual_gco2eq"))
    baseline = _opt(payload.get("baseline_gco2eq"))
    saved = _opt(payload.get("saved_gco2eq"))
    if actual is None and baseline is not None and saved is not None:
        actual = baseline - saved
    if baseline is None and actual is not None:
        baseline = actual + (saved or 0.0)
    plan = payload.get("schedule_plan") if isinstance(payload.get("schedule_plan"), Mapping) else {}
    assert isinstance(plan, Mapping)
    usage = [u for u in payload.get("model_usage") or () if isinstance(u, Mapping)]
    calls = sum(int(_num(u.get("call_count"))) for u in usage)
    downgrades = sum(int(_num(u.get("call_count"))) for u in usage if u.get("downgraded"))
    effective = sorted({str(u.get("effective_model")) for u in usage if u.get("effective_model")})
    if not effective and _str(payload.get("model")):
        effective = [str(payload["model"])]
    models: dict[str, Part] = {}
    if effective:
        key = effective[0] if len(effective) == 1 else "(mixed) " + " + ".join(effective)
        models[key] = Part(calls=calls, energy_kwh=energy, emitted_g=actual or 0.0)
    meta = payload.get("metadata") if isinstance(payload.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    tripped = bool(meta.get("carbon_budget_exceeded"))
    return Row(
        session_id=where,
        name=str(meta.get("name") or PEER),
        status="aborted"
        if meta.get("termination_reason") == "carbon_budget_exceeded"
        else "completed",
        submitted_at=when,
        ended_at=when,
        delay_s=_num(plan.get("execution_delay_seconds")),
        decision="imported",
        provider=_str(payload.get("forecast_provider")),
        calls=calls,
        energy_kwh=energy,
        energy_kwh_min=energy,
        energy_kwh_max=energy,
        emitted_g=actual or 0.0,
        baseline_g=baseline or 0.0,
        downgrades=downgrades,
        budget_tripped=tripped,
        run_source="forecast",
        baseline_source="forecast",
        baseline_intensity=_opt(plan.get("baseline_intensity_gco2eq_per_kwh")),
        run_intensity=_opt(plan.get("optimal_intensity_gco2eq_per_kwh")),
        models=models,
        by_tag={"untagged": Part(calls=calls, energy_kwh=energy, emitted_g=actual or 0.0)},
        origin=PEER,
    )
