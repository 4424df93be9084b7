"""Forecast providers: where carbon-intensity forecasts come from.

Every provider implements :class:`ForecastProvider` (``name`` and async
``forecast(start, end)``).
"""

from .._provider import CachingForecastProvider as CachingForecastProvider
from .._provider import ForecastProvider as ForecastProvider
from ._csv import CsvForecastProvider as CsvForecastProvider
from ._csv import read_trace as read_trace
from ._default import default_provider as default_provider
from ._static import StaticForecastProvider as StaticForecastProvider
from ._static import synthetic_day as synthetic_day

__all__ = [
    "CachingForecastProvider",
    "CsvForecastProvider",
    "ForecastProvider",
    "StaticForecastProvider",
    "default_provider",
    "read_trace",
    "synthetic_day",
]
