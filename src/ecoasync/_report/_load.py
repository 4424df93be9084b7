"""Load telemetry lines (ecoasync's JSONL, or llm-eco-tracker's JSONL and logger lines) into
normalised session rows. Malformed lines are skipped and counted, never fatal; a file none of
whose lines is telemetry is refused.

Inputs overlap easily (the same file twice, a copy, rotated files matched by a glob), so
records read more than once are dropped and counted: sessions by their id, calls by their
``call_id``, records without an id (llm-eco-tracker's, calls written before ``call_id``
existed) by their text, kept as many times as the one input that holds them most often. Two
records of one session that disagree are refused, naming both.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from .._checks import is_number
from .._exceptions import TelemetryConflict, TelemetryInputError

__all__ = [
    "FORMATS",
    "Loaded",
    "Part",
    "Row",
    "TelemetryConflict",
    "TelemetryInputError",
    "load",
    "parse_time",
]

Format = Literal["auto", "ecoasync", "llm-eco-tracker"]
FORMATS: tuple[str, ...] = ("auto", "ecoasync", "llm-eco-tracker")
PEER = "llm-eco-tracker"
PEER_LOGGER_MARKER = "Telemetry record: "


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


@dataclass
class Loaded:
    """What :func:`load` read."""

    rows: list[Row] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: int = 0
    skipped: int = 0
    first_bad: str | None = None
    call_lines: int = 0
    orphan_calls: int = 0
    """``call_recorded`` lines whose session has no ``completed`` line (still running, or
    the process died): not in the totals."""
    other_lines: int = 0
    duplicate_sessions: int = 0
    """Session records read more than once (dropped: counted once)."""
    duplicate_calls: int = 0
    """``call_recorded`` lines read more than once (dropped)."""

    def bad(self, where: str) -> None:
        self.skipped += 1
        if self.first_bad is None:
            self.first_bad = where

    @property
    def top(self) -> list[Row]:
        """Sessions whose figures are not already in a parent's (a parent's record includes
        its nested sessions'): the rows to add up."""
        ids = {r.session_id for r in self.rows}
        return [r for r in self.rows if r.parent_id is None or r.parent_id not in ids]


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


def _lines(path: str) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        yield from enumerate(handle, start=1)


def _check(path: str) -> None:
    if not os.path.exists(path):
        raise TelemetryInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise TelemetryInputError(f"{path}: is a directory, not a telemetry file")
    if not os.access(path, os.R_OK):
        raise TelemetryInputError(f"{path}: cannot be read (permission denied)")


class _Seen:
    """What :func:`load` has kept so far, to drop what it reads again."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[Row, str]] = {}  # id -> the row kept, where it was read
        self.calls: set[str] = set()
        self.calls_by_session: Counter[str] = Counter()
        self.kept: Counter[int] = Counter()  # records without an id, by text: copies kept
        self.here: Counter[int] = Counter()  # ... and how often the current input has each

    def next_input(self) -> None:
        self.here = Counter()

    def new_text(self, text: str) -> bool:
        """Whether a record without an id is new: an input may repeat what another holds,
        never add to it, so each text is kept as often as the input holding it most does."""
        key = hash(text)
        self.here[key] += 1
        if self.here[key] > self.kept[key]:
            self.kept[key] = self.here[key]
            return True
        return False

    def new_session(self, row: Row, where: str) -> bool:
        """Whether ``row`` is a session not read before; raises if it contradicts the one read."""
        first = self.sessions.get(row.session_id)
        if first is None:
            self.sessions[row.session_id] = (row, where)
            return True
        kept, first_where = first
        if kept == row:
            return False
        differ = [f.name for f in fields(Row) if getattr(kept, f.name) != getattr(row, f.name)]
        raise TelemetryConflict(
            f"session {row.session_id} ({row.name!r}) has two different records, at "
            f"{first_where} and at {where} (they differ in {', '.join(differ)}); a copy was "
            "edited or two runs share a session id: remove the wrong record and report again"
        )


def load(paths: Iterable[str | os.PathLike[str]], *, fmt: str = "auto") -> Loaded:
    """Read every path. ``fmt``: ``ecoasync`` (JsonlSink lines), ``llm-eco-tracker`` (its
    JSONL or its logger lines) or ``auto`` (per line). Blocking (a CLI helper).

    Raises :class:`TelemetryInputError` for a missing or unreadable file, or one with lines
    none of which is telemetry, and :class:`TelemetryConflict` for two different records of
    one session. Malformed lines are counted in ``skipped`` with the first one's
    ``path:line``; records read twice in ``duplicate_sessions`` and ``duplicate_calls``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Loaded()
    names = [os.fspath(p) for p in paths]
    for path in names:
        _check(path)
    seen = _Seen()
    for path in names:
        out.files.append(path)
        seen.next_input()
        lines, skipped = out.lines, out.skipped
        try:
            for number, line in _lines(path):
                _read_line(out, line, f"{path}:{number}", fmt, seen)
        except OSError as exc:
            raise TelemetryInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        lines, skipped = out.lines - lines, out.skipped - skipped
        if lines and skipped == lines:
            wanted = {
                "auto": "a JsonlSink event or an llm-eco-tracker record",
                "ecoasync": "a JsonlSink event (--format ecoasync)",
                "llm-eco-tracker": "an llm-eco-tracker record (--format llm-eco-tracker)",
            }[fmt]
            raise TelemetryInputError(
                f"{path}: not telemetry: none of its {lines} line(s) is {wanted}"
            )
    done = {r.session_id for r in out.rows}
    out.orphan_calls = sum(n for sid, n in seen.calls_by_session.items() if sid not in done)
    return out


def _read_line(out: Loaded, line: str, where: str, fmt: str, seen: _Seen) -> None:
    text = line.strip()
    if not text:
        return
    out.lines += 1
    peer_logger = False
    if fmt != "ecoasync" and not text.startswith("{"):
        marker = text.find(PEER_LOGGER_MARKER)
        if marker >= 0:
            text = text[marker + len(PEER_LOGGER_MARKER) :].strip()
            peer_logger = True
        elif fmt == "llm-eco-tracker":
            out.other_lines += 1  # a log line that is not a telemetry record
            out.lines -= 1
            return
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        if fmt == "llm-eco-tracker" or peer_logger or (fmt == "auto" and "event" not in data):
            row = row_from_peer(data, where)
            if seen.new_text(text):
                out.rows.append(row)
            else:
                out.duplicate_sessions += 1
            return
        kind = data.get("event")
        if kind == "completed":
            row = row_from_record(data["record"])
            if seen.new_session(row, where):
                out.rows.append(row)
            else:
                out.duplicate_sessions += 1
        elif kind == "call_recorded":
            sid = str(data["session_id"])
            call_id = data["call"].get("call_id")
            if call_id is None:  # written before calls had an id
                new = seen.new_text(text)
            else:
                new = str(call_id) not in seen.calls
                seen.calls.add(str(call_id))
            if not new:
                out.duplicate_calls += 1
                return
            out.call_lines += 1
            seen.calls_by_session[sid] += 1
        elif isinstance(kind, str):
            out.other_lines += 1
        else:
            raise ValueError("no 'event' field")
    except (ValueError, KeyError, TypeError, AttributeError):
        out.bad(where)
