"""``VirtualClock(autojump=False)``: time moves only when the test says so."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

import ecoasync
from ecoasync.testing import FakeProvider, VirtualClock, capture_events


async def test_a_manual_clock_holds_sleepers_until_advanced() -> None:
    clock = VirtualClock(autojump=False)
    start = clock.now()
    woke: list[timedelta] = []

    async def sleeper(after: timedelta) -> None:
        await clock.sleep_until(start + after)
        woke.append(clock.now() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, timedelta(hours=1))
        tg.start_soon(sleeper, timedelta(hours=3))
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert woke == [] and clock.now() == start  # nothing jumps while everyone waits
        clock.advance(timedelta(hours=2))
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert woke == [timedelta(hours=2)]
        clock.advance(timedelta(hours=2))
    assert woke == [timedelta(hours=2), timedelta(hours=4)]


async def test_a_session_waiting_on_a_manual_clock_can_be_cancelled() -> None:
    bus = ecoasync.EventBus()
    clock = VirtualClock(FakeProvider.day().all()[0].start + timedelta(hours=17), autojump=False)
    policy = ecoasync.Policy(max_delay="10h", provider=FakeProvider.day())
    with capture_events(bus) as events:
        async with anyio.create_task_group() as tg:

            async def job() -> None:
                async with ecoasync.carbon_session(policy, bus=bus, clock=clock):
                    raise AssertionError("the body never runs")

            tg.start_soon(job)
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            assert events.kinds() == ["planned"]
            tg.cancel_scope.cancel()
    assert events.kinds() == ["planned", "completed"]
    assert events[-1].status == "cancelled"  # type: ignore[attr-defined]


@pytest.mark.parametrize("autojump", [False, True])
async def test_cancelled_sleepers_leave_the_rest_in_order(autojump: bool) -> None:
    """Many sleepers cancelled at once (a service shutting down) leave the heap cheaply: the
    survivors still wake (with autojump, in deadline order, each at its own time; a manual
    advance wakes them at once, in the order the backend runs them)."""
    clock = VirtualClock(autojump=autojump)
    start = clock.now()
    woke: list[int] = []

    async def sleeper(minutes: int, scope: anyio.CancelScope) -> None:
        with scope:
            await clock.sleep_until(start + timedelta(minutes=minutes))
            due = start + timedelta(minutes=minutes)
            assert clock.now() == due if autojump else clock.now() >= due
            woke.append(minutes)

    survivors = {m for m in range(1, 2001) if m % 7 == 0}
    scopes: dict[int, anyio.CancelScope] = {}
    async with anyio.create_task_group() as tg:
        for m in range(2000, 0, -1):
            scopes[m] = anyio.CancelScope()
            tg.start_soon(sleeper, m, scopes[m])
        await anyio.lowlevel.checkpoint()
        for m, scope in scopes.items():
            if m not in survivors:
                scope.cancel()
        if not autojump:
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            clock.advance(timedelta(minutes=3000))
    assert (woke if autojump else sorted(woke)) == sorted(survivors)
    assert clock.now() >= start + timedelta(minutes=max(survivors))
