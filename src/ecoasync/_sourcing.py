"""Where a session's grid figures come from: its provider's forecast and history, each within
the policy's ``forecast_timeout``, fetched on entry or (with no delay budget) while the body
runs; and what a session does when the forecast fails (``on_forecast_error``). The queue
adapters fetch through the same helpers.

Layer: session. Imports values, the decisions' constants (the calibration's look-back and
reach), the providers (the default one, lazily), the accounting (``_context``) and the routes'
fallback (``_routed``, lazily); never the session manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from ._calibrate import LOOKBACK, MAX_SHIFT
from ._exceptions import ForecastUnavailable, PolicyError
from ._forecast import Forecast
from ._log import get_logger
from ._planner import Plan, run_now_plan
from ._provider import ForecastBy, ForecastProvider, HistoryBy, HistoryNowait, HistoryProvider
from .events import ForecastFailed

if TYPE_CHECKING:
    from ._context import Accounting
    from ._job import PlannedJob
    from ._policy import Policy

__all__ = [
    "default_provider",
    "failure",
    "fetch_history",
    "fetch_later",
    "fetches_later",
    "forecast_end",
    "forecast_failed",
    "provider_name",
    "reads_history",
    "within",
]

log = get_logger()


def default_provider() -> ForecastProvider:
    """The provider of a policy that names none (:func:`ecoasync.providers.default_provider`)."""
    from .providers import default_provider as default

    return default()


def provider_name(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else type(provider).__name__


def reads_history(policy: Policy) -> bool:
    """Whether plans under ``policy`` read the grid's history (the calibration)."""
    return policy.strategy == "calibrated" and bool(policy.max_delay)


def fetches_later(policy: Policy) -> bool:
    """Whether a session enters without its forecast when none is in memory.

    With no delay budget there is nothing to wait for: the session runs now, its forecast is
    fetched while the body runs, and calls are charged at the grid's intensity once it is
    here (before that, and if it never comes, at the zone's annual mix, marked ``"mix"``).
    A policy that decides something from the forecast before the body runs still fetches it
    on entry: ``on_forecast_error="raise"``, routes, or downgrades on a dirty grid.
    """
    return (
        not policy.max_delay
        and policy.routes is None
        and policy.on_forecast_error == "run_now"
        and (policy.dirty_threshold is None or not policy.model_fallbacks)
    )


def forecast_end(policy: Policy, submitted: datetime) -> datetime:
    """The end of the forecast a session needs: its delay budget and its window."""
    window = policy.expected_duration or timedelta(hours=1)
    if reads_history(policy):
        window += MAX_SHIFT  # the calibration reads the forecast a little further
    return submitted + policy.max_delay + window


async def within(
    call: Callable[[datetime, datetime], Awaitable[Forecast]],
    start: datetime,
    end: datetime,
    *,
    deadline: float,
) -> Forecast:
    """``call(start, end)``, or ``TimeoutError`` at ``deadline`` (``anyio.current_time()``)."""
    with anyio.CancelScope(deadline=deadline):
        return await call(start, end)
    raise TimeoutError


async def fetch_history(
    provider: object, submitted: datetime, policy: Policy, deadline: float | None = None
) -> Forecast | None:
    """The provider's closed slots with actuals over the calibration's look-back, or None.

    Only a :class:`HistoryProvider` is asked, until ``deadline`` (the entry's: what the
    forecast left; None: the forecast came from memory, so ``forecast_timeout`` from now); a
    failure or a timeout falls back to the forecast alone (logged, never raised).
    """
    if not isinstance(provider, HistoryProvider):
        return None
    start = submitted - LOOKBACK
    try:
        history = (
            provider.history_nowait(start, submitted)
            if isinstance(provider, HistoryNowait)
            else None
        )
        if history is None:
            if deadline is None:
                deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
            elif deadline <= anyio.current_time():
                raise TimeoutError("the forecast took all of forecast_timeout")
            if isinstance(provider, HistoryBy):
                history = await provider.history_by(start, submitted, deadline)
            else:
                history = await within(provider.history, start, submitted, deadline=deadline)
    except Exception as exc:
        log.warning(
            "ecoasync.history_failed",
            provider=provider_name(provider),
            error=f"{type(exc).__name__}: {exc}"[:300],
            action="forecast-only",
        )
        return None
    return history if isinstance(history, Forecast) else None


async def fetch_later(
    acct: Accounting, provider: ForecastProvider, submitted: datetime, end: datetime
) -> None:
    """The forecast of a session with no delay budget, fetched while its body runs and
    bounded by ``forecast_timeout``: the calls charged once it is here use it. A failure
    is logged at once, and reported (``ForecastFailed``) before ``Completed``."""
    deadline = anyio.current_time() + acct.policy.forecast_timeout.total_seconds()
    try:
        if isinstance(provider, ForecastBy):
            forecast = await provider.forecast_by(submitted, end, deadline)
        else:
            forecast = await within(provider.forecast, submitted, end, deadline=deadline)
    except Exception as exc:
        acct.forecast_failed_late(failure(acct, acct.clock.now(), provider, exc))
        return
    acct.forecast_arrived(forecast, submitted)


def failure(acct: Accounting, at: datetime, provider: object, exc: Exception) -> ForecastFailed:
    """Log a forecast that failed, and the event that says so."""
    policy = acct.policy
    name = provider_name(provider) if provider is not None else "routes"
    if isinstance(exc, TimeoutError):
        error = f"no answer within forecast_timeout={policy.forecast_timeout.total_seconds():g}s"
    elif isinstance(exc, ForecastUnavailable):
        error = str(exc)
    else:
        error = f"{type(exc).__name__}: {exc}"
    zone = getattr(exc, "zone", None) or getattr(provider, "zone", None)
    log.warning(
        "ecoasync.forecast_failed",
        provider=name,
        zone=zone,
        error=error,
        action=policy.on_forecast_error,
        session=acct.name,
    )
    return ForecastFailed(
        **acct.event_fields(at),
        provider=name,
        zone=zone if isinstance(zone, str) else None,
        error=error,
        action=policy.on_forecast_error,
    )


async def forecast_failed(
    acct: Accounting,
    submitted: datetime,
    exc: Exception,
    *,
    provider: ForecastProvider | None,
    planned: PlannedJob | None,
) -> Plan:
    """The plan of a session whose forecast failed (``provider``: the policy's, if it names
    one), after ``ForecastFailed``: run now, or the queued job's plan as it stands; raise
    ``ForecastUnavailable`` if the policy says ``on_forecast_error="raise"``. A session with
    routes runs at home (a constraint no route meets is raised as it is)."""
    policy = acct.policy
    if policy.routes is not None:  # a constraint is no forecast failure
        from ._routed import failed_routes

        if isinstance(exc, PolicyError):
            raise exc
        acct.route = await failed_routes(acct, policy.routes, submitted, exc)
    source = provider or (None if policy.routes is not None else default_provider())
    failed = failure(acct, submitted, source, exc)
    await acct.bus.emit(failed)
    name, zone, error = failed.provider, failed.zone, failed.error
    if policy.on_forecast_error == "raise":
        if isinstance(exc, ForecastUnavailable):
            raise exc
        raise ForecastUnavailable(
            f"forecast from {name} failed: {error}", provider=name, zone=zone, cause=error
        ) from exc
    if planned is not None:  # the plan stands; only the accounting lacks a forecast
        return planned.as_plan(window=policy.expected_duration or timedelta(minutes=30))
    return run_now_plan(
        submitted, policy, decision="forecast-unavailable", forecast_error=error, provider=name
    )
