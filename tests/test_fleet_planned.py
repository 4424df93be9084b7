"""A queued job's session: the queue held the wait, the worker's session knows its plan."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecoasync
from ecoasync._job import EARLY, PlannedJob, arrival, hop_until
from ecoasync._ledger import Claim
from ecoasync.events import Completed, Planned, Started
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock, capture_events
from tests.fleet_util import T0

DAY = synthetic_day(T0.replace(hour=0), days=2)
SUBMITTED = T0 - timedelta(hours=3)
START = T0


def job(**changes: object) -> PlannedJob:
    fields: dict[str, object] = {
        "job_id": "job-42",
        "queue": "celery",
        "submitted_at": SUBMITTED,
        "start": START,
        "deadline": SUBMITTED + timedelta(hours=6),
        "decision": "wait",
        "now_intensity": 200.0,
        "planned_intensity": 120.0,
        "baseline_intensity": 210.0,
        "baseline_source": "forecast",
        "zone": "GB",
        "provider": "synthetic",
        "claim": Claim("job-42", "GB", START, START, 120.0, START + timedelta(hours=4), "redis"),
        "hops": 2,
    }
    fields.update(changes)
    return PlannedJob(**fields)  # type: ignore[arg-type]


def test_a_planned_job_travels_as_json_and_back() -> None:
    import json

    original = job()
    data = json.loads(json.dumps(original.to_dict()))
    assert PlannedJob.from_dict(data) == original
    assert PlannedJob.from_dict({**data, "claim": None}).claim is None
    with pytest.raises(ValueError, match="hops"):
        PlannedJob.from_dict({**data, "hops": -1})
    with pytest.raises(ValueError, match="planned_intensity"):
        PlannedJob.from_dict({**data, "planned_intensity": "lots"})
    with pytest.raises(ValueError, match="start"):
        PlannedJob.from_dict({**data, "start": 12})
    with pytest.raises(KeyError):
        PlannedJob.from_dict({k: v for k, v in data.items() if k != "deadline"})


def test_the_arrival_rule() -> None:
    slot = timedelta(minutes=30)
    j = job()

    def at(delta: timedelta, intensity: float | None = 121.0) -> str:
        return arrival(j, START + delta, intensity=intensity, replan_margin=0.1, slot=slot)

    assert at(-timedelta(hours=1)) == "hop"  # early: sent on again, plan and claim kept
    assert at(-timedelta(hours=1), intensity=140.0) == "replan"  # its slot went dirty meanwhile
    assert at(-EARLY) == "wait"  # a few seconds early: the session waits them out
    assert at(timedelta(0)) == "run"
    assert at(timedelta(minutes=3), intensity=None) == "run"  # no forecast: keep the plan
    assert at(timedelta(0), intensity=132.0) == "run"  # 10 % dirtier: within the margin
    assert at(timedelta(0), intensity=133.0) == "replan"  # dirtier than planned: look again
    late = j.deadline - START - timedelta(minutes=10)
    assert at(late, intensity=400.0) == "run"  # under a slot of budget left: run


@given(
    offset=st.integers(min_value=-600, max_value=600).map(lambda m: timedelta(minutes=m)),
    intensity=st.one_of(st.none(), st.floats(min_value=0, max_value=1000)),
    margin=st.floats(min_value=0, max_value=1),
)
def test_the_arrival_rule_never_waits_long_nor_past_the_deadline(
    offset: timedelta, intensity: float | None, margin: float
) -> None:
    j = job()
    now = START + offset
    slot = timedelta(minutes=30)
    what = arrival(j, now, intensity=intensity, replan_margin=margin, slot=slot)
    if what == "wait":
        assert START - EARLY <= now < START
    if what == "replan" and now >= START:
        assert j.deadline - now >= slot
    dirty = intensity is not None and intensity > 120.0 * (1 + margin)
    if what == "replan":
        assert dirty  # a plan is only made again when its slot has gone dirty
    if now < START - EARLY:
        assert what == ("replan" if dirty else "hop")
    else:
        assert what != "hop"


def test_hops_stay_under_the_limit() -> None:
    assert hop_until(T0 + timedelta(hours=5), T0, timedelta(minutes=30)) == T0 + timedelta(
        minutes=30
    )
    assert hop_until(T0 + timedelta(minutes=5), T0, timedelta(minutes=30)) == T0 + timedelta(
        minutes=5
    )


async def test_the_worker_session_does_not_plan_or_wait_again() -> None:
    policy = ecoasync.Policy(
        max_delay="6h", provider=StaticForecastProvider(DAY), budget_g=1.0, dirty_threshold=500
    )
    with VirtualClock.installed(START + timedelta(seconds=40)) as clock:
        bus = ecoasync.EventBus()
        with capture_events(bus) as events:
            async with ecoasync.carbon_session(policy, bus=bus, planned=job(), name="nightly") as s:
                assert s.plan.created_at == SUBMITTED and s.plan.start == START
                await s.record_call(
                    provider="openai", model="gpt-4o-mini", output_tokens=500, latency_s=2.0
                )
        assert clock.slept == timedelta(0)
    planned = events.of(Planned)[0].plan
    assert (planned.decision, planned.planned_intensity, planned.now_intensity) == (
        "wait",
        120.0,
        200.0,
    )
    assert events.of(Started)[0].delay == timedelta(hours=3, seconds=40)
    record = events.of(Completed)[0].record
    assert record.submitted_at == SUBMITTED and record.planned_start == START
    assert record.planned_intensity == 120.0 and record.baseline_intensity == 210.0
    assert (record.job_id, record.queue, record.hops, record.replanned) == (
        "job-42",
        "celery",
        2,
        False,
    )
    assert record.queue_wait_s == 3 * 3600 + 40 and record.late_s == 40
    assert record.delay_s == 3 * 3600 + 40
    assert record.calls == 1 and record.emitted_g > 0
    assert record.baseline_g == pytest.approx(record.energy_kwh * 210.0)  # counted from submission
    data = record.to_dict()
    assert data["job_id"] == "job-42" and data["queue_wait_s"] == 3 * 3600 + 40


async def test_a_job_delivered_a_little_early_waits_out_the_rest() -> None:
    policy = ecoasync.Policy(max_delay="6h", provider=StaticForecastProvider(DAY))
    with VirtualClock.installed(START - timedelta(seconds=3)) as clock:
        async with ecoasync.carbon_session(policy, planned=job()) as s:
            assert clock.now() == START
        assert clock.slept == timedelta(seconds=3)
        assert s.record is not None and s.record.late_s == 0


async def test_a_planned_job_keeps_its_plan_when_the_forecast_fails() -> None:
    from ecoasync.testing import FailingProvider

    policy = ecoasync.Policy(max_delay="6h", provider=FailingProvider())
    with VirtualClock.installed(START):
        async with ecoasync.carbon_session(policy, planned=job()) as s:
            assert s.plan.decision == "wait" and s.plan.start == START
    assert s.record is not None and s.record.status == "completed" and s.record.job_id == "job-42"


def test_planned_must_be_a_planned_job() -> None:
    with pytest.raises(TypeError, match="PlannedJob"):
        ecoasync.carbon_session(planned={"job_id": "x"})  # type: ignore[arg-type]
    routed = ecoasync.Policy(max_delay="1h", routes=[ecoasync.Route("home", "GB")])
    with pytest.raises(ValueError, match="routes"):
        ecoasync.carbon_session(routed, planned=job())


class Elsewhere(ecoasync.SlotLedger):
    """A ledger a session must await (not the exact in-process class): as Redis is used."""


@pytest.mark.parametrize("kind", [ecoasync.SlotLedger, Elsewhere])
async def test_the_session_gives_a_queued_jobs_claim_back_as_its_own(
    kind: type[ecoasync.SlotLedger],
) -> None:
    """The claim made at enqueue is released by the worker's session when it ends (also when
    the body fails), through the path a waiting session's own claim takes."""
    from ecoasync.queues import plan_job

    ledger = kind()
    policy = ecoasync.Policy(
        max_delay="6h",
        provider=StaticForecastProvider(DAY),
        jitter="0m",
        strategy="lowest",
        ledger=ledger,
    )
    with VirtualClock.installed(SUBMITTED) as clock:
        queued = await plan_job(policy, job_id="job-7", queue="celery", now=SUBMITTED)
        assert queued.claim is not None and len(ledger) == 1
        clock.advance(queued.start - SUBMITTED)
        with pytest.raises(ZeroDivisionError):
            async with ecoasync.carbon_session(policy, planned=queued) as s:
                1 / 0  # noqa: B018
    assert s.record is not None and s.record.status == "failed" and s.record.job_id == "job-7"
    assert len(ledger) == 0


