"""A session with no delay budget never blocks on the network (issue 18, 7).

With nothing to wait for, entering plans "run now" at once, whether the forecast is in memory
or not; a forecast that is not is fetched while the body runs, bounded by
``forecast_timeout``. Calls are charged at the grid's intensity once it is here, before that
(and if it never comes) at the zone's annual mix, marked ``"mix"``. A failure is logged at
once, and reported before ``Completed``, never after it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import ecoasync
from ecoasync import EventBus, ForecastUnavailable, Policy, carbon_aware, carbon_session
from ecoasync._instrument._impacts import electricity_mix
from ecoasync.events import CallRecorded, Completed, ForecastFailed, Planned
from ecoasync.providers import synthetic_day
from ecoasync.testing import FailingProvider, VirtualClock, capture_events

from .grid_server import GridServer

DAY = datetime(2026, 3, 18, tzinfo=UTC)
GB_MIX = electricity_mix("GB").gwp_g_per_kwh


class GatedProvider:
    """A grid API that answers when the test opens its gate (slow, without real time), or
    never (hanging). Any loop, any thread: the gate is a ``threading.Event``."""

    name = "gated"
    zone = "GB"

    def __init__(self, answer: Exception | None = None) -> None:
        self.answer = answer
        self.gate = threading.Event()
        self.asked = threading.Event()
        self.done = threading.Event()  # answered, failed or given up on
        self.calls = 0

    async def forecast(self, start: datetime, end: datetime) -> ecoasync.Forecast:
        self.calls += 1
        self.asked.set()
        try:
            await anyio.to_thread.run_sync(self.gate.wait, abandon_on_cancel=True)
            if self.answer is not None:
                raise self.answer
            return synthetic_day(DAY).between(start, end)
        finally:
            self.done.set()


@pytest.fixture
def gated() -> Iterator[GatedProvider]:
    provider = GatedProvider()
    yield provider
    provider.gate.set()  # let a fetch still waiting end (its session is long over)


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    with VirtualClock.installed(DAY + timedelta(hours=18)) as clock:
        yield clock


async def until(condition: Callable[[], object]) -> None:
    """Let the loop run (checkpoints, no sleeping) until ``condition()`` holds."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.lowlevel.checkpoint()


def logged(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]


async def call(session: ecoasync.Session) -> ecoasync.CallRecord:
    record = await session.record_call(
        provider="openai", model="gpt-4o-mini", output_tokens=300, latency_s=2.0
    )
    assert record is not None
    return record


async def test_entering_does_not_wait_for_a_hanging_provider(
    clock: VirtualClock,
    gated: GatedProvider,
    bus: EventBus,
    logs: list[MutableMapping[str, Any]],
) -> None:
    with capture_events(bus) as events, anyio.fail_after(10):
        async with carbon_session(Policy(provider=gated), bus=bus) as session:
            first = await call(session)
    plan = session.plan
    assert (plan.decision, plan.provider, plan.zone) == ("no-delay-budget", "gated", "GB")
    assert plan.now_intensity is None  # not known on entry: the plan says so
    assert first.intensity_source == "mix" and first.intensity == pytest.approx(GB_MIX)
    assert events.kinds() == ["planned", "started", "call_recorded", "completed"]
    record = session.record
    assert record is not None
    assert (record.baseline_intensity, record.baseline_intensity_source) == (None, "none")
    assert record.forecast_error is None and record.emitted_g == pytest.approx(first.emitted_g)
    fallback = logged(logs, "ecoasync.intensity_fallback")[0]
    assert fallback["zone"] == "GB" and fallback["reason"].startswith("no forecast yet")
    await until(gated.asked.is_set)  # asked in the background (once the task has run)
    assert gated.calls == 1


async def test_calls_are_charged_at_the_grid_once_the_forecast_is_here(
    clock: VirtualClock, gated: GatedProvider, bus: EventBus
) -> None:
    with capture_events(bus, CallRecorded) as events, anyio.fail_after(10):
        async with carbon_session(Policy(provider=gated), bus=bus) as session:
            before = await call(session)
            gated.gate.set()  # the slow API answers now
            await until(lambda: session.forecast is not None)
            after = await call(session)
    grid = synthetic_day(DAY).at(clock.now())
    assert grid is not None and grid.actual is not None
    assert before.intensity_source == "mix"
    assert (after.intensity_source, after.intensity) == ("actual", grid.actual)
    record = session.record
    assert record is not None
    assert (record.baseline_intensity, record.baseline_intensity_source) == (grid.actual, "actual")
    assert record.run_intensity == grid.actual
    assert record.emitted_g == pytest.approx(before.emitted_g + after.emitted_g)
    assert [e.call.intensity_source for e in events.of(CallRecorded)] == ["mix", "actual"]


async def test_a_fetch_that_fails_while_the_body_runs_is_reported_before_completed(
    clock: VirtualClock, bus: EventBus, logs: list[MutableMapping[str, Any]]
) -> None:
    failing = GatedProvider(ForecastUnavailable("gated: 503", provider="gated", cause="503"))
    failing.gate.set()
    with capture_events(bus) as events, anyio.fail_after(10):
        async with carbon_session(Policy(provider=failing), bus=bus) as session:
            await until(lambda: logged(logs, "ecoasync.forecast_failed"))
            charged = await call(session)
    assert charged.intensity_source == "mix"
    assert events.kinds() == ["planned", "started", "call_recorded", "forecast_failed", "completed"]
    failed = events.of(ForecastFailed)[0]
    assert (failed.provider, failed.zone, failed.action) == ("gated", "GB", "run_now")
    assert session.record is not None and session.record.forecast_error == failed.error
    assert logged(logs, "ecoasync.forecast_failed")[0]["error"] == failed.error


