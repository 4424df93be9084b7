"""The events a session emits on its :class:`~ecoasync.EventBus`.

Every event is a frozen dataclass carrying the session's id, name and tags and a UTC
timestamp ``at`` (from the session's clock). ``event.kind`` is a short stable name
(``"planned"``, ``"call_recorded"``, ...) and ``event.to_dict()`` a JSON-ready dict with a
``schema`` version, for sinks.

In the order a session emits them::

    [Routed] ─► Planned ─► [ForecastFailed] ─► Started ─► (Downgraded | ModelUnknown | CallRecorded
              | CallRefused | BudgetTripped)* ─► Completed

``ForecastFailed`` comes before ``Planned`` when the provider failed. ``Routed`` comes first in
a session with routes, and again when a call fails over to another route. ``Completed`` is always
the last event of a session, whatever happened (``status`` says what).

Layer: values. Imports values only (``_plan``, ``_records``): the bus, the sinks and the
context read events without depending on the planner or the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from ._plan import Plan
from ._records import (
    SCHEMA_VERSION,
    CallRecord,
    IntensitySource,
    SessionRecord,
    Status,
    to_jsonable,
)
from ._route_choice import RouteChoice

__all__ = [
    "BudgetTripped",
    "CallRecorded",
    "CallRefused",
    "Completed",
    "Downgraded",
    "Event",
    "ForecastFailed",
    "ModelUnknown",
    "Planned",
    "Routed",
    "Started",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The fields every event has."""

    kind: ClassVar[str] = "event"
    session_id: str
    session_name: str
    tags: tuple[str, ...] = ()
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``schema``, ``event`` (the kind), then the fields."""
        body = to_jsonable(self)
        return {"schema": SCHEMA_VERSION, "event": self.kind, **body}


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecastFailed(Event):
    """The provider could not give a forecast; ``action`` says what the session does."""

    kind: ClassVar[str] = "forecast_failed"
    provider: str
    zone: str | None = None
    error: str
    action: Literal["run_now", "raise"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned(Event):
    """The session chose when to start; ``plan`` explains why."""

    kind: ClassVar[str] = "planned"
    plan: Plan


@dataclass(frozen=True, slots=True, kw_only=True)
class Routed(Event):
    """The session chose where to run (``reason="planned"``, just before ``Planned``), or fell
    over to the next-best allowed route after a call on ``failed`` broke with ``error``
    (``reason="failover"``). ``choice`` holds every candidate with its figures and basis."""

    kind: ClassVar[str] = "routed"
    route: str
    zone: str | None
    reason: Literal["planned", "failover"]
    choice: RouteChoice
    failed: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Started(Event):
    """The wait is over and the body runs."""

    kind: ClassVar[str] = "started"
    delay: timedelta
    intensity: float | None
    intensity_source: IntensitySource


@dataclass(frozen=True, slots=True, kw_only=True)
class Downgraded(Event):
    """A call's model was replaced by its fallback because the grid was dirty."""

    kind: ClassVar[str] = "downgraded"
    requested: str
    effective: str
    intensity: float
    threshold: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUnknown(Event):
    """EcoLogits does not know a model: its calls are recorded with zero energy, flagged."""

    kind: ClassVar[str] = "model_unknown"
    provider: str
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecorded(Event):
    """An LLM call finished and was charged; ``session_total_g`` is the running total."""

    kind: ClassVar[str] = "call_recorded"
    call: CallRecord
    session_total_g: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRefused(Event):
    """A call was refused before it was made: the budget was already spent."""

    kind: ClassVar[str] = "call_refused"
    model: str
    spent_g: float
    budget_g: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetTripped(Event):
    """The call ``model`` took the session over its budget; later calls are refused."""

    kind: ClassVar[str] = "budget_tripped"
    model: str
    spent_g: float
    budget_g: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed(Event):
    """The session ended; ``record`` is its telemetry record. Always the last event."""

    kind: ClassVar[str] = "completed"
    status: Status
    record: SessionRecord
