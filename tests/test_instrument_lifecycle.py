"""What a session owns: streams left unfinished, calls that outlive it, the grid it is charged
at when the forecast failed, and EcoLogits' import kept off the event loop (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, MutableMapping
from functools import partial
from typing import Any

import anyio
import openai
import pytest

import ecoasync
from ecoasync import Policy, carbon_session
from ecoasync._instrument import _charge
from ecoasync._instrument._fakes import _http_module
from ecoasync._instrument._impacts import electricity_mix, zone_to_mix_zone
from ecoasync.events import CallRecorded, Completed
from ecoasync.providers import Retry, UKCarbonIntensityProvider
from ecoasync.testing import CapturedEvents, FakeLLM, VirtualClock, capture_events
from tests.conftest import ROOT
from tests.grid_server import GridServer
from tests.llm_helpers import CLAUDE, MSG, grid

POLICY = Policy(provider=grid(200.0))


@pytest.fixture
def anyio_backend() -> str:
    # the SDKs' SSE decoders leave async generators unexhausted, which trio reports as a
    # ResourceWarning (see test_instrument_sdks.py)
    return "asyncio"


@pytest.fixture
def fake() -> FakeLLM:
    return FakeLLM(output_tokens=40)


@pytest.fixture
def events(bus: ecoasync.EventBus) -> Iterator[CapturedEvents]:
    with capture_events(bus) as captured:
        yield captured


def gated_openai(fake: FakeLLM, gate: anyio.Event) -> openai.AsyncOpenAI:
    """The real async OpenAI client on a mock transport that answers once ``gate`` is set."""
    http = _http_module(openai.DefaultAsyncHttpxClient)

    async def answer(request: Any) -> Any:
        await gate.wait()
        return fake.handle(request)

    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://fake-llm.local/v1",
        http_client=openai.DefaultAsyncHttpxClient(transport=http.MockTransport(answer)),
        max_retries=0,
    )


# --- streams left unfinished ---


async def test_a_stream_abandoned_in_the_session_is_charged_for_what_it_received(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    # issue 17.10: breaking out of a stream after three chunks gave calls=0, emitted_g=0
    client, claude = fake.openai(), fake.anthropic()
    async with carbon_session(POLICY, bus=bus) as session:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        )
        received = 0
        async for _ in stream:
            received += 1
            if received == 3:
                break
        messages = await claude.messages.create(
            model=CLAUDE, max_tokens=64, messages=MSG, stream=True
        )
        async for event in messages:
            if event.type == "content_block_delta":
                break
    record = session.record
    assert record is not None and record.calls == 2 and record.emitted_g > 0
    calls = [e.call for e in events.of(CallRecorded)]
    assert [c.provider for c in sorted(calls, key=lambda c: c.provider)] == ["anthropic", "openai"]
    assert all(0 < c.output_tokens < 40 and c.stream for c in calls)
    assert events.kinds()[-1] == "completed"
    del stream, messages  # dropped later: not charged twice
    await anyio.lowlevel.checkpoint()
    assert events.kinds().count("call_recorded") == 2


SYNC_ABANDONED = textwrap.dedent(
    """
    import ecoasync
    from ecoasync.testing import FakeLLM, VirtualClock
    from tests.llm_helpers import MSG, grid

    client = FakeLLM(output_tokens=40).openai(sync=True)
    policy = ecoasync.Policy(provider=grid(200.0))
    with ecoasync.carbon_session_sync(policy, clock=VirtualClock()) as session:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        for n, _ in enumerate(stream):
            if n == 2:
                break
    print("calls", session.record.calls, "tokens", session.record.models["gpt-4o-mini"].output_tokens)
    """
)


def test_a_sync_stream_abandoned_in_the_session_is_charged_and_exits_quietly() -> None:
    # issue 17.10: the sync variant printed a traceback at interpreter exit
    done = subprocess.run(
        [sys.executable, "-c", SYNC_ABANDONED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["calls", "1", "tokens", "2"]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


# --- calls that outlive their session ---


async def test_a_call_still_running_when_its_session_ends_is_charged_to_the_parent(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    gate = anyio.Event()
    client = gated_openai(fake, gate)
    async with carbon_session(POLICY, bus=bus, name="outer") as outer:
        async with anyio.create_task_group() as tg:
            async with carbon_session(bus=bus, name="inner") as inner:
                tg.start_soon(
                    lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
                )
                await anyio.wait_all_tasks_blocked()  # the request is in flight
            gate.set()  # the call ends after the inner session completed
    assert inner.record is not None and inner.record.calls == 0
    assert outer.record is not None and outer.record.calls == 1
    recorded = events.of(CallRecorded)
    assert [e.session_id for e in recorded] == [outer.id]
    inner_done = next(
        i for i, e in enumerate(events) if isinstance(e, Completed) and e.session_id == inner.id
    )
    assert all(e.session_id != inner.id for e in events[inner_done + 1 :])


async def test_a_call_that_outlives_every_session_is_logged_and_counted_not_emitted(
    fake: FakeLLM,
    bus: ecoasync.EventBus,
    events: CapturedEvents,
    clock: VirtualClock,
    logs: list[MutableMapping[str, Any]],
) -> None:
    # a background task recorded its call after Completed (and the record showed 0 g)
    gate = anyio.Event()
    client = gated_openai(fake, gate)
    before = _charge.failures()
    async with anyio.create_task_group() as tg:
        async with carbon_session(POLICY, bus=bus, name="leaves-work-behind") as session:

            async def late() -> None:
                await gate.wait()
                await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

            tg.start_soon(late)  # starts after the session ended, in its context
            tg.start_soon(partial(client.chat.completions.create, model="gpt-4o", messages=MSG))
            await anyio.wait_all_tasks_blocked()  # in flight as the session ends
        gate.set()
    assert session.record is not None and session.record.calls == 0
    assert events.kinds() == ["planned", "started", "completed"]  # nothing after Completed
    assert _charge.failures() - before == 2
    late_calls = [e for e in logs if e["event"] == "ecoasync.call_after_session"]
    assert sorted(e["model"] for e in late_calls) == ["gpt-4o", "gpt-4o-mini"]
    assert all(e["session_id"] == session.id for e in late_calls)


# --- the grid when the forecast failed ---


async def test_a_failed_gb_forecast_is_charged_at_gbs_mix_not_the_worlds(
    bus: ecoasync.EventBus, events: CapturedEvents, logs: list[MutableMapping[str, Any]]
) -> None:
    with GridServer() as server:
        server.mode = "500"
        provider = UKCarbonIntensityProvider(
            base_url=server.url, timeout=1.0, retry=Retry(attempts=1)
        )
        try:
            # a delay budget: the forecast is fetched on entry (without one, in the background)
            policy = Policy(provider=provider, max_delay="1h")
            async with carbon_session(policy, bus=bus) as session:
                await session.record_call(
                    provider="openai", model="gpt-4o-mini", output_tokens=200, latency_s=2.0
                )
        finally:
            await provider.aclose()
    assert session.plan.decision == "forecast-unavailable"
    call = events.of(CallRecorded)[0].call
    gb = electricity_mix("GB").gwp_g_per_kwh
    assert call.intensity_source == "mix"
    assert call.intensity == pytest.approx(gb)  # about 217 g/kWh, was the world's 458
    assert gb < 0.6 * electricity_mix(None).gwp_g_per_kwh
    fallback = [e for e in logs if e["event"] == "ecoasync.intensity_fallback"]
    assert fallback[0]["zone"] == "GB" and fallback[0]["mix_zone"] == "GBR"


def test_uk_regional_zones_map_to_gbs_mix() -> None:
    assert zone_to_mix_zone("GB:region-3") == zone_to_mix_zone("GB:postcode-RG10") == "GBR"


# --- EcoLogits' import ---

IMPORT_THREAD = textwrap.dedent(
    """
    import sys, threading
    import anyio
    import ecoasync
    from ecoasync.testing import FakeProvider

    seen = []

    class Spy:
        def find_spec(self, name, path=None, target=None):
            if name == "ecologits":
                seen.append(threading.current_thread() is threading.main_thread())
            return None

    sys.meta_path.insert(0, Spy())

    async def main():
        policy = ecoasync.Policy(provider=FakeProvider.day())
        async with ecoasync.carbon_session(policy) as session:
            record = await session.record_call(
                provider="openai", model="gpt-4o-mini", output_tokens=100, latency_s=1.0
            )
        assert record is not None and record.energy_kwh > 0

    anyio.run(main)
    print("imported on the loop's thread:", seen)
    """
)


def test_the_first_measured_call_imports_ecologits_off_the_event_loop() -> None:
    # it blocked the loop for ~80 ms on the first record_call
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THREAD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "imported on the loop's thread: [False]"
