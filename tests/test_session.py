from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import ecoasync
from ecoasync import CallRecord, EventBus, ForecastUnavailable, Policy, carbon_session
from ecoasync._context import current
from ecoasync.events import (
    BudgetTripped,
    CallRecorded,
    Completed,
    Event,
    ForecastFailed,
    Planned,
    Started,
)
from ecoasync.testing import FailingProvider, FakeProvider, VirtualClock, capture_events

DAY = datetime(2026, 3, 18, tzinfo=UTC)


def evening(clock: VirtualClock) -> FakeProvider:
    """A fake synthetic day, with the clock at 18:00 (the dirty peak): waiting pays."""
    clock.advance(timedelta(hours=18))
    return FakeProvider.day(DAY)


async def test_session_plans_waits_and_completes(clock: VirtualClock, bus: EventBus) -> None:
    provider = evening(clock)
    with capture_events(bus) as events:
        async with carbon_session(
            Policy(max_delay="4h", provider=provider, jitter="0m"),
            bus=bus,
            name="nightly",
            tags=["team:a"],
        ) as session:
            assert clock.now() == session.plan.start
            assert current() is not None
        assert current() is None
    assert events.kinds() == ["planned", "started", "completed"]
    assert session.plan.decision == "wait"
    assert session.plan.delay == timedelta(hours=4)
    assert session.plan.planned_intensity is not None and session.plan.now_intensity is not None
    assert session.plan.planned_intensity < session.plan.now_intensity
    completed = events[-1]
    assert isinstance(completed, Completed)
    record = completed.record
    assert record is session.record
    assert record.status == "completed"
    assert record.name == "nightly"
    assert record.tags == ("team:a",)
    assert record.delay_s == pytest.approx(4 * 3600)
    assert record.provider == "synthetic"
    assert record.signal == "average/direct"
    assert record.run_intensity_source == "actual"
    assert record.baseline_intensity is not None and record.run_intensity is not None
    assert record.run_intensity < record.baseline_intensity
    for event in events:
        assert event.session_id == session.id
        assert event.at.tzinfo is not None
        assert event.to_dict()["schema"] == 1


async def test_the_issue_example_runs_on_a_csv_trace(clock: VirtualClock, tmp_path: object) -> None:
    from pathlib import Path

    from ecoasync.providers import CsvForecastProvider

    path = Path(str(tmp_path)) / "trace.csv"
    rows = ["from,to,intensity_forecast,intensity_actual"]
    values = [300, 280, 250, 90, 120, 200, 260, 280, 300, 310]
    for i, v in enumerate(values):
        a, b = DAY + timedelta(minutes=30 * i), DAY + timedelta(minutes=30 * (i + 1))
        rows.append(f"{a:%Y-%m-%dT%H:%MZ},{b:%Y-%m-%dT%H:%MZ},{v},{v + 5}")
    path.write_text("\n".join(rows) + "\n")
    policy = ecoasync.Policy(max_delay="4h", provider=CsvForecastProvider(path))
    bus = ecoasync.EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    async with ecoasync.carbon_session(policy, bus=bus, name="nightly") as session:
        pass
    assert session.plan.start - session.plan.slot_start <= timedelta(minutes=5)
    assert session.plan.slot_start == DAY + timedelta(minutes=90)
    assert session.plan.planned_intensity == 90
    assert [e.kind for e in seen] == ["planned", "started", "completed"]


async def test_body_exception_propagates_unchanged_and_is_recorded(
    clock: VirtualClock, bus: EventBus
) -> None:
    error = KeyError("mine")
    with capture_events(bus) as events, pytest.raises(KeyError) as info:
        async with carbon_session(Policy(provider=FakeProvider.day(DAY)), bus=bus):
            raise error
    assert info.value is error
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.status == "failed"
    assert completed.record.error == "KeyError: 'mine'"


