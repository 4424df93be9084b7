"""Forecast providers: where carbon-intensity forecasts come from.

Every provider implements :class:`ForecastProvider` (``name`` and async
``forecast(start, end)``); what more it can do is a capability, a protocol checked with
``isinstance``: :class:`HistoryProvider` (async ``history(start, end)``),
:class:`ForecastNowait` and :class:`HistoryNowait` (answers from memory),
:class:`ForecastBy` and :class:`HistoryBy` (requests bounded by a deadline). Live providers share one HTTP core (timeouts, retries,
a TTL cache and single-flight); their cloud-region zones come from
:mod:`ecoasync.providers.regions`.
"""

from .._provider import CachingForecastProvider as CachingForecastProvider
from .._provider import ForecastBy as ForecastBy
from .._provider import ForecastNowait as ForecastNowait
from .._provider import ForecastProvider as ForecastProvider
from .._provider import HistoryBy as HistoryBy
from .._provider import HistoryNowait as HistoryNowait
from .._provider import HistoryProvider as HistoryProvider
from . import regions as regions
from ._csv import CsvForecastProvider as CsvForecastProvider
from ._csv import read_trace as read_trace
from ._default import default_provider as default_provider
from ._electricitymaps import ElectricityMapsProvider as ElectricityMapsProvider
from ._fallback import FallbackProvider as FallbackProvider
from ._http import Retry as Retry
from ._static import StaticForecastProvider as StaticForecastProvider
from ._static import synthetic_day as synthetic_day
from ._uk import IntensityRow as IntensityRow
from ._uk import UKCarbonIntensityProvider as UKCarbonIntensityProvider
from ._watttime import WattTimeProvider as WattTimeProvider
from .regions import UnknownRegionError as UnknownRegionError
from .regions import zone_for as zone_for

__all__ = [
    "CachingForecastProvider",
    "CsvForecastProvider",
    "ElectricityMapsProvider",
    "FallbackProvider",
    "ForecastBy",
    "ForecastNowait",
    "ForecastProvider",
    "HistoryBy",
    "HistoryNowait",
    "HistoryProvider",
    "IntensityRow",
    "Retry",
    "StaticForecastProvider",
    "UKCarbonIntensityProvider",
    "UnknownRegionError",
    "WattTimeProvider",
    "default_provider",
    "read_trace",
    "regions",
    "synthetic_day",
    "zone_for",
]
