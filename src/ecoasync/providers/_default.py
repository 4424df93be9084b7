"""The provider a ``Policy`` without one uses.

Layer: providers; imports the provider protocol and the UK provider.
"""

from __future__ import annotations

import threading

from .._provider import ForecastProvider
from ._uk import UKCarbonIntensityProvider

__all__ = ["default_provider"]

_LOCK = threading.Lock()
_DEFAULT: UKCarbonIntensityProvider | None = None


def default_provider() -> ForecastProvider:
    """The process-wide default provider: the keyless UK Carbon Intensity API, national.

    Created on first use and shared by every session that has no ``Policy(provider=...)``, so
    they share its cache and its requests in flight.
    """
    global _DEFAULT
    provider = _DEFAULT
    if provider is None:
        with _LOCK:
            if _DEFAULT is None:
                _DEFAULT = UKCarbonIntensityProvider()
            provider = _DEFAULT
    return provider