class _Blocker:
    """Cancels the session's scope when it reaches a chosen point."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope

    async def hold(self, event: Event | None = None) -> None:
        self.scope.cancel()
        await anyio.sleep_forever()


@pytest.mark.parametrize("point", ["forecast", "planned", "wait", "started", "body"])
async def test_cancellation_at_every_await_point_emits_cancelled(
    point: str, clock: VirtualClock
) -> None:
    bus = EventBus(handler_timeout=60)
    provider = evening(clock)
    events: list[Event] = []
    bus.subscribe(events.append)
    with anyio.CancelScope() as scope:
        blocker = _Blocker(scope)

        class Provider:
            name = "blocking"

            async def forecast(self, start: datetime, end: datetime) -> ecoasync.Forecast:
                if point == "forecast":
                    await blocker.hold()
                return await provider.forecast(start, end)

        class Clock:
            def now(self) -> datetime:
                return clock.now()

            async def sleep_until(self, deadline: datetime) -> None:
                if point == "wait":
                    await blocker.hold()
                await clock.sleep_until(deadline)

        if point == "planned":
            bus.subscribe(blocker.hold, Planned)
        if point == "started":
            bus.subscribe(blocker.hold, Started)
        async with carbon_session(
            Policy(max_delay="4h", provider=Provider()), bus=bus, clock=Clock()
        ):
            if point == "body":
                await blocker.hold()
            pytest.fail("the body should not finish")
    assert scope.cancelled_caught
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) == 1
    assert completed[0].status == "cancelled"
    assert events[-1] is completed[0]
    assert current() is None


async def test_cancelled_completed_is_delivered_to_async_sinks_under_shield(
    clock: VirtualClock,
) -> None:
    bus = EventBus()
    delivered: list[str] = []

    async def sink(event: Event) -> None:
        await anyio.lowlevel.checkpoint()  # would raise if not shielded
        delivered.append(event.kind)

    bus.subscribe(sink, Completed)
    with anyio.move_on_after(0) as scope:
        async with carbon_session(Policy(max_delay="4h", provider=evening(clock)), bus=bus):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert delivered == ["completed"]


async def test_forecast_failure_runs_now_and_says_so(
    clock: VirtualClock, bus: EventBus, logs: list[MutableMapping[str, Any]]
) -> None:
    provider = FailingProvider()
    with capture_events(bus) as events:
        async with carbon_session(Policy(max_delay="4h", provider=provider), bus=bus) as session:
            assert clock.now() == session.plan.created_at
    assert events.kinds() == ["forecast_failed", "planned", "started", "completed"]
    failed = events[0]
    assert isinstance(failed, ForecastFailed)
    assert failed.action == "run_now"
    assert failed.provider == "failing"
    assert session.plan.decision == "forecast-unavailable"
    assert "failed" in session.plan.reason
    record = session.record
    assert record is not None
    assert record.forecast_error is not None
    assert record.status == "completed"
    assert record.baseline_intensity_source == "none"
    assert any(entry["event"] == "ecoasync.forecast_failed" for entry in logs)


async def test_forecast_failure_can_raise(clock: VirtualClock, bus: EventBus) -> None:
    with capture_events(bus) as events:
        with pytest.raises(ForecastUnavailable, match="the test provider failed"):
            async with carbon_session(
                Policy(provider=FailingProvider(), on_forecast_error="raise"), bus=bus
            ):
                pytest.fail("unreachable")
    assert events.kinds() == ["forecast_failed", "completed"]
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.status == "failed"


async def test_a_provider_bug_is_wrapped_when_raising(clock: VirtualClock, bus: EventBus) -> None:
    provider = FailingProvider(lambda: ZeroDivisionError("oops"), name="buggy")
    with pytest.raises(ForecastUnavailable, match="buggy") as info:
        async with carbon_session(Policy(provider=provider, on_forecast_error="raise"), bus=bus):
            pass
    assert isinstance(info.value.__cause__, ZeroDivisionError)


async def test_a_hanging_provider_is_bounded_by_forecast_timeout(
    clock: VirtualClock, bus: EventBus
) -> None:
    policy = Policy(max_delay="4h", provider=FailingProvider(hang=True), forecast_timeout="0.05s")
    with capture_events(bus) as events:
        with anyio.fail_after(5):
            async with carbon_session(policy, bus=bus) as session:
                pass
    assert session.plan.decision == "forecast-unavailable"
    failed = events[0]
    assert isinstance(failed, ForecastFailed)
    assert "forecast_timeout" in failed.error


def _call(model: str, grams: float, at: datetime, tags: tuple[str, ...] = ()) -> CallRecord:
    return CallRecord(
        provider="openai",
        requested_model=model,
        effective_model=model,
        output_tokens=100,
        latency_s=1.0,
        energy_kwh=grams / 100,
        energy_kwh_min=grams / 200,
        energy_kwh_max=grams / 50,
        intensity=100.0,
        intensity_source="forecast",
        emitted_g=grams,
        baseline_g=grams * 2,
        at=at,
        tags=tags,
    )


async def test_budget_trip_aborts_and_refuses_later_calls(
    clock: VirtualClock, bus: EventBus
) -> None:
    with capture_events(bus) as events:
        async with carbon_session(
            Policy(provider=FakeProvider.day(DAY), budget_g=1.0), bus=bus
        ) as session:
            acct = current()
            assert acct is not None
            assert acct.refusal("gpt-4o") is None
            for target, event in acct.charge(_call("gpt-4o", 0.6, clock.now())):
                await target.emit(event)
            assert not acct.tripped
            for target, event in acct.charge(_call("gpt-4o", 0.6, clock.now())):
                await target.emit(event)
            assert session.budget_tripped
            refusal = acct.refusal("gpt-4o")
            assert refusal is not None
            error, refused = refusal
            assert error.spent_g == pytest.approx(1.2)
            assert error.budget_g == 1.0
            assert "budget" in str(error)
    assert [e.kind for e in events] == [
        "planned",
        "started",
        "call_recorded",
        "call_recorded",
        "budget_tripped",
        "completed",
    ]
    tripped = events.of(BudgetTripped)[0]
    assert isinstance(tripped, BudgetTripped)
    assert tripped.spent_g == pytest.approx(1.2)
    record = session.record
    assert record is not None
    assert record.status == "aborted"
    assert record.budget_tripped
    assert record.refused_calls == 1
    assert record.emitted_g == pytest.approx(1.2)
    assert record.baseline_g == pytest.approx(2.4)
    assert record.saved_g == pytest.approx(1.2)
    assert record.energy_kwh_min <= record.energy_kwh <= record.energy_kwh_max
    recorded = events.of(CallRecorded)
    assert [e.session_total_g for e in recorded] == pytest.approx([0.6, 1.2])


async def test_nested_sessions_roll_up_into_the_parent(clock: VirtualClock, bus: EventBus) -> None:
    provider = FakeProvider.day(DAY)
    async with carbon_session(
        Policy(provider=provider, budget_g=10), bus=bus, name="parent"
    ) as parent:
        async with carbon_session(name="child") as child:
            acct = current()
            assert acct is not None and acct.parent is not None
            assert acct.bus is bus
            for target, event in acct.charge(_call("gpt-4o", 2.0, clock.now(), ("writer",))):
                await target.emit(event)
        assert provider.calls == 1  # the child reused its parent's forecast
    assert child.record is not None and parent.record is not None
    assert child.record.parent_id == parent.id
    assert child.record.emitted_g == pytest.approx(2.0)
    assert parent.record.emitted_g == pytest.approx(2.0)
    assert parent.record.calls == 1
    assert dict(parent.record.by_tag)["writer"].calls == 1
    assert parent.record.models["gpt-4o"].emitted_g == pytest.approx(2.0)


async def test_a_parent_budget_refuses_calls_in_a_child(clock: VirtualClock, bus: EventBus) -> None:
    async with carbon_session(
        Policy(provider=FakeProvider.day(DAY), budget_g=1), bus=bus, name="parent"
    ):
        async with carbon_session(Policy(provider=FakeProvider.day(DAY)), name="child"):
            acct = current()
            assert acct is not None
            acct.charge(_call("gpt-4o", 1.5, clock.now()))
            refusal = acct.refusal("gpt-4o")
            assert refusal is not None
            assert refusal[0].session_name == "parent"


async def test_concurrent_sessions_never_share_state(clock: VirtualClock, bus: EventBus) -> None:
    provider = FakeProvider.day(DAY)
    totals: dict[str, float] = {}

    async def worker(i: int) -> None:
        async with carbon_session(
            Policy(max_delay=f"{i % 5}h", provider=provider), bus=bus, name=f"w{i}"
        ) as session:
            for _ in range(i % 4 + 1):
                acct = current()
                assert acct is not None and acct.name == f"w{i}"
                acct.charge(_call("gpt-4o", 1.0, clock.now()))
                await anyio.lowlevel.checkpoint()
        assert session.record is not None
        totals[session.name] = session.record.emitted_g

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(worker, i)
    assert totals == {f"w{i}": float(i % 4 + 1) for i in range(50)}


async def test_tags_per_call(clock: VirtualClock) -> None:
    async with carbon_session(Policy(provider=FakeProvider.day(DAY))) as session:
        with session.tagged("planner"):
            from ecoasync._context import call_tags

            assert call_tags() == ("planner",)
            with session.tagged("critic"):
                assert call_tags() == ("planner", "critic")
        assert call_tags() == ()


async def test_contextvars_set_in_the_body_stay_visible(clock: VirtualClock) -> None:
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    var.set(1)
    async with carbon_session(Policy(provider=FakeProvider.day(DAY))):
        assert var.get() == 1
        var.set(2)
    assert var.get() == 2


def test_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(TypeError, match="ecoasync.Policy"):
        carbon_session({"max_delay": "4h"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="EventBus"):
        carbon_session(bus=print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags=\\['nightly'\\]"):
        carbon_session(tags="nightly")
    with pytest.raises(ValueError, match="name"):
        carbon_session(name="")


async def test_plan_is_not_available_before_entering() -> None:
    manager = carbon_session(Policy(provider=FakeProvider.day(DAY)))
    session = manager._session
    with pytest.raises(RuntimeError, match="no plan yet"):
        _ = session.plan


async def test_no_forecast_for_now_runs_at_once(bus: EventBus) -> None:
    with VirtualClock.installed(DAY + timedelta(days=30)):
        async with carbon_session(
            Policy(max_delay="4h", provider=FakeProvider.day(DAY)), bus=bus
        ) as session:
            pass
    assert session.plan.decision == "no-forecast"
    assert session.record is not None and session.record.baseline_intensity_source == "none"


async def test_a_session_manager_is_single_use(clock: VirtualClock) -> None:
    manager = carbon_session(Policy(provider=FakeProvider.day(DAY)))
    async with manager:
        pass
    with pytest.raises(RuntimeError, match="already entered"):
        async with manager:
            pass


@pytest.mark.parametrize("max_delay", ["0s", "4h"])
async def test_entering_is_a_checkpoint_with_the_forecast_in_memory(
    clock: VirtualClock, bus: EventBus, max_delay: str
) -> None:
    """A session whose forecast is in memory plans without suspending, but entering still
    checkpoints (the wait for its slot, or a bare checkpoint when it runs at once): a cancelled
    caller never runs the body, and the session completes as cancelled."""
    provider = evening(clock)
    policy = Policy(max_delay=max_delay, provider=provider)
    ran = []
    with capture_events(bus) as events, anyio.CancelScope() as scope:
        scope.cancel()
        async with carbon_session(policy, bus=bus):
            ran.append(True)
    assert scope.cancelled_caught and not ran
    completed = events.of(Completed)
    assert [c.record.status for c in completed] == ["cancelled"]
