"""One LLM call inside a session: admit it, pick its model, then charge what it used.

Shared by every SDK wrapper and by :func:`record_call`. Pure bookkeeping around the
session's :class:`~ecoasync._context.Accounting`; the only waiting is the bus's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _context
from .._log import get_logger
from .._policy import undated
from .._records import CallRecord, IntensitySource
from ..events import Event, ModelUnknown
from . import _impacts

if TYPE_CHECKING:
    from .._bus import EventBus
    from .._context import Accounting

__all__ = ["Call", "Usage", "admit", "admit_sync", "settings"]

log = get_logger()


@dataclass(slots=True)
class _Settings:
    attach_impacts: bool = False
    active: bool = False  # False after uninstrument(): wrappers still cached somewhere pass through


settings = _Settings()

_unknown_lock = threading.Lock()


@dataclass(slots=True)
class Usage:
    """What a response said it used: output tokens (required), input tokens and model."""

    output_tokens: int
    input_tokens: int | None = None
    model: str | None = None


class Call:
    """An admitted call: its session, its models, when it started. ``finish`` charges it once."""

    __slots__ = (
        "_done",
        "acct",
        "downgraded",
        "effective",
        "provider",
        "record",
        "requested",
        "route",
        "start_perf",
        "started_at",
        "stream",
        "tags",
        "ttft",
    )

    def __init__(
        self,
        acct: Accounting,
        provider: str,
        requested: str,
        effective: str,
        *,
        stream: bool,
        downgraded: bool,
    ) -> None:
        self.acct = acct
        self.provider = provider
        self.requested = requested
        self.effective = effective
        self.stream = stream
        self.downgraded = downgraded
        self.tags = _context.call_tags()
        self.started_at = acct.clock.now()
        self.start_perf = time.perf_counter()
        self.record: CallRecord | None = None
        self._done = False
        # the route the call went to, and its time to first token (streams)
        self.route = acct.route.current if acct.route is not None else None
        self.ttft: float | None = None

    def first_token(self) -> None:
        """The answer has begun (a stream's first bytes): its time to first token is now."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start_perf

    def restart_timer(self) -> None:
        """Start timing now (for stream managers that send the request later)."""
        self.started_at = self.acct.clock.now()
        self.start_perf = time.perf_counter()

    def failed(self, exc: BaseException) -> None:
        """Measuring this call failed: log and count it; the caller's result is untouched."""
        self._done = True
        _failed(self, exc)

    def finish(
        self, usage: Usage, *, latency_s: float | None = None
    ) -> tuple[list[tuple[EventBus, Event]], _impacts.Impacts | None]:
        """Charge the call (once; later calls return nothing): the events to emit, and impacts.

        A call that ends after its session completed (a task the body left running) is
        charged to the nearest enclosing session still open; with none, it is logged
        (``ecoasync.call_after_session``) and counted, never emitted after ``Completed``.
        """
        with _finish_lock:  # a stream may end in its thread while its session ends
            if self._done:
                return [], None
            self._done = True
        if self.acct.ended:
            acct = open_session(self.acct)
            if acct is None:
                _after_session(self)
                return [], None
            self.acct = acct
        if not self.requested and usage.model:
            self.requested = self.effective = usage.model  # no model in the request (a prompt id)
        latency = time.perf_counter() - self.start_perf if latency_s is None else latency_s
        try:
            record, impacts = build_record(self, usage, latency)
        except Exception as exc:  # telemetry never breaks the workload; it is logged, not silent
            _failed(self, exc)
            return [], None
        self.record = record
        if self.route is not None:  # feeds the route's measured latency (``balanced``)
            self.route.observe_latency(latency if self.ttft is None else self.ttft)
        acct = self.acct
        events: list[tuple[EventBus, Event]] = []
        if not record.known_model:
            with _unknown_lock:
                first = acct.note_unknown(record.effective_model)
            if first:
                log.warning(
                    "ecoasync.model_unknown",
                    provider=record.provider,
                    model=record.effective_model,
                    session=acct.name,
                )
                events.append(
                    (
                        acct.bus,
                        ModelUnknown(
                            **acct.event_fields(record.at),
                            provider=record.provider,
                            model=record.effective_model,
                        ),
                    )
                )
        events.extend(acct.charge(record))
        return events, impacts


_failures = 0
_finish_lock = threading.Lock()


def failures() -> int:
    """How many calls could not be measured (each was logged as ``ecoasync.measure_failed``
    or ``ecoasync.call_after_session``)."""
    return _failures


def open_session(acct: Accounting | None) -> Accounting | None:
    """``acct`` if its session is still open, else its nearest open ancestor, else None."""
    while acct is not None and acct.ended:
        acct = acct.parent
    return acct


def _after_session(call: Call) -> None:
    global _failures
    _failures += 1
    log.warning(
        "ecoasync.call_after_session",
        provider=call.provider,
        model=call.effective,
        session=call.acct.name,
        session_id=call.acct.session_id,
        failures=_failures,
        hint="the call ended after its session completed and no enclosing session is open, "
        "so nobody is charged: await the tasks a session starts inside it",
    )


def _failed(call: Call, exc: BaseException) -> None:
    global _failures
    _failures += 1
    log.error(
        "ecoasync.measure_failed",
        provider=call.provider,
        model=call.effective,
        session=call.acct.name,
        error=repr(exc),
        failures=_failures,
    )


def _candidates(model: str | None, effective: str) -> tuple[str, ...]:
    """Model ids to try in EcoLogits, best first: as answered, as sent, undated."""
    out: list[str] = []
    for name in (model, effective):
        if name and name not in out:
            out.append(name)
    for name in list(out):
        base = undated(name)
        if base is not None and base not in out:
            out.append(base)
    return tuple(out)


def _zone(acct: Accounting) -> str | None:
    """The session's grid zone: its forecast's, its plan's, else its provider's (a forecast
    that failed still says where the work runs)."""
    zone = None
    if acct.forecast is not None:
        zone = acct.forecast.zone
    if not zone and acct.plan is not None:
        zone = acct.plan.zone
    if not zone:
        provider = acct.policy.provider
        if provider is None:
            from ..providers import default_provider

            provider = default_provider()
        zone = getattr(provider, "zone", None)
    return zone if isinstance(zone, str) and zone else None


def intensity_for(
    acct: Accounting, at: datetime, impacts: _impacts.Impacts | None = None
) -> tuple[float, IntensitySource]:
    """The grid intensity to charge a call that started at ``at``.

    The session's forecast (actual, else forecast); without one, a custom model's own mix,
    else EcoLogits' annual mix of the session's zone (its provider's when the forecast
    failed; the world average only when no zone is known), which is then kept as the
    session's ``fallback_intensity`` (source ``"mix"``, logged once as
    ``ecoasync.intensity_fallback`` with the mix's zone): emissions are never silently 0.
    """
    intensity, source = acct.intensity_at(at)
    if intensity is not None:
        return intensity, source
    if impacts is not None and impacts.mix is not None:
        return impacts.mix.gwp_g_per_kwh, "mix"
    zone = _zone(acct)
    mix = _impacts.electricity_mix(zone)
    acct.fallback_intensity = (mix.gwp_g_per_kwh, "mix")
    log.warning(
        "ecoasync.intensity_fallback",
        session=acct.name,
        session_id=acct.session_id,
        zone=zone,
        mix_zone=mix.zone,
        intensity=round(mix.gwp_g_per_kwh, 2),
        reason=_why_no_forecast(acct)
        + (
            ": the annual electricity mix of the zone"
            if mix.zone != "WOR"
            else " and no known zone: the world's average electricity mix"
        ),
    )
    return mix.gwp_g_per_kwh, "mix"


def _why_no_forecast(acct: Accounting) -> str:
    plan = acct.plan
    if plan is not None and plan.decision == "no-delay-budget" and acct.late_failure is None:
        return "no forecast yet (no delay budget: it is fetched while the session runs)"
    return "no forecast"


def build_record(call: Call, usage: Usage, latency_s: float) -> tuple[CallRecord, _impacts.Impacts]:
    acct = call.acct
    tokens = max(int(usage.output_tokens or 0), 0)
    zone = _impacts.zone_to_mix_zone(_zone(acct))
    impacts = _impacts.lookup(
        call.provider, _candidates(usage.model, call.effective), tokens, latency_s, zone
    )
    intensity, source = intensity_for(acct, call.started_at, impacts)
    baseline = acct.baseline_intensity if acct.baseline_intensity is not None else intensity
    energy = impacts.energy_kwh
    record = CallRecord(
        provider=call.provider,
        requested_model=call.requested,
        effective_model=call.effective,
        output_tokens=tokens,
        input_tokens=usage.input_tokens,
        latency_s=round(latency_s, 3),
        stream=call.stream,
        energy_kwh=energy,
        energy_kwh_min=impacts.energy_kwh_min,
        energy_kwh_max=impacts.energy_kwh_max,
        intensity=intensity,
        intensity_source=source,
        emitted_g=energy * intensity,
        baseline_g=energy * baseline,
        embodied_g=impacts.embodied_gwp_g,
        adpe_usage_kgsbeq=impacts.adpe_usage_kgsbeq,
        adpe_embodied_kgsbeq=impacts.adpe_embodied_kgsbeq,
        pe_usage_mj=impacts.pe_usage_mj,
        pe_embodied_mj=impacts.pe_embodied_mj,
        water_usage_l=impacts.water_usage_l,
        water_embodied_l=impacts.water_embodied_l,
        known_model=impacts.known,
        downgraded=call.downgraded,
        tags=call.tags,
        route=call.route.name if call.route is not None else None,
        at=acct.clock.now(),
    )
    return record, impacts


def _prepare(
    current: Accounting, provider: str, model: str, *, stream: bool
) -> tuple[Call, list[tuple[EventBus, Event]]]:
    """Admit a call: raise (after its event) if refused; the call and the events to emit.

    A call made in a context whose session has completed (a task the body left running)
    answers to the nearest enclosing session still open; with none, it goes ahead
    unmeasured (logged and counted when it ends).
    """
    acct = open_session(current)
    if acct is None:
        return Call(current, provider, model, model, stream=stream, downgraded=False), []
    refusal = acct.refusal(model)
    if refusal is not None:
        error, refused = refusal
        raise _Refused(error, [(acct.bus, refused)])
    effective, downgraded = acct.choose_model(model)
    events: list[tuple[EventBus, Event]] = []
    if downgraded is not None:
        events.append((acct.bus, downgraded))
    call = Call(acct, provider, model, effective, stream=stream, downgraded=downgraded is not None)
    return call, events


class _Refused(Exception):
    def __init__(self, error: Exception, events: list[tuple[EventBus, Event]]) -> None:
        self.error = error
        self.events = events


async def admit(acct: Accounting, provider: str, model: str, *, stream: bool) -> Call:
    """Admit a call from async code: emit ``CallRefused`` and raise, or emit ``Downgraded``."""
    await _impacts.load()  # the first time, EcoLogits is imported in a worker thread
    try:
        call, events = _prepare(acct, provider, model, stream=stream)
    except _Refused as refused:
        await emit(acct, refused.events)
        raise refused.error from None
    await emit(acct, events)
    return call


def admit_sync(acct: Accounting, provider: str, model: str, *, stream: bool) -> Call:
    """Admit a call from sync code (any thread)."""
    try:
        call, events = _prepare(acct, provider, model, stream=stream)
    except _Refused as refused:
        emit_sync(acct, refused.events)
        raise refused.error from None
    emit_sync(acct, events)
    return call


async def emit(acct: Accounting, events: Iterable[tuple[EventBus, Event]]) -> None:
    for bus, event in events:
        await acct.emit(bus, event)


def emit_sync(acct: Accounting, events: Iterable[tuple[EventBus, Event]]) -> None:
    for bus, event in events:
        acct.emit_sync(bus, event)


def attach(response: Any, impacts: _impacts.Impacts | None) -> None:
    """Set ``response.impacts`` (EcoLogits' object) when asked to; never fails the call."""
    if not settings.attach_impacts or impacts is None or response is None:
        return
    if impacts.ecologits is None:
        return
    value = impacts.ecologits.model_copy()
    try:
        response.impacts = value
    except Exception:
        try:
            object.__setattr__(response, "impacts", value)
        except Exception as exc:
            log.warning(
                "ecoasync.attach_impacts_failed", type=type(response).__name__, error=repr(exc)
            )
