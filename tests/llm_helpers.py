"""Shared pieces for the instrumentation tests: grids, messages, the fake LLM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ecologits.utils.range_value import RangeValue

from ecoasync import Forecast, Slot
from ecoasync.testing import FakeProvider

START = datetime(2026, 3, 18, tzinfo=UTC)  # VirtualClock's default start
MSG: list[Any] = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-sonnet-4-6"


def grid(intensity: float, *, hours: int = 48, zone: str | None = "GB") -> FakeProvider:
    """A forecast provider with the same intensity (forecast = actual) in every half-hour."""
    step = timedelta(minutes=30)
    slots = [
        Slot(START + i * step, START + (i + 1) * step, intensity, intensity)
        for i in range(hours * 2)
    ]
    return FakeProvider(Forecast(slots, provider="test-grid", zone=zone))


def span(value: float | RangeValue) -> tuple[float, float, float]:
    """(mean, min, max) of an EcoLogits value (a number or a range)."""
    if isinstance(value, RangeValue):
        return (value.min + value.max) / 2, value.min, value.max
    return float(value), float(value), float(value)
