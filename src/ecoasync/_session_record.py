"""How a session ended, and its :class:`~ecoasync.SessionRecord`: the status its body's
exception (or none) gives, and the record built from its accounting once it has completed.

Layer: session. Imports values, the event-loop seam (``_backend``, to tell a cancellation)
and the accounting (``_context``); nothing that plans or fetches.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ._backend import is_cancellation
from ._context import budget_spent
from ._exceptions import CarbonBudgetExceeded
from ._records import SessionRecord, Status

if TYPE_CHECKING:
    from ._context import Accounting
    from ._job import PlannedJob

__all__ = ["build_record", "ending"]


def ending(acct: Accounting, exc: BaseException | None) -> tuple[Status, str | None]:
    """The session's status and error after its body raised ``exc`` (None: it returned)."""
    if exc is None:
        return ("aborted" if acct.tripped else "completed"), None
    if isinstance(exc, KeyboardInterrupt | GeneratorExit) or is_cancellation(exc):
        return "cancelled", None  # (GeneratorExit: an async generator closed early)
    if isinstance(exc, CarbonBudgetExceeded):
        return "aborted", str(exc)
    return "failed", f"{type(exc).__qualname__}: {exc}"[:500]


def build_record(
    acct: Accounting,
    job: PlannedJob | None,
    submitted: datetime,
    started: datetime | None,
    ended: datetime,
    status: Status,
    error: str | None,
) -> SessionRecord:
    """The record of the session ``acct`` accounts for (``job``: the queued job it ran)."""
    plan_ = acct.plan
    policy = acct.policy
    run_intensity, run_source = (
        acct.intensity_at(started) if started is not None else (None, "none")
    )
    signal = plan_.signal if plan_ else (acct.forecast.signal if acct.forecast else None)
    if job is not None:  # the budget and the wait count from the first submission
        submitted = job.submitted_at
        if signal is None and acct.forecast is not None:
            signal = acct.forecast.signal  # (its plan travels without one)
    return SessionRecord(
        session_id=acct.session_id,
        name=acct.name,
        tags=acct.tags,
        parent_id=acct.parent.session_id if acct.parent else None,
        status=status,
        error=error,
        submitted_at=submitted,
        planned_start=plan_.start if plan_ else submitted,
        started_at=started,
        ended_at=ended,
        delay_s=((started or ended) - submitted).total_seconds(),
        max_delay_s=policy.max_delay.total_seconds(),
        decision=plan_.decision
        if plan_
        else ("forecast-unavailable" if status == "failed" else "not-planned"),
        provider=plan_.provider if plan_ else None,
        zone=plan_.zone if plan_ else None,
        signal=str(signal) if signal else None,
        forecast_error=(plan_.forecast_error if plan_ else None)
        or (acct.late_failure.error if acct.late_failure else None),
        now_intensity=plan_.now_intensity if plan_ else None,
        planned_intensity=plan_.planned_intensity if plan_ else None,
        baseline_intensity=acct.baseline_intensity,
        baseline_intensity_source=acct.baseline_source,
        run_intensity=run_intensity,
        run_intensity_source=run_source,
        calls=acct.calls,
        energy_kwh=acct.energy_kwh,
        energy_kwh_min=acct.energy_kwh_min,
        energy_kwh_max=acct.energy_kwh_max,
        emitted_g=acct.emitted_g,
        baseline_g=acct.baseline_g,
        embodied_g=acct.embodied_g,
        downgrades=acct.downgrades,
        refused_calls=acct.refused,
        budget_g=policy.budget_g,
        budget_tripped=acct.tripped or budget_spent(acct.emitted_g, policy.budget_g),
        unknown_models=tuple(acct.unknown_models or ()),
        models=acct.frozen_models(),
        by_tag=acct.frozen_tags(),
        route=acct.route.current.name if acct.route is not None else None,
        failed_routes=tuple(acct.route.failed) if acct.route is not None else (),
        water_l=acct.water_l,
        job_id=job.job_id if job else None,
        queue=job.queue if job else None,
        queue_wait_s=((started or ended) - job.submitted_at).total_seconds() if job else None,
        late_s=(started - job.start).total_seconds() if job and started else None,
        hops=job.hops if job else 0,
        replanned=job.replanned if job else False,
    )
