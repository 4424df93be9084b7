"""The running session's accounting, reachable through a ``ContextVar``.

This small module is all the instrumentation layer knows of a session: it looks up
:func:`current`, asks it which model to use and whether a call is admitted, and charges the
call afterwards. The session module creates and sets the accounting; nothing here awaits
anything but the bus.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._backend import loop_token
from ._exceptions import CarbonBudgetExceeded
from ._records import CallRecord, IntensitySource, ModelUsage, TagUsage
from .events import BudgetTripped, CallRecorded, CallRefused, Downgraded, Event, ForecastFailed

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._clock import Clock
    from ._forecast import Forecast
    from ._planner import Plan
    from ._policy import Policy
    from ._routed import RouteState

__all__ = ["Accounting", "budget_spent", "call_tags", "current", "tagged"]

_current: ContextVar[Accounting | None] = ContextVar("ecoasync_session", default=None)
_call_tags: ContextVar[tuple[str, ...]] = ContextVar("ecoasync_call_tags", default=())


def current() -> Accounting | None:
    """The accounting of the session running in this context, or None (one lookup)."""
    return _current.get()


def call_tags() -> tuple[str, ...]:
    """The tags set by :func:`tagged` around the current call."""
    return _call_tags.get()


@contextmanager
def tagged(*tags: str) -> Iterator[tuple[str, ...]]:
    """Tag the calls made inside the block (``with session.tagged("writer"): ...``)."""
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tags must be non-empty strings, got {tag!r}")
    combined = tuple(dict.fromkeys((*_call_tags.get(), *tags)))
    token = _call_tags.set(combined)
    try:
        yield combined
    finally:
        _call_tags.reset(token)


def budget_spent(spent_g: float, budget_g: float | None) -> bool:
    """The budget rule: a budget is spent once the emissions reach it."""
    return budget_g is not None and spent_g >= budget_g


@dataclass
class _ModelAcc:
    calls: int = 0
    requested: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    energy_kwh: float = 0.0
    emitted_g: float = 0.0
    known: bool = True

    def freeze(self) -> ModelUsage:
        return ModelUsage(
            calls=self.calls,
            requested=MappingProxyType(dict(self.requested)),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            energy_kwh=self.energy_kwh,
            emitted_g=self.emitted_g,
            known=self.known,
        )


@dataclass
class _TagAcc:
    calls: int = 0
    output_tokens: int = 0
    energy_kwh: float = 0.0
    emitted_g: float = 0.0

    def freeze(self) -> TagUsage:
        return TagUsage(
            calls=self.calls,
            output_tokens=self.output_tokens,
            energy_kwh=self.energy_kwh,
            emitted_g=self.emitted_g,
        )


class Accounting:
    """One session's running totals and the rules that use them. Thread-safe."""

    _lock = threading.Lock()
    """One lock for every session's counters: held for a few additions, never nested, and
    10,000 waiting sessions need not carry 10,000 locks."""

    __slots__ = (
        "_loop_thread",
        "_token",
        "baseline_g",
        "baseline_intensity",
        "baseline_source",
        "bus",
        "by_tag",
        "calls",
        "clock",
        "downgrades",
        "embodied_g",
        "emitted_g",
        "ended",
        "energy_kwh",
        "energy_kwh_max",
        "energy_kwh_min",
        "fallback_intensity",
        "forecast",
        "late_failure",
        "models",
        "name",
        "open_calls",
        "parent",
        "plan",
        "policy",
        "refused",
        "route",
        "session_id",
        "tags",
        "tripped",
        "unknown_models",
        "water_l",
    )

    def __init__(
        self,
        *,
        session_id: str,
        name: str,
        tags: tuple[str, ...],
        policy: Policy,
        bus: EventBus,
        clock: Clock,
        parent: Accounting | None,
    ) -> None:
        self.session_id = session_id
        self.name = name
        self.tags = tags
        self.policy = policy
        self.bus = bus
        self.clock = clock
        self.parent = parent
        self.forecast: Forecast | None = None
        self.plan: Plan | None = None
        self.baseline_intensity: float | None = None
        self.baseline_source: IntensitySource = "none"
        self.fallback_intensity: tuple[float, IntensitySource] | None = None
        self.late_failure: ForecastFailed | None = None  # the forecast fetched later failed
        self.calls = 0
        self.energy_kwh = 0.0
        self.energy_kwh_min = 0.0
        self.energy_kwh_max = 0.0
        self.emitted_g = 0.0
        self.baseline_g = 0.0
        self.embodied_g = 0.0
        self.downgrades = 0
        self.refused = 0
        self.tripped = False
        self.route: RouteState | None = None  # issue 15: where a routed session runs
        self.water_l = 0.0
        # made on the first call (a waiting session holds none of them)
        self.unknown_models: dict[str, None] | None = None
        self.models: dict[str, _ModelAcc] | None = None
        self.by_tag: dict[str, _TagAcc] | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self.ended = False  # Completed is built: calls finishing later go to an open ancestor
        self.open_calls: set[Callable[[], None]] | None = None  # streams not yet finished

    # --- the loop this session runs on, so that other threads can emit on it ---

    def bind_loop(self) -> None:
        self._token = loop_token()
        self._loop_thread = threading.get_ident()

    def event_fields(self, at: datetime) -> dict[str, Any]:
        """The fields every event of this session carries (id, name, tags) and its time."""
        return {
            "session_id": self.session_id,
            "session_name": self.name,
            "tags": self.tags,
            "at": at,
        }

    def ancestry(self) -> Iterator[Accounting]:
        node: Accounting | None = self
        while node is not None:
            yield node
            node = node.parent

    # --- rules for a call ---

    def intensity_at(self, when: datetime) -> tuple[float | None, IntensitySource]:
        """The grid intensity at ``when``: the slot's actual if known, else its forecast.

        Outside the forecast, the nearest slot is used; without any forecast, the fallback set
        by the instrumentation (an electricity mix), else ``(None, "none")``.
        """
        forecast = self.forecast
        if forecast:
            slot = forecast.at(when)
            if slot is None:
                slot = forecast[0] if forecast[0].start > when else forecast[-1]
            if slot.actual is not None:
                return slot.actual, "actual"
            return slot.forecast, "forecast"
        if self.fallback_intensity is not None:
            return self.fallback_intensity
        return None, "none"

    def forecast_arrived(self, forecast: Forecast, submitted: datetime) -> None:
        """The forecast fetched while the body runs (no delay budget) is here: the calls
        charged from now on use it. Too late once the session has ended (its record is final)."""
        with self._lock:
            if not self.ended:
                self.forecast = forecast
                self.baseline_intensity, self.baseline_source = self.intensity_at(submitted)

    def forecast_failed_late(self, event: ForecastFailed) -> None:
        """The forecast fetched while the body runs failed: ``event`` is emitted before
        ``Completed`` (never after it: once ended, the failure is only logged)."""
        with self._lock:
            if not self.ended:
                self.late_failure = event

    def intensity_now(self) -> tuple[float | None, IntensitySource]:
        return self.intensity_at(self.clock.now())

    def choose_model(self, model: str) -> tuple[str, Downgraded | None]:
        """The model to call: ``model``, or its fallback when the grid is at or above the
        policy's ``dirty_threshold``. Returns the event to emit when it downgrades."""
        threshold = self.policy.dirty_threshold
        if threshold is None or not self.policy.model_fallbacks:
            return model, None
        fallback = self.policy.fallback_for(model)
        if fallback is None:
            return model, None
        intensity, _ = self.intensity_now()
        if intensity is None or intensity < threshold:
            return model, None
        with self._lock:
            self.downgrades += 1
        return fallback, Downgraded(
            **self.event_fields(self.clock.now()),
            requested=model,
            effective=fallback,
            intensity=intensity,
            threshold=threshold,
        )

    def refusal(self, model: str) -> tuple[CarbonBudgetExceeded, CallRefused] | None:
        """If this session's (or an ancestor's) budget is spent, the error to raise and the
        event to emit; None if the call may go ahead."""
        for node in self.ancestry():
            budget = node.policy.budget_g
            if node.tripped or budget_spent(node.emitted_g, budget):
                assert budget is not None
                with self._lock:
                    self.refused += 1
                error = CarbonBudgetExceeded(
                    spent_g=node.emitted_g,
                    budget_g=budget,
                    session_id=node.session_id,
                    session_name=node.name,
                    model=model,
                )
                event = CallRefused(
                    **self.event_fields(self.clock.now()),
                    model=model,
                    spent_g=node.emitted_g,
                    budget_g=budget,
                )
                return error, event
        return None

    def charge(self, call: CallRecord) -> list[tuple[EventBus, Event]]:
        """Add ``call`` to this session and its ancestors; the events to emit, on which bus."""
        out: list[tuple[EventBus, Event]] = []
        for node in self.ancestry():
            with node._lock:
                was_spent = node.tripped
                node._add(call)
                total = node.emitted_g
                trips = not was_spent and budget_spent(total, node.policy.budget_g)
                if trips:
                    node.tripped = True
            if node is self:
                out.append(
                    (
                        node.bus,
                        CallRecorded(
                            **node.event_fields(call.at),
                            call=call,
                            session_total_g=total,
                        ),
                    )
                )
            if trips:
                assert node.policy.budget_g is not None
                out.append(
                    (
                        node.bus,
                        BudgetTripped(
                            **node.event_fields(call.at),
                            model=call.effective_model,
                            spent_g=total,
                            budget_g=node.policy.budget_g,
                        ),
                    )
                )
        return out

    def _add(self, call: CallRecord) -> None:
        self.calls += 1
        self.energy_kwh += call.energy_kwh
        self.energy_kwh_min += call.energy_kwh_min
        self.energy_kwh_max += call.energy_kwh_max
        self.emitted_g += call.emitted_g
        self.baseline_g += call.baseline_g
        self.embodied_g += call.embodied_g
        self.water_l += call.water_usage_l
        if not call.known_model:
            self.note_unknown(call.effective_model)
        if self.models is None:
            self.models = {}
        usage = self.models.setdefault(call.effective_model, _ModelAcc())
        usage.calls += 1
        usage.requested[call.requested_model] = usage.requested.get(call.requested_model, 0) + 1
        usage.input_tokens += call.input_tokens or 0
        usage.output_tokens += call.output_tokens
        usage.energy_kwh += call.energy_kwh
        usage.emitted_g += call.emitted_g
        usage.known = usage.known and call.known_model
        if self.by_tag is None:
            self.by_tag = {}
        for tag in call.tags or ("untagged",):
            acc = self.by_tag.setdefault(tag, _TagAcc())
            acc.calls += 1
            acc.output_tokens += call.output_tokens
            acc.energy_kwh += call.energy_kwh
            acc.emitted_g += call.emitted_g

    def note_unknown(self, model: str) -> bool:
        """Remember that ``model`` has no energy figures; whether it is the first time."""
        if self.unknown_models is None:
            self.unknown_models = {}
        first = model not in self.unknown_models
        self.unknown_models[model] = None
        return first

    # --- calls still open when the session ends ---

    def opened(self, finish: Callable[[], None]) -> None:
        """Remember a call that is charged later (a stream): :meth:`end` finishes it."""
        with self._lock:
            if self.open_calls is None:
                self.open_calls = set()
            self.open_calls.add(finish)

    def closed(self, finish: Callable[[], None]) -> None:
        with self._lock:
            if self.open_calls:
                self.open_calls.discard(finish)

    def end(self) -> None:
        """The session completes: charge the calls still open (a stream left unfinished is
        charged for what it received), then mark it ended."""
        while self.open_calls:
            with self._lock:
                finish = self.open_calls.pop() if self.open_calls else None
            if finish is not None:
                finish()
        with self._lock:  # (a forecast fetched later changes nothing after this)
            self.ended = True

    # --- emitting from wherever the call ran ---

    async def emit(self, bus: EventBus, event: Event) -> None:
        await bus.emit(event)

    def emit_sync(self, bus: EventBus, event: Event) -> None:
        """Emit from sync code: inline on the session's loop thread, else through its loop."""
        if self._token is not None and threading.get_ident() != self._loop_thread:
            try:
                anyio.from_thread.run(bus.emit, event, token=self._token)
                return
            except anyio.RunFinishedError:
                pass  # the loop is gone; deliver what can be delivered here
        bus.emit_nowait(event)

    # --- the record ---

    def frozen_models(self) -> MappingProxyType[str, ModelUsage]:
        with self._lock:
            return MappingProxyType({k: v.freeze() for k, v in (self.models or {}).items()})

    def frozen_tags(self) -> MappingProxyType[str, TagUsage]:
        with self._lock:
            return MappingProxyType({k: v.freeze() for k, v in (self.by_tag or {}).items()})

    @contextmanager
    def activate(self) -> Iterator[Accounting]:
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def set_current(acct: Accounting | None) -> object:
    """Make ``acct`` current in this context (the sync shim does this in the caller's thread)."""
    return _current.set(acct)


def reset_current(token: object) -> None:
    """Undo :func:`set_current`. From another task or context (a session left elsewhere than
    it was entered) there is nothing of this context to undo: the session still completes."""
    with suppress(ValueError):  # "created in a different Context"
        _current.reset(token)  # type: ignore[arg-type]
