"""What the queue adapters share: plan a job (and claim its slot) when it is enqueued, and
decide what to do when it arrives at a worker. The queue holds the wait in between.

Layer: edges (queue adapters); imports any layer below, up to the session, as a user's
program would.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import anyio

from .._calibrate import MAX_SHIFT
from .._claims import claim_slot, ledger_of, release_slot
from .._exceptions import ForecastUnavailable
from .._forecast import Forecast
from .._job import EARLY, PlannedJob, arrival
from .._log import get_logger
from .._planner import Assessment, assess, run_now_plan, window_mean
from .._provider import ForecastBy, ForecastNowait
from .._records import IntensitySource
from .._sourcing import fetch_history, provider_name, within

if TYPE_CHECKING:
    from .._policy import Policy
    from .._provider import ForecastProvider

__all__ = ["Action", "on_arrival", "plan_job", "release"]

log = get_logger()
_RNG = random.Random()

Action = Literal["run", "defer"]


def _provider(policy: Policy) -> ForecastProvider:
    if policy.provider is not None:
        return policy.provider
    from ..providers import default_provider

    return default_provider()


def _window(policy: Policy) -> timedelta:
    return policy.expected_duration or timedelta(minutes=30)


async def _forecast(policy: Policy, now: datetime, until: datetime) -> Forecast:
    """The forecast a plan made at ``now`` reads up to ``until`` (a session's, without it)."""
    provider = _provider(policy)
    end = until + (policy.expected_duration or timedelta(hours=1))
    if policy.strategy == "calibrated":
        end += MAX_SHIFT
    if isinstance(provider, ForecastNowait):
        cached = provider.forecast_nowait(now, end)
        if cached is not None:
            return cached
    deadline = anyio.current_time() + policy.forecast_timeout.total_seconds()
    if isinstance(provider, ForecastBy):
        return await provider.forecast_by(now, end, deadline)
    return await within(provider.forecast, now, end, deadline=deadline)


def _baseline(forecast: Forecast | None, now: datetime) -> tuple[float | None, IntensitySource]:
    slot = forecast.at(now) if forecast else None
    if slot is None:
        return None, "none"
    return (slot.actual, "actual") if slot.actual is not None else (slot.forecast, "forecast")


async def plan_job(
    policy: Policy,
    *,
    job_id: str,
    queue: str,
    now: datetime,
    previous: PlannedJob | None = None,
) -> PlannedJob:
    """Plan a job submitted (or, with ``previous``, arriving again) at ``now`` and, if it
    waits, claim its slot in the policy's ledger (``Policy.ledger``, else the process's
    :func:`~ecoasync.default_ledger`) as a waiting session does: the same choices, the same
    lease (the latest it can start, plus its window and a margin). A failing provider makes
    it run at once (it raises only if the policy says ``on_forecast_error="raise"``); a
    failing ledger leaves it unclaimed (logged).

    A job planned again keeps its first submission and deadline: only what is left of the
    delay budget is searched, and its old claim is given back before the new one is made.
    """
    deadline = previous.deadline if previous is not None else now + policy.max_delay
    left = max(deadline - now, timedelta(0))
    rules = policy.evolve(max_delay=left) if previous is not None else policy
    ledger = ledger_of(policy)
    who = {"job_id": job_id}
    # planning as a whole (the old claim given back, the new one made) is bounded as a
    # session's entry is: a hung ledger costs the spreading, never the enqueue
    by = anyio.current_time() + policy.forecast_timeout.total_seconds()
    forecast: Forecast | None = None
    assessment: Assessment | None = None
    try:
        forecast = await _forecast(rules, now, deadline)
    except Exception as exc:  # the provider failed: run at once, as sessions do
        error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning(
            "ecoasync.forecast_failed", provider=provider_name(_provider(policy)), error=error
        )
        if isinstance(exc, ForecastUnavailable) and policy.on_forecast_error == "raise":
            raise
        plan_ = run_now_plan(
            now,
            rules,
            decision="forecast-unavailable",
            forecast_error=error,
            provider=provider_name(_provider(policy)),
        )
    else:
        history = None
        if rules.strategy == "calibrated" and left > timedelta(0):
            history = await fetch_history(_provider(policy), now, rules)
        assessment = assess(forecast, now, rules, history=history)
    if previous is not None and previous.claim is not None:
        await release_slot(ledger, previous.claim, by=by, who=who)  # else its lease ends it
    claim = None
    if assessment is not None:
        if assessment.decision == "wait":  # only jobs that wait for a slot can herd into it
            claim = await claim_slot(ledger, job_id, assessment, by=by, who=who)
        plan_ = assessment.plan(claim.start if claim is not None else None, rng=_RNG)
    baseline = (
        (previous.baseline_intensity, previous.baseline_source)
        if previous is not None
        else _baseline(forecast, now)
    )
    return PlannedJob.of(
        plan_,
        job_id=job_id,
        queue=queue,
        baseline=baseline,
        claim=claim,
        submitted_at=previous.submitted_at if previous is not None else None,
        deadline=deadline,
        hops=previous.hops if previous is not None else 0,
        replanned=previous.replanned if previous is not None else False,
    )


async def release(policy: Policy, job: PlannedJob) -> None:
    """Give back the claim of a job that will not run (never raises; a job that runs gives
    it back when its session ends)."""
    if job.claim is not None:
        await release_slot(ledger_of(policy), job.claim, who={"job_id": job.job_id})


async def on_arrival(
    job: PlannedJob,
    policy: Policy,
    *,
    now: datetime,
    replan_margin: float,
    early: timedelta = EARLY,
) -> tuple[Action, PlannedJob]:
    """What a worker does with ``job`` arriving at ``now``: ``("run", job)``, to run in
    ``carbon_session(policy, planned=job)``, or ``("defer", job)``, to send on to the queue
    for ``job.start`` (counting one more hop).

    With a fresh forecast for the window the job would run in, its plan stands while that is
    at most ``replan_margin`` (a fraction) above the planned intensity. More than ``early``
    before its start, the job hops (same plan, same claim) or, if its slot has gone dirtier
    than that, is planned again within what is left of its budget. Within ``early``, it runs
    and its session waits out the rest. At or after its start, it runs, or, if its slot has
    gone dirty and at least one slot of budget is left, it is planned again (it waits for a
    better slot, or runs now). The deadline never moves. Never raises for a failing provider
    or ledger.
    """
    intensity = None
    try:
        forecast = await _forecast(policy, now, max(job.deadline, now))
    except Exception:  # no fresh forecast: keep the plan
        forecast = None
    slot = forecast._columns().length if forecast else None
    if forecast:  # the planner's window (the work's duration, else one slot) where it would run
        window = policy.expected_duration or slot or _window(policy)
        intensity = window_mean(forecast, max(now, job.start), window)
    what = arrival(
        job,
        now,
        intensity=intensity,
        replan_margin=replan_margin,
        slot=slot or timedelta(minutes=30),
        early=early,
    )
    if what == "hop":
        return "defer", dataclasses.replace(job, hops=job.hops + 1)
    if what != "replan":
        return "run", job
    again = await plan_job(policy, job_id=job.job_id, queue=job.queue, now=now, previous=job)
    again = dataclasses.replace(again, hops=job.hops + 1, replanned=True)
    if again.start > now + early:
        return "defer", again
    return "run", again
