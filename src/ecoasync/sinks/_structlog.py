"""``StructlogSink``: events as structlog key/value log entries.

Layer: edges (sinks consume the bus's events); imports values only (the events, the logger, the
checks) and the other sinks: never the session, the planner or a provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import structlog

from ..events import CallRecorded, Completed, Event
from ._base import FailureCounter

__all__ = ["StructlogSink", "event_fields"]

_LEVELS = ("debug", "info", "warning", "error")
_WARNING_KINDS = frozenset({"forecast_failed", "budget_tripped", "call_refused", "model_unknown"})


def event_fields(event: Event) -> dict[str, Any]:
    """Flat key/value fields for ``event``: the record's or call's fields are lifted to the
    top level (``emitted_g=...``, not ``record={...}``); per-model and per-tag figures stay
    nested mappings."""
    data = event.to_dict()
    data.pop("event", None)
    if isinstance(event, Completed):
        record = data.pop("record", {})
        for key in ("schema", "session_id", "tags", "status"):
            record.pop(key, None)
        record["saved_g"] = event.record.saved_g
        record["session_name"] = record.pop("name", event.session_name)
        data.update(record)
    elif isinstance(event, CallRecorded):
        call = data.pop("call", {})
        call["call_at"] = call.pop("at", None)
        call["call_tags"] = call.pop("tags", [])
        call["saved_g"] = event.call.saved_g
        data.update(call)
    return data


class StructlogSink:
    """Log each event through structlog: ``ecoasync.<kind>`` with the event's fields.

    The event name is dotted (``ecoasync.completed``, ``ecoasync.call_recorded``, ...) and
    the fields are flat key/value pairs (see :func:`event_fields`). ``logger`` defaults to
    ``structlog.get_logger("ecoasync.telemetry")``; this sink never configures structlog:
    your configuration decides where the entries go and how they look. Events go out at
    ``level`` ("info" by default); budget trips, refused calls, unknown models and failed
    forecasts at "warning". ``events`` limits which event classes are logged (all by
    default).

    A failure of the logging pipeline is counted in :attr:`failures` and reported through
    the ``ecoasync`` logger (``ecoasync.sink_failed``), never raised into the workload.
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        level: Literal["debug", "info", "warning", "error"] = "info",
        events: Iterable[type[Event]] | None = None,
    ) -> None:
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {', '.join(_LEVELS)}, got {level!r}")
        self.logger = logger if logger is not None else structlog.get_logger("ecoasync.telemetry")
        self.level = level
        self.events = tuple(events) if events is not None else ()
        for t in self.events:
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(f"events must be classes from ecoasync.events, got {t!r}")
        self._failures = FailureCounter()

    @property
    def failures(self) -> int:
        return self._failures.count

    def __call__(self, event: Event, /) -> None:
        if self.events and not isinstance(event, self.events):
            return
        try:
            level = "warning" if event.kind in _WARNING_KINDS else self.level
            getattr(self.logger, level)(f"ecoasync.{event.kind}", **event_fields(event))
        except Exception as exc:
            self._failures.record(self, exc, event_kind=event.kind)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"StructlogSink(level={self.level!r}, failures={self.failures})"
