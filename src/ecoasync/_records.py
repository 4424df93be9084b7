"""Telemetry records: one per LLM call, one per session. Plain values, JSON-ready.

Layer: values; imports nothing of ecoasync.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "CallRecord",
    "IntensitySource",
    "ModelUsage",
    "SessionRecord",
    "Status",
    "TagUsage",
    "to_jsonable",
]

SCHEMA_VERSION = 1

Status = Literal["completed", "aborted", "cancelled", "failed"]
IntensitySource = Literal["actual", "forecast", "mix", "none"]
"""Where a charged intensity came from: the grid's measured value, its forecast, a static
electricity mix (no forecast at all, e.g. EcoLogits' country average), or nowhere."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """What one LLM call used and emitted.

    Energy is in kWh (``energy_kwh`` the mean of EcoLogits' range ``[energy_kwh_min,
    energy_kwh_max]``); ``emitted_g`` is the usage-phase gCO2eq charged at ``intensity``
    (gCO2eq/kWh of the grid when the call ran); ``baseline_g`` is the same energy at the
    intensity of submission time. Embodied (manufacturing) impacts are kept apart: shifting
    work in time does not change them. ``known_model`` is False when EcoLogits does not know
    the model: the energy is then 0 and flagged, never silently. ``call_id`` is unique per
    call (made when the record is): reports use it to drop a call read twice from copied or
    overlapping telemetry files. ``route`` names the route the call ran on in a routed session.
    """

    call_id: str = field(default_factory=lambda: secrets.token_hex(16))
    provider: str
    requested_model: str
    effective_model: str
    output_tokens: int
    input_tokens: int | None = None
    latency_s: float
    stream: bool = False
    energy_kwh: float = 0.0
    energy_kwh_min: float = 0.0
    energy_kwh_max: float = 0.0
    intensity: float | None = None
    intensity_source: IntensitySource = "none"
    emitted_g: float = 0.0
    baseline_g: float = 0.0
    embodied_g: float = 0.0
    adpe_usage_kgsbeq: float = 0.0
    adpe_embodied_kgsbeq: float = 0.0
    pe_usage_mj: float = 0.0
    pe_embodied_mj: float = 0.0
    water_usage_l: float = 0.0
    water_embodied_l: float = 0.0
    known_model: bool = True
    downgraded: bool = False
    tags: tuple[str, ...] = ()
    route: str | None = None
    at: datetime

    @property
    def saved_g(self) -> float:
        return self.baseline_g - self.emitted_g


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUsage:
    """Per-model totals in a session (keyed by the effective model)."""

    calls: int = 0
    requested: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    input_tokens: int = 0
    output_tokens: int = 0
    energy_kwh: float = 0.0
    emitted_g: float = 0.0
    known: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TagUsage:
    """Per-tag (per-agent) totals in a session."""

    calls: int = 0
    output_tokens: int = 0
    energy_kwh: float = 0.0
    emitted_g: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """Everything a finished session did, as one flat record.

    Intensities are gCO2eq/kWh of ``signal``; carbon figures are gCO2eq. ``run_intensity``
    is the intensity of the slot the work ran in (``run_intensity_source`` says whether it is
    the grid's measured value or its forecast); ``baseline_intensity`` is the same at
    submission. ``emitted_g`` covers this session's calls and its nested sessions'.
    A routed session (``Policy(routes=...)``) names the ``route`` its calls ran on (the last
    one, after any failover from ``failed_routes``); its baseline is running at once at home.
    ``water_l`` is the calls' usage-phase water (EcoLogits, at the route's grid).
    A job that a queue held has ``job_id``, ``queue``, ``queue_wait_s`` (submission to start),
    ``late_s`` (start minus planned start), ``hops`` and ``replanned``.
    """

    schema: int = SCHEMA_VERSION
    session_id: str
    name: str
    tags: tuple[str, ...] = ()
    parent_id: str | None = None
    status: Status
    error: str | None = None
    submitted_at: datetime
    planned_start: datetime
    started_at: datetime | None
    ended_at: datetime
    delay_s: float
    max_delay_s: float
    decision: str
    provider: str | None = None
    zone: str | None = None
    signal: str | None = None
    forecast_error: str | None = None
    now_intensity: float | None = None
    planned_intensity: float | None = None
    baseline_intensity: float | None = None
    baseline_intensity_source: IntensitySource = "none"
    run_intensity: float | None = None
    run_intensity_source: IntensitySource = "none"
    calls: int = 0
    energy_kwh: float = 0.0
    energy_kwh_min: float = 0.0
    energy_kwh_max: float = 0.0
    emitted_g: float = 0.0
    baseline_g: float = 0.0
    embodied_g: float = 0.0
    downgrades: int = 0
    refused_calls: int = 0
    budget_g: float | None = None
    budget_tripped: bool = False
    unknown_models: tuple[str, ...] = ()
    models: Mapping[str, ModelUsage] = field(default_factory=lambda: MappingProxyType({}))
    by_tag: Mapping[str, TagUsage] = field(default_factory=lambda: MappingProxyType({}))
    route: str | None = None
    failed_routes: tuple[str, ...] = ()
    water_l: float = 0.0
    # a job that a queue held (Celery, procrastinate): its id, the queue, how long it was
    # held (from the first submission to the start), how late the queue delivered it against
    # its plan, how often it was deferred again on the way, and whether a worker re-planned it
    job_id: str | None = None
    queue: str | None = None
    queue_wait_s: float | None = None
    late_s: float | None = None
    hops: int = 0
    replanned: bool = False

    @property
    def saved_g(self) -> float:
        """Baseline minus emitted: what waiting for a greener slot avoided (negative if it cost)."""
        return self.baseline_g - self.emitted_g

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, plus ``saved_g``."""
        data: dict[str, Any] = to_jsonable(self)
        return data


def to_jsonable(value: object) -> Any:
    """Turn records, events, plans and their fields into JSON-ready values.

    Datetimes become ISO 8601 strings in UTC with a ``Z``; timedeltas become seconds;
    non-finite floats become ``None`` (JSON has no NaN).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.name.startswith("_") or not f.repr:
                continue
            out[f.name] = to_jsonable(getattr(value, f.name))
        if isinstance(value, SessionRecord | CallRecord):
            out["saved_g"] = to_jsonable(value.saved_g)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return str(value)
