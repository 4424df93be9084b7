"""The exceptions ecoasync raises.

::

    EcoAsyncError                      root of everything ecoasync raises on its own
    ├── PolicyError (+ ValueError)     a Policy field or another option has a bad value
    │   └── RouteError                 routes that cannot be used as given (ecoasync._routes)
    ├── ForecastError                  a forecast could not be had or used
    │   ├── ForecastUnavailable        a provider failed (network, HTTP status, payload)
    │   │   └── ForecastTimeout (+ TimeoutError)  no answer by the caller's deadline
    │   └── ForecastDataError (+ ValueError)  a trace file or payload is malformed
    ├── CarbonBudgetExceeded           a call was refused: the session's budget is spent
    ├── UnknownRegionError (+ ValueError)  a cloud region the table does not know
    ├── SimulationError (+ ValueError)  a trace cannot be replayed (``ecoasync simulate``)
    ├── TelemetryInputError            a telemetry file cannot be read at all (``ecoasync report``)
    │   └── TelemetryConflict          two records of one session disagree
    └── PlotInputError                 an input cannot be plotted (``ecoasync plot``)

Misuse that is a programming error (calling the sync API from inside an event loop,
say) raises plain ``RuntimeError`` or ``TypeError`` with a message that says what to
use instead. The user's own exceptions are never wrapped.

Layer: values. Imports nothing from ecoasync.
"""

from __future__ import annotations

__all__ = [
    "CarbonBudgetExceeded",
    "EcoAsyncError",
    "ForecastDataError",
    "ForecastError",
    "ForecastTimeout",
    "ForecastUnavailable",
    "PlotInputError",
    "PolicyError",
    "SimulationError",
    "TelemetryConflict",
    "TelemetryInputError",
    "UnknownRegionError",
]


class EcoAsyncError(Exception):
    """The root of every exception ecoasync raises on its own."""


class PolicyError(EcoAsyncError, ValueError):
    """A policy field (or another option) has a value that is not allowed.

    ``field`` names the option, ``value`` is what was given.
    """

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class ForecastError(EcoAsyncError):
    """A forecast could not be obtained or used."""


class ForecastUnavailable(ForecastError):
    """A forecast provider failed to answer.

    ``provider`` is the provider's name, ``zone`` the grid zone asked for (if any) and
    ``cause`` a short, secret-free description of what went wrong. The original error
    is chained as ``__cause__``.
    """

    def __init__(
        self, message: str, *, provider: str, zone: str | None = None, cause: str = ""
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.zone = zone
        self.cause = cause


class ForecastTimeout(ForecastUnavailable, TimeoutError):
    """A provider had no answer by the deadline it was given (``forecast_by``, ``history_by``).

    Both a :class:`ForecastUnavailable` and a :class:`TimeoutError`: sessions report it
    exactly like their own ``forecast_timeout`` expiring. Every caller waiting on the same
    shared request gets it at once.
    """


class ForecastDataError(ForecastError, ValueError):
    """Forecast data (a trace file, a payload) is malformed.

    ``source`` names the file or URL path and ``line`` the 1-based line, when known.
    """

    def __init__(self, message: str, *, source: str, line: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


class CarbonBudgetExceeded(EcoAsyncError):
    """A call was refused because the session's carbon budget is already spent.

    ``spent_g`` and ``budget_g`` are in gCO2eq; ``session_name`` and ``session_id``
    identify the session whose budget is spent (a parent's, for a nested session).
    """

    def __init__(
        self,
        *,
        spent_g: float,
        budget_g: float,
        session_id: str,
        session_name: str,
        model: str | None = None,
    ) -> None:
        what = f"call to {model!r}" if model else "call"
        super().__init__(
            f"{what} refused: session {session_name!r} has spent {spent_g:.4g} gCO2eq of its "
            f"{budget_g:.4g} gCO2eq budget; raise Policy(budget_g=...) or start a new session"
        )
        self.spent_g = spent_g
        self.budget_g = budget_g
        self.session_id = session_id
        self.session_name = session_name
        self.model = model


class UnknownRegionError(EcoAsyncError, ValueError):
    """A cloud region (or cloud) that the table does not know.

    ``region`` is what was asked for, ``suggestions`` the closest known names.
    """

    def __init__(self, message: str, *, region: str, suggestions: tuple[str, ...]) -> None:
        super().__init__(message)
        self.region = region
        self.suggestions = suggestions


class SimulationError(EcoAsyncError, ValueError):
    """The trace cannot be replayed (with the reason and the fix)."""


class TelemetryInputError(EcoAsyncError):
    """A telemetry input cannot be read at all (missing, a directory, unreadable, or none of
    its lines is telemetry)."""


class TelemetryConflict(TelemetryInputError):
    """Two records of one session disagree: adding either up would be a guess."""


class PlotInputError(EcoAsyncError):
    """The input cannot be plotted (with the reason)."""
