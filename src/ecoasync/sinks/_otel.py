"""``OpenTelemetrySink``: a span per session and carbon metrics (extra ``otel``).

Layer: edges (sinks consume the bus's events); imports values only (the events, the logger, the
checks) and the other sinks: never the session, the planner or a provider.
"""

from __future__ import annotations

import collections
from datetime import datetime
from typing import Any

from .._checks import is_whole
from ..events import (
    BudgetTripped,
    CallRecorded,
    Completed,
    Downgraded,
    Event,
    Planned,
)
from ._base import FailureCounter
from ._structlog import event_fields

__all__ = ["OpenTelemetrySink"]

_SCOPE = "ecoasync"


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


def _attrs(fields: dict[str, Any], prefix: str = "ecoasync.") -> dict[str, Any]:
    """OpenTelemetry attributes from flat fields: primitives and lists of strings only."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool | int | float | str):
            out[prefix + key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[prefix + key] = list(value)
    return out


class _Open:
    __slots__ = ("provider", "signal", "span", "zone")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.provider: str | None = None
        self.zone: str | None = None
        self.signal: str | None = None


class OpenTelemetrySink:
    """Export sessions to OpenTelemetry: a span per session, its events as span events, and
    metrics. Needs the ``otel`` extra (``pip install 'ecoasync[otel]'``).

    The span ``ecoasync.session <name>`` starts at the session's first event (its submission)
    and ends with ``Completed``, carrying the record's figures as ``ecoasync.*`` attributes
    (status ``ERROR`` for a failed session). Metrics (instrument names, units):

    - ``ecoasync.llm.calls`` (``{call}``), ``ecoasync.llm.energy`` (``kWh``),
      ``ecoasync.llm.emissions`` (``gCO2eq``, usage phase) — per call, with ``model``,
      ``llm_provider``, ``tag``, ``grid_provider``, ``zone`` and ``signal`` attributes;
    - ``ecoasync.session.count`` (``{session}``), ``ecoasync.session.avoided``
      (``gCO2eq``, an up-down counter: waiting can also cost), ``ecoasync.session.delay``
      (histogram, ``s``), ``ecoasync.budget.trips`` (``{trip}``) — per session, with
      ``status``, ``grid_provider``, ``zone``, ``signal`` and ``tags``;
    - ``ecoasync.llm.downgrades`` (``{call}``) with ``requested_model`` and ``model``.

    Attribute keys are prefixed ``ecoasync.``; the ``signal`` attribute keeps average and
    marginal figures apart. ``tracer_provider`` and ``meter_provider`` default to the global
    ones. Failures are logged and counted, never raised into the workload.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        max_open_sessions: int = 100_000,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "OpenTelemetrySink needs OpenTelemetry: pip install 'ecoasync[otel]'"
            ) from exc
        from .._version import __version__

        self._trace = trace
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._calls = meter.create_counter(
            "ecoasync.llm.calls", unit="{call}", description="LLM calls measured"
        )
        self._energy = meter.create_counter(
            "ecoasync.llm.energy", unit="kWh", description="Energy of LLM calls (EcoLogits mean)"
        )
        self._emitted = meter.create_counter(
            "ecoasync.llm.emissions",
            unit="gCO2eq",
            description="Usage-phase emissions of LLM calls at the grid intensity when they ran",
        )
        self._downgrades = meter.create_counter(
            "ecoasync.llm.downgrades", unit="{call}", description="Calls sent to a fallback model"
        )
        self._sessions = meter.create_counter(
            "ecoasync.session.count", unit="{session}", description="Sessions completed"
        )
        self._avoided = meter.create_up_down_counter(
            "ecoasync.session.avoided",
            unit="gCO2eq",
            description="Baseline minus emitted: what waiting avoided (negative if it cost)",
        )
        self._delay = meter.create_histogram(
            "ecoasync.session.delay", unit="s", description="How long sessions waited"
        )
        self._trips = meter.create_counter(
            "ecoasync.budget.trips", unit="{trip}", description="Carbon budgets exceeded"
        )
        if not is_whole(max_open_sessions) or max_open_sessions < 1:
            raise ValueError(f"max_open_sessions must be an int >= 1, got {max_open_sessions!r}")
        self.max_open_sessions = max_open_sessions
        self._open: collections.OrderedDict[str, _Open] = collections.OrderedDict()
        self._failures = FailureCounter()

    @property
    def failures(self) -> int:
        return self._failures.count

    def __call__(self, event: Event, /) -> None:
        try:
            self._handle(event)
        except Exception as exc:
            self._failures.record(self, exc, event_kind=event.kind)

    def _session(self, event: Event, start: datetime | None = None) -> _Open:
        state = self._open.get(event.session_id)
        if state is None:
            span = self._tracer.start_span(
                f"ecoasync.session {event.session_name}",
                start_time=_ns(start or event.at),
                attributes={
                    "ecoasync.session_id": event.session_id,
                    "ecoasync.session_name": event.session_name,
                    "ecoasync.tags": list(event.tags),
                },
            )
            state = self._open[event.session_id] = _Open(span)
            while len(self._open) > self.max_open_sessions:
                _, oldest = self._open.popitem(last=False)
                oldest.span.set_attribute("ecoasync.incomplete", True)
                oldest.span.end()
        return state

    def _handle(self, event: Event) -> None:
        start = event.record.submitted_at if isinstance(event, Completed) else None
        state = self._session(event, start)
        fields = event_fields(event)
        state.span.add_event(
            f"ecoasync.{event.kind}",
            attributes=_attrs(fields),
            timestamp=_ns(event.at),
        )
        if isinstance(event, Planned):
            state.provider = event.plan.provider
            state.zone = event.plan.zone
            state.signal = str(event.plan.signal) if event.plan.signal else None
        elif isinstance(event, CallRecorded):
            call = event.call
            attrs = _attrs(
                {
                    "model": call.effective_model,
                    "llm_provider": call.provider,
                    "grid_provider": state.provider,
                    "zone": state.zone,
                    "signal": state.signal,
                }
            )
            for tag in call.tags or ("untagged",):
                tagged = {**attrs, "ecoasync.tag": tag}
                self._calls.add(1, tagged)
                self._energy.add(call.energy_kwh, tagged)
                self._emitted.add(call.emitted_g, tagged)
        elif isinstance(event, Downgraded):
            self._downgrades.add(
                1, {"ecoasync.requested_model": event.requested, "ecoasync.model": event.effective}
            )
        elif isinstance(event, BudgetTripped):
            pass  # counted once per session at Completed
        elif isinstance(event, Completed):
            self._complete(event, state, fields)

    def _complete(self, event: Completed, state: _Open, fields: dict[str, Any]) -> None:
        record = event.record
        self._open.pop(event.session_id, None)
        span = state.span
        span.set_attributes(_attrs(fields))
        if record.status == "failed":
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, record.error or "failed"))
        span.end(end_time=_ns(event.at))
        attrs = _attrs(
            {
                "status": record.status,
                "grid_provider": record.provider,
                "zone": record.zone,
                "signal": record.signal,
                "tags": ",".join(record.tags),
            }
        )
        self._sessions.add(1, attrs)
        self._delay.record(record.delay_s, attrs)
        if record.parent_id is None:  # a parent's figures include its children's
            self._avoided.add(record.saved_g, attrs)
        if record.budget_tripped:
            self._trips.add(1, attrs)

    async def aclose(self) -> None:
        """End the spans of sessions still open (marked ``ecoasync.incomplete``)."""
        while self._open:
            _, state = self._open.popitem(last=False)
            try:
                state.span.set_attribute("ecoasync.incomplete", True)
                state.span.end()
            except Exception as exc:
                self._failures.record(self, exc, stage="aclose")

    def __repr__(self) -> str:
        return f"OpenTelemetrySink(open_sessions={len(self._open)}, failures={self.failures})"