async def test_a_fetch_that_fails_after_the_session_is_only_logged(
    clock: VirtualClock, bus: EventBus, logs: list[MutableMapping[str, Any]]
) -> None:
    failing = GatedProvider(ForecastUnavailable("gated: 503", provider="gated", cause="503"))
    with capture_events(bus) as events, anyio.fail_after(10):
        async with carbon_session(Policy(provider=failing), bus=bus) as session:
            pass
        failing.gate.set()
        await until(lambda: logged(logs, "ecoasync.forecast_failed"))
    assert events.kinds() == ["planned", "started", "completed"]  # nothing after Completed
    assert session.record is not None and session.record.forecast_error is None


async def test_a_forecast_that_never_comes_within_the_bound_leaves_the_mix(
    clock: VirtualClock,
    gated: GatedProvider,
    bus: EventBus,
    logs: list[MutableMapping[str, Any]],
) -> None:
    policy = Policy(provider=gated, forecast_timeout="0.05s")
    with capture_events(bus) as events, anyio.fail_after(10):
        async with carbon_session(policy, bus=bus) as session:
            await until(lambda: logged(logs, "ecoasync.forecast_failed"))  # at the bound
            charged = await call(session)
    assert charged.intensity_source == "mix" and charged.intensity == pytest.approx(GB_MIX)
    assert events.kinds() == ["planned", "started", "call_recorded", "forecast_failed", "completed"]
    assert events.of(ForecastFailed)[0].error == "no answer within forecast_timeout=0.05s"


@pytest.mark.parametrize(
    "rule",
    [
        {"on_forecast_error": "raise"},
        {"dirty_threshold": 250, "model_fallbacks": {"gpt-4o": "gpt-4o-mini"}},
        {"max_delay": "1h"},
    ],
    ids=["raise", "downgrades", "delay-budget"],
)
async def test_a_policy_that_decides_from_the_forecast_fetches_it_on_entry(
    clock: VirtualClock, bus: EventBus, rule: dict[str, Any]
) -> None:
    failing = FailingProvider()
    policy = Policy(provider=failing, **rule)
    with capture_events(bus) as events:
        if rule.get("on_forecast_error") == "raise":
            with pytest.raises(ForecastUnavailable):
                async with carbon_session(policy, bus=bus):
                    pytest.fail("the body must not run")
            return
        async with carbon_session(policy, bus=bus) as session:
            pass
    assert session.plan.decision == "forecast-unavailable"  # known on entry
    assert events.kinds()[:2] == ["forecast_failed", "planned"]


def test_a_bare_decorator_runs_at_once_when_its_provider_hangs(
    clock: VirtualClock, gated: GatedProvider
) -> None:
    bus = EventBus()

    @carbon_aware(provider=gated, bus=bus)
    def job() -> str:
        ecoasync.record_call_sync(
            provider="openai", model="gpt-4o-mini", output_tokens=300, latency_s=2.0
        )
        return "done"

    with capture_events(bus, Planned, CallRecorded, Completed) as events:
        assert job() == "done"  # a hanging API does not hold the call
    assert gated.asked.wait(10)  # the fetch was started, on the portal's loop
    assert events.of(Planned)[0].plan.decision == "no-delay-budget"
    assert events.of(CallRecorded)[0].call.intensity_source == "mix"
    assert events.of(Completed)[0].record.status == "completed"


def test_a_sync_session_is_charged_at_the_grid_once_the_forecast_is_here(
    clock: VirtualClock, gated: GatedProvider
) -> None:
    def charge() -> ecoasync.CallRecord:
        record = ecoasync.record_call_sync(
            provider="openai", model="gpt-4o-mini", output_tokens=300, latency_s=2.0
        )
        assert record is not None
        return record

    with ecoasync.carbon_session_sync(Policy(provider=gated)) as session:
        before = charge()
        gated.gate.set()
        for _ in range(10_000):  # bounded: the portal's loop sets it in a moment
            if session.forecast is not None:
                break
            threading.Event().wait(0.001)
        after = charge()
    assert (before.intensity_source, after.intensity_source) == ("mix", "actual")


EXITS = textwrap.dedent(
    """
    import sys
    import ecoasync
    from ecoasync.providers import UKCarbonIntensityProvider

    provider = UKCarbonIntensityProvider(base_url=sys.argv[1], timeout=120)

    @ecoasync.carbon_aware(provider=provider, forecast_timeout="120s")
    def job():
        return "ran"

    print(job(), flush=True)
    sys.stdin.readline()  # the test says when to exit: with the fetch in flight
    """
)


def test_a_process_exits_without_waiting_for_a_hung_forecast() -> None:
    """The first call runs at once against a grid API that never answers (a real server on
    loopback), and the process exits at once: the fetch still running on the sync API's
    loop is cancelled at exit, not waited for (up to forecast_timeout=120 s)."""
    with GridServer() as server:
        server.mode = "hang"
        process = subprocess.Popen(
            [sys.executable, "-c", EXITS, server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.arrived.wait(30), "the forecast was never asked for"
            began = time.monotonic()
            out, err = process.communicate("exit\n", timeout=60)
            elapsed = time.monotonic() - began
        finally:
            process.kill()
        assert process.returncode == 0, err
        assert out.strip() == "ran"  # the call ran before the API could answer
        assert server.count() == 1
    assert elapsed < 30  # far below the 120 s the fetch had left
