"""A ledger that hangs never stretches a session past its bounds: entering takes at most
``forecast_timeout`` (the claim gets what the forecast left), leaving at most
``COMPLETION_TIMEOUT_S`` (the claim is given back while the events are delivered, within one
bound), and a queued job's planning is bounded alike. The spreading is what is lost, said in
``ecoasync.ledger_failed``; never the session."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import trio.testing

import ecoasync._session
from ecoasync import EventBus, Policy, SlotLedger, carbon_session
from ecoasync._job import PlannedJob
from ecoasync._ledger import Choice, Claim
from ecoasync.events import Completed
from ecoasync.queues._core import plan_job
from ecoasync.testing import FakeProvider, VirtualClock

EVENING = datetime(2026, 3, 18, 17, tzinfo=UTC)  # dirty: a 12 h budget waits for the night


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """asyncio (real time, short bounds), and trio on a virtual clock (the real bounds)."""
    if request.param == "asyncio":
        return "asyncio"
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture
def bound(anyio_backend: object, monkeypatch: pytest.MonkeyPatch) -> float:
    """``forecast_timeout`` and ``COMPLETION_TIMEOUT_S`` for a test: the default 5 s on
    trio's virtual clock, 0.2 s of real time on asyncio."""
    seconds = 0.2 if anyio_backend == "asyncio" else 5.0
    monkeypatch.setattr(ecoasync._session, "COMPLETION_TIMEOUT_S", seconds)
    return seconds


class Hanging(SlotLedger):
    """A ledger out of process whose claim or release never answers."""

    def __init__(self, *, claim: bool = False, release: bool = False) -> None:
        super().__init__()
        self.hang_claim, self.hang_release = claim, release
        self.released = 0

    async def claim(
        self, job_id: str, zone: str, choices: Sequence[Choice], *, lease: timedelta, now: datetime
    ) -> Claim:
        if self.hang_claim:
            await anyio.sleep_forever()
        return self.claim_nowait(job_id, zone, choices, lease=lease, now=now)

    async def release(self, claim: Claim) -> None:
        if self.hang_release:
            await anyio.sleep_forever()
        self.released += 1
        self.release_nowait(claim)


def policy(ledger: SlotLedger, seconds: float) -> Policy:
    return Policy(
        max_delay="12h",
        provider=FakeProvider.day(),
        ledger=ledger,
        jitter="0m",
        forecast_timeout=timedelta(seconds=seconds),
    )


def failures(logs: list[MutableMapping[str, Any]], action: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "ecoasync.ledger_failed" and e["action"] == action]


async def test_a_claim_that_hangs_costs_the_spreading_not_the_entry(
    bound: float, logs: list[MutableMapping[str, Any]]
) -> None:
    # it hung forever: the claim was the one wait of the entry nothing bounded
    with VirtualClock.installed(EVENING):
        began = anyio.current_time()
        async with carbon_session(policy(Hanging(claim=True), bound)) as session:
            entered = anyio.current_time() - began
            assert session.plan.decision == "wait"  # planned, without a claim
    assert bound * 0.99 <= entered < bound * 1.5
    (failed,) = failures(logs, "plan-without-spreading")
    assert "TimeoutError" in failed["error"]


async def test_exit_takes_one_bound_when_the_release_and_a_handler_both_hang(
    bound: float, logs: list[MutableMapping[str, Any]]
) -> None:
    # it took two: the release had COMPLETION_TIMEOUT_S, then the delivery another
    bus = EventBus(handler_timeout=3600)

    async def hung(event: Completed) -> None:
        await anyio.sleep_forever()

    bus.subscribe(hung, Completed)
    seen: list[Completed] = []
    bus.subscribe(seen.append, Completed)
    ledger = Hanging(release=True)
    with VirtualClock.installed(EVENING):
        async with carbon_session(policy(ledger, bound), bus=bus) as session:
            assert session.plan.decision == "wait"
            began, wall = anyio.current_time(), time.monotonic()
        took, took_wall = anyio.current_time() - began, time.monotonic() - wall
    assert bound * 0.99 <= took < bound * 1.5
    assert took_wall < 5.0
    assert len(seen) == 1  # the sinks had Completed at once
    assert len(failures(logs, "lease-expires")) == 1
    assert [e["event"] for e in logs].count("ecoasync.completed_not_delivered") == 1


async def test_a_release_that_hangs_does_not_say_completed_was_lost(
    bound: float, logs: list[MutableMapping[str, Any]]
) -> None:
    bus = EventBus()
    got: list[Completed] = []

    async def handler(event: Completed) -> None:
        got.append(event)

    bus.subscribe(handler, Completed)
    with VirtualClock.installed(EVENING):
        async with carbon_session(policy(Hanging(release=True), bound), bus=bus) as session:
            assert session.plan.decision == "wait"
            began = anyio.current_time()
        took = anyio.current_time() - began
    assert bound * 0.99 <= took < bound * 1.5  # the release had the whole bound
    assert len(got) == 1
    assert len(failures(logs, "lease-expires")) == 1
    assert "ecoasync.completed_not_delivered" not in [e["event"] for e in logs]


async def test_a_release_that_answers_is_made_while_the_events_are_delivered(
    bound: float,
) -> None:
    ledger = Hanging()
    with VirtualClock.installed(EVENING):
        async with carbon_session(policy(ledger, bound)) as session:
            assert session.plan.decision == "wait"
            assert len(ledger) == 1
    assert ledger.released == 1 and len(ledger) == 0


async def test_a_queued_jobs_planning_is_bounded_when_the_ledger_hangs(
    bound: float, logs: list[MutableMapping[str, Any]]
) -> None:
    rules = policy(Hanging(claim=True, release=True), bound)
    began = anyio.current_time()
    job = await plan_job(rules, job_id="j1", queue="test", now=EVENING)
    assert isinstance(job, PlannedJob) and job.claim is None and job.start > EVENING
    first = anyio.current_time() - began
    assert first < bound * 1.5
    # planned again (a job that arrived early), its old claim given back: bounded as well
    held = Claim(
        job_id="j1",
        zone="GB",
        slot=job.start,
        start=job.start,
        expected=100.0,
        expires_at=job.start + timedelta(hours=1),
        ledger="hanging",
    )
    began = anyio.current_time()
    again = await plan_job(
        rules, job_id="j1", queue="test", now=EVENING, previous=dataclasses.replace(job, claim=held)
    )
    assert again.claim is None
    assert anyio.current_time() - began < bound * 1.5
    assert len(failures(logs, "lease-expires")) == 1
    assert len(failures(logs, "plan-without-spreading")) == 2
