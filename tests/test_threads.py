"""Events emitted from other threads (sync SDK clients in workers, the sync API's caller
thread) reach the session's bus on its loop, in order, and are charged to the right session."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import pytest

from ecoasync import CallRecord, EventBus, Policy, carbon_session, carbon_session_sync
from ecoasync._context import Accounting, current
from ecoasync.events import CallRecorded, Event
from ecoasync.testing import FakeProvider, VirtualClock

DAY = datetime(2026, 3, 18, tzinfo=UTC)


def charge_here(grams: float) -> None:
    """What a sync instrumented call does: find the session, charge it, emit the events."""
    acct = current()
    assert acct is not None, "no session in this thread's context"
    call = CallRecord(
        provider="openai",
        requested_model="m",
        effective_model="m",
        output_tokens=1,
        latency_s=0.1,
        emitted_g=grams,
        at=acct.clock.now(),
    )
    for bus, event in acct.charge(call):
        acct.emit_sync(bus, event)


class Recorder:
    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:  # an async sink: must run on the loop
        self.threads.add(threading.get_ident())
        self.events.append(event)


async def test_calls_from_worker_threads_are_charged_to_their_session(clock: VirtualClock) -> None:
    bus = EventBus()
    recorder = Recorder()
    bus.subscribe(recorder, CallRecorded)
    loop_thread = threading.get_ident()
    async with carbon_session(Policy(provider=FakeProvider.day(DAY)), bus=bus) as session:
        await anyio.to_thread.run_sync(charge_here, 1.0)
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, charge_here, 2.0) for _ in range(4)
            ]
            for future in futures:
                await anyio.to_thread.run_sync(future.result)
    assert session.record is not None
    assert session.record.calls == 5
    assert session.record.emitted_g == pytest.approx(9.0)
    assert len(recorder.events) == 5
    assert recorder.threads == {loop_thread}


def test_calls_in_the_sync_api_callers_thread_reach_async_sinks(clock: VirtualClock) -> None:
    bus = EventBus()
    recorder = Recorder()
    bus.subscribe(recorder, CallRecorded)
    with carbon_session_sync(Policy(provider=FakeProvider.day(DAY)), bus=bus) as session:
        charge_here(1.5)
        charge_here(1.5)
    assert session.record is not None
    assert session.record.emitted_g == pytest.approx(3.0)
    assert len(recorder.events) == 2
    assert threading.get_ident() not in recorder.threads


async def test_sync_code_on_the_loop_thread_defers_async_handlers_to_completion(
    clock: VirtualClock,
) -> None:
    bus = EventBus()
    recorder = Recorder()
    seen_sync: list[Event] = []
    bus.subscribe(recorder, CallRecorded)
    bus.subscribe(seen_sync.append, CallRecorded)
    async with carbon_session(Policy(provider=FakeProvider.day(DAY)), bus=bus):
        charge_here(1.0)  # a sync client called on the event loop's thread
        assert len(seen_sync) == 1
        assert recorder.events == []
    assert len(recorder.events) == 1


async def test_a_plain_thread_without_copied_context_is_not_charged(clock: VirtualClock) -> None:
    seen: list[Accounting | None] = []
    async with carbon_session(Policy(provider=FakeProvider.day(DAY))) as session:
        thread = threading.Thread(target=lambda: seen.append(current()))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
    assert seen == [None]
    assert session.record is not None and session.record.calls == 0


def test_calls_from_worker_threads_of_a_fast_sync_session_are_charged(clock: VirtualClock) -> None:
    """A sync session planned in its caller's thread has no loop: events from its worker
    threads go to the sync handlers in those threads, and every call is charged once."""
    bus = EventBus()
    seen: list[tuple[float, int]] = []
    bus.subscribe(lambda e: seen.append((e.call.emitted_g, threading.get_ident())), CallRecorded)
    with carbon_session_sync(Policy(provider=FakeProvider.day(DAY)), bus=bus) as session:
        with ThreadPoolExecutor(2) as pool:
            for future in [
                pool.submit(contextvars.copy_context().run, charge_here, 2.0) for _ in range(4)
            ]:
                future.result()
        charge_here(1.0)
    assert session.record is not None
    assert session.record.calls == 5 and session.record.emitted_g == pytest.approx(9.0)
    assert sorted(g for g, _ in seen) == [1.0, 2.0, 2.0, 2.0, 2.0]
    assert seen[-1][1] == threading.get_ident()  # the caller's own call, inline
