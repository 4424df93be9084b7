from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing

import ecoasync._session
from ecoasync import EventBus, Policy, carbon_session
from ecoasync.events import Completed, Event, Started
from ecoasync.sinks import JsonlSink
from ecoasync.testing import VirtualClock
from tests.llm_helpers import grid

AT = datetime(2026, 3, 18, tzinfo=UTC)
GRID = Policy(provider=grid(200.0))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """asyncio, and trio on a virtual clock (timeouts elapse at once, exactly)."""
    if request.param == "asyncio":
        return "asyncio"
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture
def bound(anyio_backend: object, monkeypatch: pytest.MonkeyPatch) -> float:
    """The handler timeout and the completion bound for a test: the real defaults (5 s) on
    trio's virtual clock, 50 ms of real time on asyncio."""
    seconds = 0.05 if anyio_backend == "asyncio" else 5.0
    monkeypatch.setattr(ecoasync._session, "COMPLETION_TIMEOUT_S", seconds)
    return seconds


def virtual(anyio_backend: object) -> bool:
    return anyio_backend != "asyncio"


def started(name: str = "s") -> Started:
    return Started(
        session_id="id",
        session_name=name,
        at=AT,
        delay=AT - AT,
        intensity=100.0,
        intensity_source="forecast",
    )


