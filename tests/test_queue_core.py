"""Planning a queued job and deciding on its arrival, without a queue (pure parts + a ledger)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import ecoasync
from ecoasync import Forecast, Slot
from ecoasync.providers import StaticForecastProvider
from ecoasync.queues._core import on_arrival, plan_job
from ecoasync.testing import FailingProvider
from tests.fleet_util import T0

HALF = timedelta(minutes=30)


def grid(values: dict[int, float], *, default: float = 300.0) -> Forecast:
    """Half-hours from T0 on: ``values[i]`` for the i-th, ``default`` elsewhere."""
    slots = [
        Slot(T0 + i * HALF, T0 + (i + 1) * HALF, values.get(i, default)) for i in range(-4, 24)
    ]
    return Forecast(slots, provider="grid", zone="GB")


def policy(forecast: Forecast, ledger: ecoasync.SlotLedger | None = None) -> ecoasync.Policy:
    return ecoasync.Policy(
        max_delay="4h",
        provider=StaticForecastProvider(forecast),
        jitter="0m",
        strategy="lowest",
        ledger=ecoasync.SlotLedger() if ledger is None else ledger,
    )


def held(ledger: ecoasync.SlotLedger) -> dict[datetime, int]:
    """The ledger's live claims per slot of GB (the next day)."""
    return ledger.loads_nowait("GB", T0, T0 + timedelta(days=1), now=T0)


async def test_a_job_is_planned_claimed_and_keeps_its_baseline() -> None:
    ledger = ecoasync.SlotLedger()
    job = await plan_job(policy(grid({4: 100.0}), ledger), job_id="j", queue="celery", now=T0)
    assert job.start == T0 + 4 * HALF and job.decision == "wait"
    assert job.submitted_at == T0 and job.deadline == T0 + timedelta(hours=4)
    assert job.planned_intensity == 100.0 and job.baseline_intensity == 300.0
    assert job.claim is not None and job.claim.start == job.start
    assert held(ledger) == {job.claim.slot: 1}
    # the lease of a waiting session: the latest start, plus the window and 15 minutes
    assert job.claim.expires_at == T0 + timedelta(hours=4) + HALF + timedelta(minutes=15)


async def test_on_time_and_still_green_it_runs() -> None:
    rules = policy(grid({4: 100.0}))
    job = await plan_job(rules, job_id="j", queue="celery", now=T0)
    action, same = await on_arrival(job, rules, now=job.start, replan_margin=0.1)
    assert (action, same) == ("run", job)


async def test_an_early_arrival_hops_with_its_plan_and_claim() -> None:
    ledger = ecoasync.SlotLedger()
    rules = policy(grid({4: 100.0}), ledger)
    job = await plan_job(rules, job_id="j", queue="celery", now=T0)
    action, hop = await on_arrival(job, rules, now=T0 + HALF, replan_margin=0.1)
    assert action == "defer" and hop == dataclasses.replace(job, hops=1)
    assert job.claim is not None and held(ledger) == {job.claim.slot: 1}


async def test_a_hop_inside_the_green_stretch_keeps_its_place() -> None:
    """Planning again at a hop would find "now" best inside the green stretch, and a herd
    spread over its slots would start at once: the plan stands while its slot stays green."""
    rules = policy(grid({2: 100.0, 3: 100.5, 4: 101.0}))
    jobs = [await plan_job(rules, job_id=f"j{i}", queue="celery", now=T0) for i in range(3)]
    assert sorted(j.start for j in jobs) == [T0 + 2 * HALF, T0 + 3 * HALF, T0 + 4 * HALF]
    for j in jobs:
        action, hop = await on_arrival(j, rules, now=T0 + 2 * HALF, replan_margin=0.1)
        assert action == ("run" if j.start == T0 + 2 * HALF else "defer")
        assert hop.start == j.start


async def test_an_early_arrival_whose_slot_went_dirty_is_planned_again() -> None:
    ledger = ecoasync.SlotLedger()
    job = await plan_job(policy(grid({4: 100.0}), ledger), job_id="j", queue="celery", now=T0)
    later = policy(grid({4: 250.0, 6: 90.0}), ledger)
    action, again = await on_arrival(job, later, now=T0 + HALF, replan_margin=0.1)
    assert action == "defer" and again.start == T0 + 6 * HALF and again.replanned
    assert again.claim is not None and held(ledger) == {again.claim.slot: 1}


async def test_a_slot_gone_dirty_is_planned_again_within_the_budget() -> None:
    ledger = ecoasync.SlotLedger()
    job = await plan_job(policy(grid({4: 100.0}), ledger), job_id="j", queue="celery", now=T0)
    later = policy(grid({4: 250.0, 6: 90.0}), ledger)  # the forecast has moved the green slot
    action, again = await on_arrival(job, later, now=job.start, replan_margin=0.1)
    assert action == "defer" and again.start == T0 + 6 * HALF
    assert again.replanned and again.hops == 1 and again.planned_intensity == 90.0
    assert again.claim is not None and held(ledger) == {again.claim.slot: 1}
    # nothing better left: it runs now, and its claim is given back
    worse = policy(grid({4: 250.0}), ledger)
    action, now_ = await on_arrival(again, worse, now=job.start, replan_margin=0.1)
    assert action == "run" and now_.replanned and now_.start == job.start
    assert now_.claim is None and held(ledger) == {}


async def test_a_dirty_slot_with_under_a_slot_of_budget_left_runs() -> None:
    job = await plan_job(policy(grid({7: 100.0})), job_id="j", queue="celery", now=T0)
    assert job.start == T0 + 7 * HALF
    worse = policy(grid({7: 250.0, 8: 90.0}))
    action, same = await on_arrival(
        job, worse, now=job.start + timedelta(minutes=10), replan_margin=0.1
    )
    assert action == "run" and same == job


async def test_a_failing_provider_runs_the_job_at_once() -> None:
    ledger = ecoasync.SlotLedger()
    rules = ecoasync.Policy(max_delay="4h", provider=FailingProvider(), ledger=ledger)
    job = await plan_job(rules, job_id="j", queue="celery", now=T0)
    assert job.decision == "forecast-unavailable" and job.start == T0 and job.claim is None
    assert await on_arrival(job, rules, now=T0, replan_margin=0.1) == ("run", job)
    assert len(ledger) == 0
