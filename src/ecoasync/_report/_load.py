"""Load telemetry lines (ecoasync's JSONL, or llm-eco-tracker's JSONL and logger lines) into
normalised session rows (:class:`~._rows.Row`). Malformed lines are skipped and counted, never
fatal; a file none of whose lines is telemetry is refused.

Inputs overlap easily (the same file twice, a copy, rotated files matched by a glob), so
records read more than once are dropped and counted: sessions by their id, calls by their
``call_id``, records without an id (llm-eco-tracker's, calls written before ``call_id``
existed) by their text, kept as many times as the one input that holds them most often. Two
records of one session that disagree are refused, naming both.

Layer: edges (reads files; a CLI helper). Imports values (exceptions) and the rows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Literal

from .._exceptions import TelemetryConflict, TelemetryInputError
from ._rows import Part, Row, parse_time, row_from_peer, row_from_record

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
PEER_LOGGER_MARKER = "Telemetry record: "


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