async def test_sync_handlers_run_at_once_in_order_then_async_ones(bus: EventBus) -> None:
    seen: list[str] = []

    async def second(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append("second")

    bus.subscribe(lambda e: seen.append("first"))
    bus.subscribe(second)
    bus.subscribe(lambda e: seen.append("third"))
    await bus.emit(started())
    # the sync handlers (sinks) have the event before any async handler is awaited
    assert seen == ["first", "third", "second"]
    assert bus.emitted == 1


async def test_filter_by_type_and_unsubscribe(bus: EventBus) -> None:
    starts: list[Event] = []
    everything: list[Event] = []
    sub = bus.subscribe(starts.append, Started)
    bus.subscribe(everything.append)
    await bus.emit(started())
    sub.unsubscribe()
    sub.unsubscribe()  # harmless twice
    await bus.emit(started())
    assert len(starts) == 1
    assert len(everything) == 2
    assert not sub.active
    with bus.subscribe(starts.append, Completed):
        await bus.emit(started())
    assert len(starts) == 1
    assert len(bus.subscriptions) == 1


async def test_a_raising_handler_is_logged_counted_and_isolated(
    bus: EventBus, logs: list[MutableMapping[str, Any]]
) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    async def broken_async(event: Event) -> None:
        raise OSError("disk full")

    bus.subscribe(broken)
    bus.subscribe(broken_async)
    bus.subscribe(seen.append)
    await bus.emit(started())
    assert len(seen) == 1
    assert bus.failures == 2
    failed = [entry for entry in logs if entry["event"] == "ecoasync.handler_failed"]
    assert [f["error"] for f in failed] == ["RuntimeError('sink down')", "OSError('disk full')"]
    assert str(failed[0]["handler"]).endswith("broken")
    assert failed[0]["event_kind"] == "started"


async def test_a_slow_handler_is_cut_off_after_its_timeout(
    logs: list[MutableMapping[str, Any]],
) -> None:
    bus = EventBus(handler_timeout=0.01)
    seen: list[Event] = []

    async def slow(event: Event) -> None:
        await anyio.sleep_forever()

    bus.subscribe(slow)
    bus.subscribe(seen.append)
    await bus.emit(started())
    assert len(seen) == 1
    assert bus.failures == 1
    assert logs[-1]["timed_out"] is True


def test_bad_subscriptions_are_refused(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe("print")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Event subclasses"):
        bus.subscribe(print, str)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="handler_timeout"):
        EventBus(handler_timeout=0)
    with pytest.raises(ValueError, match="max_buffer"):
        bus.stream(max_buffer=0)


async def test_stream_delivers_live_events(bus: EventBus) -> None:
    received: list[Event] = []

    async def consume() -> None:
        async with bus.stream(Started) as events:
            async for event in events:
                received.append(event)
                if len(received) == 3:
                    break

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        for i in range(3):
            await bus.emit(started(str(i)))
    assert [e.session_name for e in received] == ["0", "1", "2"]
    assert not bus.subscriptions


async def test_slow_stream_consumer_drops_oldest_and_counts(
    bus: EventBus, logs: list[MutableMapping[str, Any]]
) -> None:
    stream = bus.stream(max_buffer=2)
    for i in range(5):
        await bus.emit(started(str(i)))
    assert bus.dropped == 3
    assert [stream.receive_nowait().session_name for _ in range(2)] == ["3", "4"]  # type: ignore[union-attr]
    assert stream.receive_nowait() is None
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert any(entry["event"] == "ecoasync.stream_overflow" for entry in logs)


async def test_emit_nowait_defers_async_handlers_until_flush(bus: EventBus) -> None:
    order: list[str] = []

    async def async_handler(event: Event) -> None:
        order.append(f"async {event.session_name}")

    bus.subscribe(lambda e: order.append(f"sync {e.session_name}"))
    bus.subscribe(async_handler)
    bus.emit_nowait(started("a"))
    assert order == ["sync a"]
    await bus.emit(started("b"))  # the pending event first, so each handler keeps the order
    assert order == ["sync a", "sync b", "async a", "async b"]


async def test_a_handler_that_hangs_on_completed_does_not_keep_it_from_the_sinks(
    tmp_path: Path, bound: float, clock: VirtualClock
) -> None:
    # issue 17.2: the hung handler used the whole completion window, the sink never had it
    bus = EventBus(handler_timeout=bound)

    async def hung(event: Event) -> None:
        await anyio.sleep_forever()

    bus.subscribe(hung, Completed)
    sink = JsonlSink(tmp_path / "t.jsonl")
    bus.subscribe(sink)
    async with carbon_session(GRID, bus=bus) as session:
        await session.record_call(
            provider="openai", model="gpt-4o-mini", output_tokens=100, latency_s=1.0
        )
    await sink.aclose()
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["call_recorded", "completed"]
    assert lines[-1]["record"]["calls"] == 1
    assert bus.failures == 1  # the hung handler, cut off and counted


async def test_a_hung_async_handler_costs_a_session_one_timeout_not_one_per_event(
    anyio_backend: object,
    bound: float,
    clock: VirtualClock,
    logs: list[MutableMapping[str, Any]],
) -> None:
    bus = EventBus(handler_timeout=bound)

    async def hung(event: Event) -> None:
        await anyio.sleep_forever()

    bus.subscribe(hung)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    began = anyio.current_time()
    async with carbon_session(GRID, bus=bus) as session:
        await session.record_call(
            provider="openai", model="gpt-4o-mini", output_tokens=100, latency_s=1.0
        )
    took = anyio.current_time() - began
    assert [e.kind for e in seen] == ["planned", "started", "call_recorded", "completed"]
    # Planned timed out; the handler then rests: Started, CallRecorded, Completed not given
    assert (bus.failures, bus.dropped) == (1, 3)
    failed = [e for e in logs if e["event"] == "ecoasync.handler_failed"]
    assert len(failed) == 1 and failed[0]["rests_s"] == bound
    if virtual(anyio_backend):
        assert took == pytest.approx(bound)  # was four timeouts: 20 s for a one-call session


async def test_a_rested_handler_gets_events_again(anyio_backend: object, bound: float) -> None:
    bus = EventBus(handler_timeout=bound)
    calls: list[str] = []
    hang = True

    async def flaky(event: Event) -> None:
        calls.append(event.session_name)
        if hang:
            await anyio.sleep_forever()

    bus.subscribe(flaky)
    await bus.emit(started("a"))  # times out
    await bus.emit(started("b"))  # resting: not given
    hang = False
    await anyio.sleep(bound * 1.5)
    await bus.emit(started("c"))
    assert calls == ["a", "c"]
    assert (bus.failures, bus.dropped) == (1, 1)


async def test_session_exit_is_bounded_when_a_handler_blocks_in_a_thread(
    anyio_backend: object, bound: float, clock: VirtualClock
) -> None:
    # issue 17.6: to_thread.run_sync(time.sleep, 15) in a handler made exit take 15 s
    gate = threading.Event()
    bus = EventBus(handler_timeout=bound)

    async def blocking(event: Event) -> None:
        await anyio.to_thread.run_sync(gate.wait, 10.0)

    bus.subscribe(blocking, Completed)
    seen: list[Event] = []
    bus.subscribe(seen.append, Completed)
    began, wall = anyio.current_time(), time.monotonic()
    try:
        async with carbon_session(GRID, bus=bus):
            pass
        took, took_wall = anyio.current_time() - began, time.monotonic() - wall
    finally:
        gate.set()
    assert took_wall < 5.0  # not the thread's 10 s
    if virtual(anyio_backend):
        assert took == pytest.approx(bound)
    assert len(seen) == 1 and bus.failures == 1
    async with carbon_session(GRID, bus=bus):  # still running in its thread: not given more
        pass
    assert bus.dropped >= 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_handler_that_cancels_itself_does_not_cancel_the_workload(
    clock: VirtualClock, logs: list[MutableMapping[str, Any]]
) -> None:
    # issue 17.9: a handler awaiting a cancelled future delivered CancelledError to the session
    bus = EventBus()

    async def rogue(event: Event) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    bus.subscribe(rogue)
    async with carbon_session(GRID, bus=bus) as session:
        await anyio.lowlevel.checkpoint()
        ran = True
    assert ran and session.record is not None and session.record.status == "completed"
    assert bus.failures == 3  # planned, started, completed: each contained and counted
    failed = [e for e in logs if e["event"] == "ecoasync.handler_failed"]
    assert [f["error"] for f in failed] == ["CancelledError()"] * 3


async def test_a_slow_sync_handler_is_counted_and_logged(
    logs: list[MutableMapping[str, Any]],
) -> None:
    bus = EventBus(slow_handler_s=1e-6)

    def slow(event: Event) -> None:
        sum(range(20_000))  # a fraction of a millisecond on the event loop

    bus.subscribe(slow)
    await bus.emit(started())
    bus.emit_nowait(started())
    assert bus.slow == 2 and bus.failures == 0
    entry = logs[-1]
    assert entry["event"] == "ecoasync.handler_slow" and entry["held_s"] > 0
    with pytest.raises(ValueError, match="slow_handler_s"):
        EventBus(slow_handler_s=0)


async def test_a_deadline_that_expires_while_completed_is_delivered_is_raised(
    bound: float, clock: VirtualClock
) -> None:
    # fail_after(0.2) around a session whose Completed took 1 s to deliver: 1.1 s, no error
    bus = EventBus(handler_timeout=bound * 4)

    async def slowish(event: Event) -> None:
        await anyio.sleep(bound)

    bus.subscribe(slowish, Completed)
    seen: list[Completed] = []
    bus.subscribe(seen.append, Completed)
    began = anyio.current_time()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(bound * 0.4):
            async with carbon_session(GRID, bus=bus):
                pass
    assert [e.status for e in seen] == ["completed"]  # delivered, then the deadline raised
    assert anyio.current_time() - began < bound * 4


async def test_a_stream_has_one_consumer(bus: EventBus) -> None:
    stream = bus.stream()
    got: list[Event] = []

    async def consume() -> None:
        got.append(await stream.__anext__())

    with anyio.fail_after(10):  # (two consumers used to wait forever, one of them unwoken)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="one consumer"):
                await stream.__anext__()
            await bus.emit(started())
    assert len(got) == 1
    second = bus.stream()  # one stream per consumer: each gets every event
    await bus.emit(started("b"))
    assert second.receive_nowait() is not None and stream.receive_nowait() is not None
