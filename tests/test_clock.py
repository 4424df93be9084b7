from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from ecoasync import SystemClock, use_clock
from ecoasync._clock import current_clock
from ecoasync.testing import VirtualClock
from tests.conftest import ROOT

T0 = datetime(2026, 3, 18, tzinfo=UTC)


class SteppingClock(SystemClock):
    """The system clock's logic on a fake wall clock that jumps, like a laptop waking up."""

    def __init__(self) -> None:
        super().__init__(max_chunk=60)
        self.wall = T0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.wall


async def test_system_clock_sleeps_in_bounded_chunks_against_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = SteppingClock()

    async def fake_sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        # the second chunk is where the machine was suspended for ten minutes
        clock.wall += timedelta(seconds=seconds) + (
            timedelta(minutes=10) if len(clock.sleeps) == 2 else timedelta(0)
        )

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    await clock.sleep_until(T0 + timedelta(minutes=15))
    assert max(clock.sleeps) <= 60
    # 2 chunks, a 10-minute suspension, then 3 more: it wakes at the slot, not 10 minutes late
    assert clock.sleeps == [60, 60, 60, 60, 60]
    assert clock.wall == T0 + timedelta(minutes=15)


async def test_system_clock_checkpoints_when_the_deadline_has_passed() -> None:
    clock = SystemClock()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep_until(clock.now() - timedelta(hours=1))
        pytest.fail("a passed deadline must still be a cancellation point")


async def test_virtual_clock_jumps_to_the_earliest_deadline_and_never_back() -> None:
    clock = VirtualClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, hours: int) -> None:
        await clock.sleep_until(T0 + timedelta(hours=hours))
        woke.append((name, clock.now()))
        await anyio.lowlevel.checkpoint()
        woke.append((name + " done", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 5)
        tg.start_soon(sleeper, "early", 1)
    assert woke == [
        ("early", T0 + timedelta(hours=1)),
        ("early done", T0 + timedelta(hours=1)),
        ("late", T0 + timedelta(hours=5)),
        ("late done", T0 + timedelta(hours=5)),
    ]
    assert clock.slept == timedelta(hours=5)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(timedelta(seconds=-1))


async def test_a_cancelled_virtual_sleeper_does_not_hold_the_clock() -> None:
    clock = VirtualClock(T0)
    with anyio.move_on_after(0):
        await clock.sleep_until(T0 + timedelta(hours=1))
    await clock.sleep_until(T0 + timedelta(hours=2))
    assert clock.now() == T0 + timedelta(hours=2)


def test_use_clock_is_scoped() -> None:
    clock = VirtualClock(T0)
    assert isinstance(current_clock(), SystemClock)
    with use_clock(clock):
        assert current_clock() is clock
    assert isinstance(current_clock(), SystemClock)
    with pytest.raises(TypeError, match="sleep_until"), use_clock("now"):  # type: ignore[arg-type]
        pass


FIRST_CALL = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    import anyio
    import ecoasync
    from ecoasync.testing import FakeProvider, VirtualClock, capture_events

    assert "ecologits" not in sys.modules
    T0 = datetime(2026, 3, 18, 18, tzinfo=UTC)
    provider = FakeProvider.day(datetime(2026, 3, 18, tzinfo=UTC))

    async def waiter():
        async with ecoasync.carbon_session(
            ecoasync.Policy(provider=provider, max_delay="8h", jitter="0m"), name="waiter"
        ):
            pass

    async def now():
        policy = ecoasync.Policy(provider=provider, max_delay="0m")
        async with ecoasync.carbon_session(policy, name="now") as session:
            await session.record_call(
                provider="openai", model="gpt-4o-mini", output_tokens=100, latency_s=1.0
            )

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(now)

    with VirtualClock.installed(T0) as clock, capture_events() as events:
        anyio.run(main, backend=sys.argv[1])
    for e in events:
        print(e.at.strftime("%H:%M"), e.kind, e.session_name)
    assert "ecologits" in sys.modules
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_virtual_clock_holds_while_ecologits_is_imported(backend: str) -> None:
    # in a fresh process the first measured call imports EcoLogits in a worker thread; the
    # clock jumped meanwhile, to the waiting session's slot: the run-now call was stamped
    # (and charged) hours late
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, backend],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    now = [line for line in lines if line.endswith(" now")]
    assert now == [
        "18:00 planned now",
        "18:00 started now",
        "18:00 call_recorded now",
        "18:00 completed now",
    ], lines
    assert any(line.endswith("completed waiter") and not line.startswith("18:00") for line in lines)


async def test_a_worker_thread_of_your_own_lets_the_time_jump_unless_held() -> None:
    # the rule (as with trio's MockClock): a task waiting for a thread counts as waiting
    clock = VirtualClock(T0)
    jumped = threading.Event()

    async def waiter() -> None:
        await clock.sleep_until(T0 + timedelta(hours=4))
        jumped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with clock.hold():
            assert await anyio.to_thread.run_sync(clock.now) == T0
        assert clock.now() == T0 and not jumped.is_set()
        # unheld, the clock jumps while the thread waits (here: for the jump itself)
        assert await anyio.to_thread.run_sync(jumped.wait, 10)
        assert clock.now() == T0 + timedelta(hours=4)
