"""A routed session's entry: one deadline for every route's forecast and history, and its slot
claimed in the session's ledger (``Policy.ledger``, else the process's) under the route's zone,
released when it ends."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import trio.testing

import ecoasync
from ecoasync import (
    Choice,
    Claim,
    Forecast,
    Policy,
    Route,
    Slot,
    SlotLedger,
    carbon_session,
    default_ledger,
)
from ecoasync.events import Planned
from ecoasync.testing import FakeProvider, VirtualClock, capture_events

START = datetime(2026, 3, 18, tzinfo=UTC)
STEP = timedelta(minutes=30)


@pytest.fixture(autouse=True)
def _mixes_loaded() -> None:
    # the annual mixes are read once, in a thread; read here, the entry waits for nothing else
    ecoasync._routing.grid("FR")


def forecast(zone: str, values: Sequence[float]) -> Forecast:
    slots = [Slot(START + i * STEP, START + (i + 1) * STEP, v, v) for i, v in enumerate(values)]
    return Forecast(slots, provider=f"grid-{zone}", zone=zone)


class SlowGrid:
    """A provider that answers its forecast after ``delay`` seconds and whose history never
    answers (a hanging history endpoint)."""

    def __init__(self, zone: str, values: Sequence[float], delay: float) -> None:
        self.name = f"slow-{zone}"
        self.zone = zone
        self._forecast = forecast(zone, values)
        self._delay = delay
        self.history_asked = 0

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        await anyio.sleep(self._delay)
        return self._forecast.between(start, end)

    async def history(self, start: datetime, end: datetime) -> Forecast:
        self.history_asked += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


# --- one deadline for the whole entry ----------------------------------------------------


def enter_in_virtual_time(policy: Policy) -> tuple[float, Any, list[Planned]]:
    """Enter and leave a session on trio with a mock clock (time jumps to the next deadline
    whenever every task waits): how long entering took, the session, its ``Planned``."""

    async def main() -> tuple[float, Any, list[Planned]]:
        with VirtualClock.installed(START), capture_events(None, Planned) as events:
            began = anyio.current_time()
            with anyio.fail_after(60):  # (virtual seconds: a hang fails, it does not block)
                async with carbon_session(policy) as session:
                    entered = anyio.current_time() - began
        return entered, session, events.of(Planned)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_route_forecasts_and_histories_share_the_entrys_deadline(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """Forecasts that answer after 1 and 2 s, histories that hang: with
    ``forecast_timeout=3s`` the whole entry takes 3 s (the histories get what the forecasts
    left, then each route is planned on its forecast alone), not 2 s and another 3 s."""
    se, fr = SlowGrid("SE-SE3", [20] * 96, 2.0), SlowGrid("FR", [60] * 96, 1.0)
    policy = Policy(
        routes=[Route("se", "SE-SE3", provider=se), Route("fr", "FR", provider=fr)],
        max_delay="4h",
        strategy="calibrated",
        forecast_timeout="3s",
    )
    entered, session, planned = enter_in_virtual_time(policy)
    assert entered == pytest.approx(3.0)  # it was 5 s
    assert se.history_asked == fr.history_asked == 1
    failed = [e for e in logs if e["event"] == "ecoasync.history_failed"]
    assert len(failed) == 2 and {e["action"] for e in failed} == {"forecast-only"}
    assert planned[0].plan.decision == "now-is-best" and planned[0].plan.zone == "SE-SE3"
    assert session.route.name == "se"


def test_a_forecast_that_takes_the_whole_bound_leaves_no_time_for_history(
    logs: list[MutableMapping[str, Any]],
) -> None:
    se = SlowGrid("SE-SE3", [20] * 96, 5.0)  # later than the bound: skipped
    fr = SlowGrid("FR", [60] * 96, 1.0)
    policy = Policy(
        routes=[Route("se", "SE-SE3", provider=se), Route("fr", "FR", provider=fr)],
        max_delay="4h",
        strategy="calibrated",
        forecast_timeout="2s",
    )
    entered, session, planned = enter_in_virtual_time(policy)
    assert entered == pytest.approx(2.0)
    assert session.route.name == "fr" and planned[0].plan.zone == "FR"
    skipped = {c.route: c.skipped for c in session.routing.candidates}
    assert skipped["se"] == "provider gave no answer within 2 s" and skipped["fr"] is None
    assert se.history_asked == fr.history_asked == 0  # the deadline had passed
    failed = [e for e in logs if e["event"] == "ecoasync.history_failed"]
    assert [e["error"] for e in failed] == [
        "TimeoutError: the forecast took all of forecast_timeout"
    ]


# --- the session's ledger, under the route's zone -----------------------------------------


class RecordingLedger:
    """A ledger out of process, as far as the session can tell (it awaits it): the in-process
    rule underneath, every call recorded."""

    name = "recording"
    bucket = STEP

    def __init__(self, *, fail: bool = False) -> None:
        self.inner = SlotLedger()
        self.claims: list[Claim] = []
        self.released: list[Claim] = []
        self.fail = fail

    async def claim(
        self, job_id: str, zone: str, choices: Sequence[Choice], *, lease: timedelta, now: datetime
    ) -> Claim:
        await anyio.lowlevel.checkpoint()
        if self.fail:
            raise ConnectionError("ledger store down")
        claim = self.inner.claim_nowait(job_id, zone, choices, lease=lease, now=now)
        self.claims.append(claim)
        return claim

    async def release(self, claim: Claim) -> None:
        await anyio.lowlevel.checkpoint()
        self.released.append(claim)
        self.inner.release_nowait(claim)

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        return self.inner.loads_nowait(zone, start, end, now=now)


def routes(se_values: Sequence[float]) -> list[Route]:
    return [
        Route("de", "DE", provider=FakeProvider(forecast("DE", [400] * 96))),
        Route("se", "SE-SE3", provider=FakeProvider(forecast("SE-SE3", se_values))),
    ]


SE_CLEAN_LATER = [200.0] * 4 + [20.0] * 2 + [30.0] * 90


async def test_a_routed_session_claims_in_the_policys_ledger_under_its_route_zone() -> None:
    ledger = RecordingLedger()
    policy = Policy(routes=routes(SE_CLEAN_LATER), max_delay="4h", jitter="0m", ledger=ledger)
    with VirtualClock.installed(START):
        async with carbon_session(policy) as session:
            assert [(c.zone, c.job_id) for c in ledger.claims] == [("SE-SE3", session.id)]
            assert session.plan.start == ledger.claims[0].start == START + timedelta(hours=2)
            assert not ledger.released
    assert ledger.released == ledger.claims  # given back when the session ended
    assert len(ledger.inner) == 0


async def test_a_taken_slot_sends_a_routed_job_to_the_next_best_start() -> None:
    """The in-process ledger is read while the routes are scored and claimed under the
    route's zone: a job already counted in the greenest slot (a session without routes in
    that zone, say) makes it look 2 % dirtier, so this one takes the next-best start."""
    zone = "SE-SE3"
    ledger = SlotLedger()
    other = ledger.claim_nowait(
        "another-job",
        zone,
        [Choice(START + timedelta(hours=2), 20.0, 20.0)],
        lease=timedelta(hours=6),
        now=START,
    )
    policy = Policy(routes=routes(SE_CLEAN_LATER), max_delay="4h", jitter="0m", ledger=ledger)
    window = (START, START + timedelta(hours=5))
    with VirtualClock.installed(START) as clock:
        async with carbon_session(policy) as session:
            assert session.route is not None and session.route.name == "se"
            assert session.plan.start == START + timedelta(hours=2.5)
            assert ledger.loads_nowait(zone, *window, now=clock.now()) == {
                START + timedelta(hours=2): 1,
                START + timedelta(hours=2.5): 1,
            }
        assert ledger.loads_nowait(zone, *window, now=clock.now()) == {
            START + timedelta(hours=2): 1
        }
    ledger.release_nowait(other)


async def test_without_a_policy_ledger_a_routed_session_claims_in_the_process_one() -> None:
    zone, slot = "SE-SE3", START + timedelta(hours=2)
    shared = default_ledger()
    policy = Policy(routes=routes(SE_CLEAN_LATER), max_delay="4h", jitter="0m")

    def load() -> int:
        return shared.loads_nowait(zone, slot, slot + STEP, now=START).get(slot, 0)

    before = load()
    with VirtualClock.installed(START):
        async with carbon_session(policy) as session:
            assert session.plan.slot_start == slot
            assert load() == before + 1
    assert load() == before  # given back when the session ended


async def test_a_ledger_that_fails_costs_the_spreading_not_the_session(
    logs: list[MutableMapping[str, Any]],
) -> None:
    ledger = RecordingLedger(fail=True)
    policy = Policy(routes=routes(SE_CLEAN_LATER), max_delay="4h", jitter="0m", ledger=ledger)
    with VirtualClock.installed(START):
        async with carbon_session(policy) as session:
            assert session.plan.start == START + timedelta(hours=2)
    assert session.record is not None and session.record.status == "completed"
    failed = [e for e in logs if e["event"] == "ecoasync.ledger_failed"]
    assert failed[0]["action"] == "plan-without-spreading" and failed[0]["ledger"] == "recording"
    assert not ledger.released
