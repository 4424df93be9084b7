"""The provider a ``Policy`` without one uses."""

from __future__ import annotations

from .._provider import ForecastProvider

__all__ = ["default_provider"]


def default_provider() -> ForecastProvider:
    """The process-wide default provider (the keyless UK Carbon Intensity API)."""
    raise RuntimeError(
        "the default UK Carbon Intensity provider is not available in this build; "
        "pass Policy(provider=...) e.g. CsvForecastProvider('trace.csv') or StaticForecastProvider(...)"
    )
