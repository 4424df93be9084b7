"""The in-process SlotLedger keeps the Ledger contract, and sessions claim and release in the
ledger their policy names (or the process's), on asyncio and trio."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import (
    Choice,
    Claim,
    EventBus,
    Ledger,
    Policy,
    PolicyError,
    SlotLedger,
    assess,
    carbon_session,
    default_ledger,
)
from ecoasync.testing import FakeProvider, VirtualClock

T0 = datetime(2026, 3, 18, tzinfo=UTC)
HALF = timedelta(minutes=30)
LEASE = timedelta(hours=5)


def choices(*offsets: float, score: float = 100.0) -> list[Choice]:
    """Choices at ``T0 + offset`` half-hours, each scored ``score``."""
    return [Choice(T0 + k * HALF, score - 1, score) for k in offsets]


def test_slot_ledger_is_a_ledger() -> None:
    ledger = SlotLedger()
    assert isinstance(ledger, Ledger)
    assert ledger.name == "memory"
    assert ledger.bucket == HALF
    assert isinstance(default_ledger(), SlotLedger)


async def test_a_claim_counts_in_its_bucket_until_released() -> None:
    ledger = SlotLedger()
    claim = await ledger.claim("a", "GB", choices(2, 3), lease=LEASE, now=T0)
    assert claim == Claim(
        job_id="a",
        zone="GB",
        slot=T0 + 2 * HALF,
        start=T0 + 2 * HALF,
        expected=99.0,
        expires_at=T0 + LEASE,
        ledger="memory",
    )
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0) == {T0 + 2 * HALF: 1}
    assert await ledger.loads("DE", T0, T0 + 4 * HALF, now=T0) == {}  # zones are apart
    assert await ledger.loads("GB", T0, T0 + 2 * HALF, now=T0) == {}  # [start, end)
    # equal scores: the next job goes to the idle slot
    other = await ledger.claim("b", "GB", choices(2, 3), lease=LEASE, now=T0)
    assert other.start == T0 + 3 * HALF
    await ledger.release(claim)
    await ledger.release(claim)  # idempotent
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0) == {T0 + 3 * HALF: 1}
    assert len(ledger) == 1


async def test_a_redelivered_job_gets_its_claim_back_with_its_lease_extended() -> None:
    ledger = SlotLedger()
    first = await ledger.claim("job", "GB", choices(2, 3), lease=HALF, now=T0)
    again = await ledger.claim("job", "GB", choices(3), lease=LEASE, now=T0 + HALF / 2)
    assert (again.slot, again.start) == (first.slot, first.start)  # not booked twice
    assert again.expires_at == T0 + HALF / 2 + LEASE
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0 + HALF) == {T0 + 2 * HALF: 1}
    # a shorter lease never shortens a held one
    assert (await ledger.claim("job", "GB", choices(3), lease=HALF, now=T0)) == again


async def test_expired_claims_never_count() -> None:
    ledger = SlotLedger()
    await ledger.claim("a", "GB", choices(2), lease=HALF, now=T0)
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0 + HALF / 2) == {T0 + 2 * HALF: 1}
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0 + HALF) == {}
    assert len(ledger) == 0
    # its job may claim again, afresh
    claim = await ledger.claim("a", "GB", choices(3), lease=HALF, now=T0 + HALF)
    assert claim.start == T0 + 3 * HALF


async def test_full_buckets_are_skipped_unless_all_are_full() -> None:
    ledger = SlotLedger(capacity=1, tolerance=0.0)  # without capacity, never spread
    taken = [await ledger.claim(str(k), "GB", choices(2, 3), lease=LEASE, now=T0) for k in range(3)]
    assert [c.start for c in taken] == [T0 + 2 * HALF, T0 + 3 * HALF, T0 + 2 * HALF]
    assert await ledger.loads("GB", T0, T0 + 4 * HALF, now=T0) == {
        T0 + 2 * HALF: 2,
        T0 + 3 * HALF: 1,
    }


def test_choose_needs_a_choice() -> None:
    with pytest.raises(ValueError, match="only a waiting plan has choices"):
        SlotLedger().choose("GB", [], now=T0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["claim", "release", "later"]), st.integers(0, 5)),
        max_size=40,
    )
)
def test_the_counts_are_the_live_claims(steps: list[tuple[str, int]]) -> None:
    """Whatever claims, releases and the passing of time do, loads() counts exactly the claims
    whose lease has not ended, each in the bucket of the start it was given."""
    ledger = SlotLedger()
    now = T0
    live: dict[str, Claim] = {}
    for action, job in steps:
        if action == "claim":
            claim = ledger.claim_nowait(str(job), "GB", choices(2, 3, 4), lease=HALF * job, now=now)
            if job == 0:  # a zero lease ends at once
                live.pop(str(job), None)
            else:
                live[str(job)] = claim
        elif action == "release" and str(job) in live:
            ledger.release_nowait(live.pop(str(job)))
        else:
            now += HALF / 2
        live = {k: c for k, c in live.items() if c.expires_at > now}
        expected: dict[datetime, int] = {}
        for claim in live.values():
            expected[claim.slot] = expected.get(claim.slot, 0) + 1
        assert ledger.loads_nowait("GB", T0, T0 + timedelta(days=1), now=now) == expected


def test_policy_takes_a_ledger_or_none() -> None:
    ledger = SlotLedger()
    assert Policy().ledger is None
    assert Policy(ledger=ledger).ledger is ledger
    assert Policy(ledger=ledger).evolve(max_delay="1h").ledger is ledger
    with pytest.raises(PolicyError, match=r"Policy.ledger must be a slot ledger") as caught:
        Policy(ledger="redis://localhost")  # type: ignore[arg-type]
    assert caught.value.field == "ledger"


# -- sessions ----------------------------------------------------------------------------------


def _provider() -> FakeProvider:
    """A day that is dirtiest at 18:00 and cleaner every hour after: sessions at 17:00 wait."""
    return FakeProvider.day()


class RecordingLedger(SlotLedger):
    """A SlotLedger that remembers what it was asked (or fails when told to)."""

    def __init__(self, *, fail: str = "") -> None:
        super().__init__()
        self.fail = fail
        self.claims: list[tuple[str, str, int, timedelta, datetime]] = []
        self.released: list[Claim] = []

    async def claim(
        self,
        job_id: str,
        zone: str,
        choices: Any,
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        if self.fail == "claim":
            raise ConnectionError("ledger store down")
        granted = await super().claim(job_id, zone, choices, lease=lease, now=now)
        self.claims.append((job_id, zone, len(choices), lease, now))
        return granted

    async def release(self, claim: Claim) -> None:
        if self.fail == "release":
            raise ConnectionError("ledger store down")
        self.released.append(claim)
        await super().release(claim)


async def test_sessions_that_wait_claim_in_their_policys_ledger_and_release(
    clock: VirtualClock,
) -> None:
    clock.advance(timedelta(hours=17))
    ledger = RecordingLedger()
    policy = Policy(
        max_delay="4h", provider=_provider(), jitter="0m", ledger=ledger, strategy="lowest"
    )
    plans = []
    before = len(default_ledger())

    async def job() -> None:
        async with carbon_session(policy, bus=EventBus()) as session:
            plans.append((session.id, session.plan))
            if session.plan.waits:  # counted while it runs
                assert len(ledger) >= 1

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(job)
    waiting = [(sid, p) for sid, p in plans if p.waits]
    assert waiting, "the trace should make sessions wait"
    assert sorted(c[0] for c in ledger.claims) == sorted(sid for sid, _ in waiting)
    for _, zone, offered, lease, now in ledger.claims:
        plan = waiting[0][1]
        assert zone == (plan.zone or plan.provider)
        assert offered >= 1
        assert lease == policy.max_delay + plan.window + timedelta(minutes=15)
        assert now == plan.created_at
    assert len(ledger.released) == len(waiting) and len(ledger) == 0
    # the process's ledger was not touched (an empty ledger is falsy: it is still the one used)
    assert len(default_ledger()) == before


async def test_a_cancelled_waiting_session_releases_its_claim(clock: VirtualClock) -> None:
    clock.advance(timedelta(hours=17))
    ledger = RecordingLedger()
    policy = Policy(max_delay="4h", provider=_provider(), ledger=ledger, strategy="lowest")

    async def job() -> None:
        async with carbon_session(policy, bus=EventBus()):
            raise AssertionError("cancelled while it waits for its slot")

    async with anyio.create_task_group() as tg:
        tg.start_soon(job)
        while not ledger.claims:  # (this task stays runnable: the virtual clock holds still)
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert len(ledger.claims) == len(ledger.released) == 1
    assert len(ledger) == 0


@pytest.mark.parametrize("fail", ["claim", "release"])
async def test_a_failing_ledger_never_fails_the_session(
    clock: VirtualClock, logs: list[MutableMapping[str, Any]], fail: str
) -> None:
    clock.advance(timedelta(hours=17))
    provider = _provider()
    ledger = RecordingLedger(fail=fail)
    policy = Policy(
        max_delay="4h", provider=provider, jitter="0m", ledger=ledger, strategy="lowest"
    )
    async with carbon_session(policy, bus=EventBus()) as session:
        # without spreading: the planner's own best start
        now = session.plan.created_at
        best = assess(provider.forecast_nowait(now, now + timedelta(hours=7)), now, policy)
        assert best.decision == "wait"
        assert session.plan.start == best.best_start
    assert session.record is not None and session.record.status == "completed"
    failed = [e for e in logs if e["event"] == "ecoasync.ledger_failed"]
    assert len(failed) == 1
    assert failed[0]["ledger"] == "memory"
    assert "ledger store down" in failed[0]["error"]