def test_a_queued_job_a_little_early_waits_in_sync_code_too() -> None:
    """A Celery worker's session (sync): a job whose start is a few seconds off is not run
    on the fast path that skips the wait."""
    from ecoasync._sync import _SyncSession

    policy = ecoasync.Policy(max_delay="6h", provider=StaticForecastProvider(DAY))
    with VirtualClock.installed(START - timedelta(seconds=3)) as clock:
        with _SyncSession(ecoasync.carbon_session(policy, planned=job())) as s:
            assert s.plan.start == START
        assert clock.slept == timedelta(seconds=3)
    assert s.record is not None and s.record.late_s == 0


def test_the_report_reads_queued_jobs(tmp_path: object) -> None:
    from ecoasync._report._rows import row_from_record
    from ecoasync._report._summary import totals

    base = {
        "session_id": "a",
        "submitted_at": "2026-03-18T09:00:00Z",
        "ended_at": "2026-03-18T12:10:00Z",
    }
    rows = [
        row_from_record({**base, "queue": "celery", "late_s": 4.0}),
        row_from_record({**base, "session_id": "b"}),
    ]
    assert rows[0].queue == "celery" and rows[1].queue is None
    summary = totals(rows)
    assert summary["queued_jobs"] == 1 and summary["mean_late_s"] == 4.0
