from __future__ import annotations

import _thread
import contextvars
import dataclasses
import inspect
import signal
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import ecoasync
from ecoasync import EventBus, Policy, carbon_aware, carbon_session_sync
from ecoasync._context import current
from ecoasync.events import CallRecorded, Completed, Event, Planned
from ecoasync.testing import FakeLLM, FakeProvider, VirtualClock, capture_events

DAY = datetime(2026, 3, 18, tzinfo=UTC)
var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@pytest.fixture
def evening() -> FakeProvider:
    return FakeProvider.day(DAY)


@pytest.fixture
def clock() -> object:
    with VirtualClock.installed(DAY + timedelta(hours=18)) as clock:
        yield clock


def test_carbon_session_sync_runs_the_body_in_the_callers_thread(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    var.set("caller")
    caller = threading.get_ident()
    with (
        capture_events(bus) as events,
        carbon_session_sync(
            Policy(max_delay="4h", provider=evening), bus=bus, name="sync"
        ) as session,
    ):
        assert threading.get_ident() == caller
        assert var.get() == "caller"
        assert current() is not None  # instrumentation in this thread sees the session
        assert clock.now() >= session.plan.start
    assert current() is None
    assert events.kinds() == ["planned", "started", "completed"]
    assert session.record is not None and session.record.status == "completed"
    assert session.plan.decision == "wait"


def test_sync_body_exception_propagates_and_is_recorded(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    with capture_events(bus) as events, pytest.raises(ValueError, match="boom"):
        with carbon_session_sync(Policy(provider=evening), bus=bus):
            raise ValueError("boom")
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.status == "failed"


def test_decorator_on_a_sync_function_keeps_its_signature(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()

    @carbon_aware(max_delay="2h", provider=evening, bus=bus)
    def double(x: int, *, twice: bool = True) -> int:
        """Doubles."""
        return x * 2 if twice else x

    with capture_events(bus) as events:
        assert double(21) == 42
    assert double.__name__ == "double"
    assert double.__doc__ == "Doubles."
    assert inspect.signature(double) == inspect.signature(double.__wrapped__)  # type: ignore[attr-defined]
    assert list(inspect.signature(double).parameters) == ["x", "twice"]
    assert events[0].session_name.endswith("double")


async def test_decorator_on_a_coroutine_function(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()

    @carbon_aware(Policy(max_delay="2h", provider=evening), bus=bus, name="job")
    async def work(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        assert current() is not None
        return x + 1

    assert inspect.iscoroutinefunction(work)
    with capture_events(bus) as events:
        assert await work(1) == 2
    assert events.kinds() == ["planned", "started", "completed"]
    assert events[0].session_name == "job"


def test_bare_decorator_runs_under_a_parent_session(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    @carbon_aware
    def hello() -> str:
        acct = current()
        assert acct is not None
        assert acct.parent is not None  # nested: rolls up into the caller's session
        return "hi"

    assert hello.__name__ == "hello"
    with carbon_session_sync(Policy(provider=evening)) as parent:
        assert hello() == "hi"
    assert evening.calls == 1  # the nested session reused its parent's forecast
    assert parent.record is not None and parent.record.status == "completed"


def test_decorator_validates_policy_fields_at_decoration_time() -> None:
    with pytest.raises(ecoasync.PolicyError, match="max_delay"):
        carbon_aware(max_delay="-2h")
    with pytest.raises(TypeError, match="either a Policy or policy fields"):
        carbon_aware(Policy(), max_delay="2h")


async def test_the_sync_api_refuses_to_run_inside_an_event_loop(evening: FakeProvider) -> None:
    @carbon_aware(provider=evening)
    def blocking() -> None:
        pass

    with pytest.raises(RuntimeError, match="async with ecoasync.carbon_session"):
        blocking()
    with pytest.raises(RuntimeError, match="event loop"):
        with carbon_session_sync(Policy(provider=evening)):
            pass


async def test_the_sync_api_works_from_a_worker_thread(evening: FakeProvider) -> None:
    def in_thread() -> str | None:
        with VirtualClock.installed(DAY), carbon_session_sync(Policy(provider=evening)) as session:
            pass
        return session.record.status if session.record else None

    assert await anyio.to_thread.run_sync(in_thread) == "completed"


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in a terminal.

    A process started in the background (``pytest &``, some CI runners) inherits SIGINT
    ignored, and then ``_thread.interrupt_main()`` does nothing: install Python's own handler
    for the test, and put back whatever was there.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_while_waiting_cancels_cleanly(evening: FakeProvider) -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    planned = threading.Event()
    bus.subscribe(lambda e: planned.set(), Planned)

    class NeverClock:
        """A clock whose wait only ends by cancellation (a real four-hour wait), or after 30 s
        if Ctrl-C never arrives: the test then fails instead of hanging."""

        def now(self) -> datetime:
            return DAY + timedelta(hours=18)

        async def sleep_until(self, deadline: datetime) -> None:
            with anyio.fail_after(30):
                await anyio.sleep_forever()

    def interrupt() -> None:
        if planned.wait(10):
            _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        with carbon_session_sync(
            Policy(max_delay="4h", provider=evening), bus=bus, clock=NeverClock()
        ):
            pytest.fail("the body must not run")
    kinds = [e.kind for e in events]
    assert kinds == ["planned", "completed"]
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.status == "cancelled"


# --- the fast path: planned in the calling thread (issue 13, 6) ------------------------------

VARYING = {"session_id", "call_id"}  # all else is equal under one virtual clock


def shape(value: object) -> object:
    """An event or record as plain data, without what differs between two sessions."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: shape(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in VARYING
        }
    if isinstance(value, Mapping):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(shape(v) for v in value)
    return value


def run_job(bus: EventBus, policy: Policy) -> tuple[list[Event], set[int]]:
    """A sync session with one call charged in the body; its events and the threads that
    delivered them to a sync handler."""
    threads: set[int] = set()
    bus.subscribe(lambda e: threads.add(threading.get_ident()))
    with capture_events(bus) as events, carbon_session_sync(policy, bus=bus, name="job"):
        ecoasync.record_call_sync(
            provider="openai", model="gpt-4o-mini", output_tokens=300, latency_s=2.0
        )
    return list(events), threads


async def async_handler(event: Event) -> None:
    await anyio.lowlevel.checkpoint()


def test_the_fast_path_gives_the_portals_events_and_record_without_leaving_the_thread(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    policy = Policy(provider=evening, budget_g=5)  # no delay budget: runs now
    fast, fast_threads = run_job(EventBus(), policy)
    portal_bus = EventBus()
    portal_bus.subscribe(async_handler)  # an async handler needs a loop: the portal
    slow, slow_threads = run_job(portal_bus, policy)
    assert [e.kind for e in fast] == ["planned", "started", "call_recorded", "completed"]
    assert [shape(e) for e in fast] == [shape(e) for e in slow]
    assert fast_threads == {threading.get_ident()}  # no thread crossed
    assert threading.get_ident() not in slow_threads  # the portal's loop delivered them
    record = fast[-1].record  # type: ignore[attr-defined]
    assert record.calls == 1 and record.emitted_g > 0 and record.run_intensity_source == "actual"


def test_a_plan_that_waits_crosses_to_the_portal_and_plans_once_there(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    threads: set[int] = set()
    bus.subscribe(lambda e: threads.add(threading.get_ident()), Planned)
    with capture_events(bus) as events:
        with carbon_session_sync(
            Policy(max_delay="4h", jitter="0m", provider=evening), bus=bus
        ) as s:
            assert clock.now() == s.plan.start
    assert s.plan.decision == "wait"
    assert events.kinds() == ["planned", "started", "completed"]
    assert threading.get_ident() not in threads  # planned (and emitted) on the portal


def test_an_async_handler_that_arrives_during_the_body_gets_completed_on_a_loop(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    seen: list[tuple[str, int]] = []

    async def late(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((event.kind, threading.get_ident()))

    with carbon_session_sync(Policy(provider=evening), bus=bus) as session:
        bus.subscribe(late)  # the session entered inline: no loop so far
    assert session.record is not None and session.record.status == "completed"
    assert [kind for kind, _ in seen] == ["completed"]
    assert seen[0][1] != threading.get_ident()


def test_ctrl_c_in_a_fast_body_records_the_session_as_cancelled(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    with capture_events(bus) as events, pytest.raises(KeyboardInterrupt):
        with carbon_session_sync(Policy(provider=evening), bus=bus):
            raise KeyboardInterrupt
    assert events.kinds() == ["planned", "started", "completed"]
    assert events.of(Completed)[0].status == "cancelled"
    assert current() is None


def test_ctrl_c_while_entering_inline_records_the_session_as_cancelled(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    """Ctrl-C can land anywhere in the inline entry: here, in a sync handler of Planned."""
    bus = EventBus()

    def interrupted(event: Event) -> None:
        raise KeyboardInterrupt

    with capture_events(bus) as events, pytest.raises(KeyboardInterrupt):
        bus.subscribe(interrupted, Planned)
        with carbon_session_sync(Policy(provider=evening), bus=bus):
            pytest.fail("the body must not run")
    assert events.kinds() == ["planned", "completed"]
    assert events.of(Completed)[0].status == "cancelled"
    assert current() is None


def test_a_calibrated_plan_with_its_history_in_memory_is_made_inline(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    threads: set[int] = set()
    bus = EventBus()
    bus.subscribe(lambda e: threads.add(threading.get_ident()), Planned)
    # the static provider keeps its history in memory; a 4 h budget at 03:00 (the night's
    # low) says run now
    clock.advance(timedelta(hours=9))
    policy = Policy(max_delay="4h", strategy="calibrated", provider=evening)
    with carbon_session_sync(policy, bus=bus) as session:
        pass
    assert session.plan.decision != "wait"
    assert threads == {threading.get_ident()}


def test_a_sync_session_is_single_use(clock: VirtualClock, evening: FakeProvider) -> None:
    manager = carbon_session_sync(Policy(provider=evening))
    with manager:
        pass
    with pytest.raises(RuntimeError, match="already entered"):
        manager.__enter__()


def test_sdk_calls_in_a_fast_body_are_charged_in_the_callers_thread(
    clock: VirtualClock, evening: FakeProvider
) -> None:
    bus = EventBus()
    client = FakeLLM(output_tokens=300).openai(sync=True)
    threads: set[int] = set()
    bus.subscribe(lambda e: threads.add(threading.get_ident()), CallRecorded)
    with carbon_session_sync(Policy(provider=evening), bus=bus) as session:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert session.record is not None and session.record.calls == 1
    assert session.record.emitted_g > 0
    assert threads == {threading.get_ident()}
