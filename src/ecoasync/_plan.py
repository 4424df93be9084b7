"""``Plan`` and ``Decision``: what the planner answers, as plain values.

Layer: values. Imports the other values only (``_forecast``): the events, the records and the
bus read plans without depending on the planner or the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ._forecast import Signal

__all__ = ["Decision", "Plan"]

Decision = Literal[
    "wait",  # a greener start was found and is worth the wait
    "now-is-best",  # no start in the budget beats now
    "below-min-improvement",  # something beats now, but by less than min_improvement
    "no-delay-budget",  # max_delay is 0
    "no-forecast",  # the forecast covers none of the budget
    "forecast-unavailable",  # the provider failed; on_forecast_error="run_now"
]


@dataclass(frozen=True, slots=True)
class Plan:
    """When the work starts, and why.

    Times are UTC. ``now_intensity`` is the forecast mean over the work's window if it started
    at once, ``planned_intensity`` the same at the planned start (both gCO2eq/kWh, ``None``
    without a forecast). ``candidates`` counts the start times compared.
    """

    created_at: datetime
    start: datetime
    deadline: datetime
    decision: Decision
    now_intensity: float | None
    planned_intensity: float | None
    candidates: int
    slot_start: datetime
    jitter: timedelta
    window: timedelta
    provider: str | None = None
    zone: str | None = None
    signal: Signal | None = None
    forecast_error: str | None = None

    @property
    def delay(self) -> timedelta:
        """How long the work waits: ``start - created_at``."""
        return self.start - self.created_at

    @property
    def waits(self) -> bool:
        return self.start > self.created_at

    @property
    def improvement(self) -> float | None:
        """The fraction by which the planned window's forecast beats now's (0.25 = 25 % lower)."""
        if self.now_intensity is None or self.planned_intensity is None or self.now_intensity <= 0:
            return None
        return 1.0 - self.planned_intensity / self.now_intensity

    @property
    def reason(self) -> str:
        """One sentence a person can read."""
        if self.decision == "wait":
            assert self.planned_intensity is not None and self.now_intensity is not None
            return (
                f"waiting {_hm(self.delay)} for {self.planned_intensity:.0f} gCO2eq/kWh instead of "
                f"{self.now_intensity:.0f} now ({(self.improvement or 0) * 100:.0f} % lower; "
                f"best of {self.candidates} starts before {self.deadline:%H:%M}Z)"
            )
        if self.decision == "now-is-best":
            return f"running now: no start of {self.candidates} before {self.deadline:%H:%M}Z beats now"
        if self.decision == "below-min-improvement":
            return (
                f"running now: the best start would be {(self.improvement or 0) * 100:.1f} % lower, "
                "under the policy's min_improvement"
            )
        if self.decision == "no-delay-budget":
            return "running now: max_delay is 0"
        if self.decision == "no-forecast":
            return "running now: the forecast covers none of the delay budget"
        return f"running now: the forecast failed ({self.forecast_error})"


def _hm(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
