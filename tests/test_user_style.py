"""A user's tests, written the way most asyncio services are tested: pytest-asyncio.

ecoasync's own suite runs on anyio's plugin (asyncio and trio); this module shows that
``ecoasync.testing`` (``VirtualClock``, ``capture_events``, ``FakeProvider``,
``FailingProvider``, ``FakeLLM``) works the same under pytest-asyncio. It is configured as a
user's project would be (``asyncio_mode = "strict"``: only tests marked ``asyncio`` are
pytest-asyncio's; see ``docs/guides/testing.md``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import ecoasync
from ecoasync import EventBus, ForecastUnavailable, Policy, carbon_aware, carbon_session
from ecoasync.events import CallRecorded, Completed, ForecastFailed
from ecoasync.testing import FailingProvider, FakeLLM, FakeProvider, VirtualClock, capture_events

EVENING = datetime(2026, 3, 18, 18, tzinfo=UTC)  # the synthetic day's dirty peak


@pytest.fixture
def anyio_backend() -> str:
    """ecoasync's own suite runs anyio's plugin in auto mode, which gives every coroutine test
    its backend fixture (and runs the async fixtures of such tests itself): pinned here so
    that each test runs once, on pytest-asyncio's loop, and the fixtures here are sync. A
    user's project without anyio's auto mode needs none of this:
    :func:`test_a_users_project_runs_under_pytest_asyncio_alone` runs one, async fixtures
    and all."""
    return "asyncio"


# --- the user's service --------------------------------------------------------------------


async def summarise(client: object, text: str, *, bus: EventBus, policy: Policy) -> str:
    """What a user's service does: wait for a clean grid, then call the model."""
    import openai

    assert isinstance(client, openai.AsyncOpenAI)
    async with carbon_session(policy, bus=bus, name="summarise"):
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
    return reply.choices[0].message.content or ""


# --- the user's tests ----------------------------------------------------------------------


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    with VirtualClock.installed(EVENING) as clock:
        yield clock


@pytest.mark.asyncio
async def test_the_service_waits_four_hours_in_no_time(clock: VirtualClock) -> None:
    assert asyncio.get_running_loop() is not None  # pytest-asyncio's loop
    bus = EventBus()
    fake = FakeLLM(output_tokens=300)
    policy = Policy(
        max_delay="4h",
        jitter="0m",
        provider=FakeProvider.day(),
        dirty_threshold=250,
        model_fallbacks={"gpt-4o": "gpt-4o-mini"},
    )
    with capture_events(bus) as events:
        assert await summarise(fake.openai(), "hello", bus=bus, policy=policy)
    assert events.kinds() == ["planned", "started", "call_recorded", "completed"]
    assert clock.slept == timedelta(hours=4)  # virtual time
    call = events.of(CallRecorded)[0].call
    assert call.requested_model == call.effective_model == "gpt-4o"  # clean by then
    assert [r.model for r in fake.requests] == ["gpt-4o"]


@pytest.mark.asyncio
async def test_concurrent_sessions_share_the_virtual_clock(clock: VirtualClock) -> None:
    bus = EventBus()
    policy = Policy(max_delay="8h", jitter="0m", provider=FakeProvider.day())

    async def job(hours: int) -> datetime:
        async with carbon_session(policy.evolve(max_delay=timedelta(hours=hours)), bus=bus):
            return clock.now()

    with capture_events(bus, Completed) as completed:
        starts = await asyncio.gather(job(1), job(4), job(8))
    assert list(starts) == sorted(starts) and starts[0] > EVENING
    assert len(completed) == 3


@pytest.mark.asyncio
async def test_a_failing_grid_api_runs_now_and_says_so(clock: VirtualClock) -> None:
    bus = EventBus()
    with capture_events(bus) as events:
        async with carbon_session(Policy(max_delay="4h", provider=FailingProvider()), bus=bus) as s:
            pass
    assert s.plan.decision == "forecast-unavailable"
    assert events.kinds() == ["forecast_failed", "planned", "started", "completed"]
    with pytest.raises(ForecastUnavailable):
        async with carbon_session(
            Policy(provider=FailingProvider(), on_forecast_error="raise"), bus=bus
        ):
            pytest.fail("the body must not run")


@pytest.mark.asyncio
async def test_a_hanging_grid_api_is_bounded(clock: VirtualClock) -> None:
    bus = EventBus()
    hanging = FailingProvider(hang=True)
    policy = Policy(max_delay="4h", provider=hanging, forecast_timeout="0.05s")
    with capture_events(bus, ForecastFailed) as failed:
        async with asyncio.timeout(10), carbon_session(policy, bus=bus) as session:
            pass
    assert session.plan.decision == "forecast-unavailable"
    assert failed.of(ForecastFailed)[0].error == "no answer within forecast_timeout=0.05s"


@pytest.mark.asyncio
async def test_a_held_clock_keeps_work_waiting_until_advanced() -> None:
    clock = VirtualClock(EVENING, autojump=False)
    policy = Policy(max_delay="4h", jitter="0m", provider=FakeProvider.day())
    started = asyncio.Event()

    async def job() -> None:
        async with carbon_session(policy, clock=clock):
            started.set()

    task = asyncio.create_task(job())
    await asyncio.sleep(0)  # the job plans and waits
    assert not started.is_set()
    clock.advance(timedelta(hours=4))
    await asyncio.wait_for(task, 10)
    assert started.is_set()


@pytest.mark.asyncio
async def test_the_sync_decorator_from_a_worker_thread(clock: VirtualClock) -> None:
    bus = EventBus()

    @carbon_aware(provider=FakeProvider.day(), bus=bus)
    def nightly() -> int:
        ecoasync.record_call_sync(
            provider="openai", model="gpt-4o-mini", output_tokens=300, latency_s=2.0
        )
        return 42

    with pytest.raises(RuntimeError, match="event loop"):
        nightly()  # never on the loop's thread
    with capture_events(bus, Completed) as completed:
        assert await asyncio.to_thread(nightly) == 42
    assert completed.of(Completed)[0].record.calls == 1


# --- a user's project, on its own ------------------------------------------------------------

USER_CONFIG = """
[tool.pytest.ini_options]
addopts = ["--strict-markers", "--strict-config", "-p", "no:cacheprovider"]
filterwarnings = ["error"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

USER_TESTS = """
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio

import ecoasync
from ecoasync.testing import FakeProvider, VirtualClock, capture_events


@pytest_asyncio.fixture
async def clock() -> AsyncIterator[VirtualClock]:
    with VirtualClock.installed(datetime(2026, 3, 18, 18, tzinfo=UTC)) as clock:
        yield clock


async def test_waits_for_the_dip(clock: VirtualClock) -> None:
    bus = ecoasync.EventBus()
    policy = ecoasync.Policy(max_delay="4h", jitter="0m", provider=FakeProvider.day())
    with capture_events(bus) as events:
        async with ecoasync.carbon_session(policy, bus=bus) as session:
            pass
    assert events.kinds() == ["planned", "started", "completed"]
    assert session.plan.decision == "wait"
    assert clock.slept == timedelta(hours=4)
"""


def test_a_users_project_runs_under_pytest_asyncio_alone(tmp_path: Path) -> None:
    """A project of its own (pytest-asyncio in auto mode beside anyio's plugin in its default
    strict mode, as installing ecoasync gives it; async fixtures; warnings as errors): the
    virtual clock set in an async fixture reaches the test."""
    (tmp_path / "pyproject.toml").write_text(USER_CONFIG)
    (tmp_path / "test_service.py").write_text(textwrap.dedent(USER_TESTS))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "test_service.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
