"""``VirtualClock(autojump=False)``: time moves only when the test says so."""

from __future__ import annotations

from datetime import timedelta

import anyio

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
