from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from ecoasync import EventBus
from ecoasync.events import Completed, Event, Started

AT = datetime(2026, 3, 18, tzinfo=UTC)


def started(name: str = "s") -> Started:
    return Started(
        session_id="id",
        session_name=name,
        at=AT,
        delay=AT - AT,
        intensity=100.0,
        intensity_source="forecast",
    )


async def test_handlers_run_in_subscription_order_sync_and_async(bus: EventBus) -> None:
    seen: list[str] = []

    async def second(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append("second")

    bus.subscribe(lambda e: seen.append("first"))
    bus.subscribe(second)
    bus.subscribe(lambda e: seen.append("third"))
    await bus.emit(started())
    assert seen == ["first", "second", "third"]
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
    await bus.emit(started("b"))  # flushes the pending first, keeping order
    assert order == ["sync a", "async a", "sync b", "async b"]
