"""Every SDK call style, with the real OpenAI and Anthropic clients on their mock transport."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from ecologits.tracers.utils import llm_impacts
from pydantic import BaseModel

import ecoasync
from ecoasync import CallRecord, Policy, carbon_session, carbon_session_sync
from ecoasync.events import CallRecorded
from ecoasync.testing import CapturedEvents, FakeLLM, VirtualClock, capture_events
from tests.llm_helpers import CLAUDE, MSG, grid, span


class Answer(BaseModel):
    answer: str


@pytest.fixture
def anyio_backend() -> str:
    # the SDKs' own SSE decoders leave async generators unexhausted, which trio reports as a
    # ResourceWarning (an SDK matter, seen without ecoasync too); non-stream calls run on trio
    # in test_instrument_rules.py
    return "asyncio"


@pytest.fixture
def fake() -> FakeLLM:
    return FakeLLM(output_tokens=40, dated={"gpt-4o-mini": "gpt-4o-mini-2024-07-18"})


@pytest.fixture
def events(bus: ecoasync.EventBus) -> Iterator[CapturedEvents]:
    with capture_events(bus) as captured:
        yield captured


def calls(events: CapturedEvents) -> list[CallRecord]:
    return [e.call for e in events if isinstance(e, CallRecorded)]


POLICY = Policy(provider=grid(200.0))


async def test_openai_async_call_styles(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client = fake.openai()
    async with carbon_session(POLICY, bus=bus) as session:
        done = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert done.usage is not None and done.usage.completion_tokens == 40

        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        )
        assert isinstance(stream, openai.AsyncStream)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text.startswith("w0 w1")

        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as helper:
            final = await helper.get_final_completion()
        assert final.choices[0].message.content

        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSG
        )
        assert raw.http_response.status_code == 200
        usage = raw.parse().usage
        assert usage is not None and usage.completion_tokens == 40

        parsed = await client.chat.completions.parse(
            model="gpt-4o-mini", messages=MSG, response_format=Answer
        )
        assert isinstance(parsed.choices[0].message.parsed, Answer)

        response = await client.responses.create(model="gpt-4o-mini", input="hi")
        assert response.usage is not None and response.usage.output_tokens == 40
        async with client.responses.stream(model="gpt-4o-mini", input="hi") as rstream:
            async for _ in rstream:
                pass
        rparsed = await client.responses.parse(model="gpt-4o-mini", input="hi", text_format=Answer)
        assert isinstance(rparsed.output_parsed, Answer)
        spent = session.spent_g

    recorded = calls(events)
    assert [c.stream for c in recorded] == [False, True, True, False, False, False, True, False]
    assert all(c.provider == "openai" and c.output_tokens == 40 for c in recorded)
    assert all(c.requested_model == c.effective_model == "gpt-4o-mini" for c in recorded)
    assert all(c.intensity == 200.0 and c.intensity_source == "actual" for c in recorded)
    assert all(c.known_model and c.energy_kwh > 0 for c in recorded)
    assert session.record is not None
    assert session.record.calls == 8
    assert session.record.emitted_g == pytest.approx(sum(c.emitted_g for c in recorded))
    assert spent == pytest.approx(session.record.emitted_g)
    assert session.record.models["gpt-4o-mini"].calls == 8


async def test_anthropic_async_call_styles(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client = fake.anthropic()
    async with carbon_session(POLICY, bus=bus) as session:
        message = await client.messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
        assert message.usage.output_tokens == 40
        stream = await client.messages.create(
            model=CLAUDE, max_tokens=64, messages=MSG, stream=True
        )
        kinds = [event.type async for event in stream]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        async with client.messages.stream(model=CLAUDE, max_tokens=64, messages=MSG) as helper:
            final = await helper.get_final_message()
        assert final.usage.output_tokens == 40
        raw = await client.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=64, messages=MSG
        )
        assert (await raw.parse()).usage.output_tokens == 40

    recorded = calls(events)
    assert [c.stream for c in recorded] == [False, True, True, False]
    assert all(c.provider == "anthropic" and c.output_tokens == 40 for c in recorded)
    assert [c.input_tokens for c in recorded] == [12, 12, 12, 12]
    assert session.record is not None and session.record.calls == 4


def test_sync_clients_in_sync_session(fake: FakeLLM, bus: ecoasync.EventBus) -> None:
    oa, an = fake.openai(sync=True), fake.anthropic(sync=True)
    with (
        capture_events(bus) as events,
        carbon_session_sync(POLICY, bus=bus, clock=VirtualClock()) as session,
    ):
        oa.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        for _ in oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSG,
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
        with oa.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as helper:
            helper.until_done()
        oa.responses.create(model="gpt-4o-mini", input="hi")
        an.messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
        with an.messages.stream(model=CLAUDE, max_tokens=64, messages=MSG) as stream:
            assert stream.get_final_text().startswith("w0")
        an.messages.with_raw_response.create(model=CLAUDE, max_tokens=64, messages=MSG)
    recorded = calls(events)
    assert len(recorded) == 7
    assert [c.provider for c in recorded] == ["openai"] * 4 + ["anthropic"] * 3
    assert all(c.output_tokens == 40 for c in recorded)
    assert session.record is not None and session.record.calls == 7
    assert events.kinds()[-1] == "completed"


async def test_energy_equals_ecologits_figure(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client = fake.anthropic()
    async with carbon_session(POLICY, bus=bus):
        await client.messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
        await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    for call, provider, model in zip(
        calls(events),
        ("anthropic", "openai"),
        (CLAUDE, "gpt-4o-mini-2024-07-18"),  # the model the answer reports
        strict=True,
    ):
        theirs = llm_impacts(provider, model, call.output_tokens, call.latency_s)
        assert theirs.energy is not None and theirs.embodied is not None
        mean, low, high = span(theirs.energy.value)
        assert call.energy_kwh == pytest.approx(mean, rel=1e-12)
        assert call.energy_kwh_min == pytest.approx(low, rel=1e-12)
        assert call.energy_kwh_max == pytest.approx(high, rel=1e-12)
        assert call.emitted_g == pytest.approx(call.energy_kwh * 200.0)
        assert call.embodied_g == pytest.approx(1000 * span(theirs.embodied.gwp.value)[0])
        assert call.water_usage_l > 0 and call.pe_usage_mj > 0 and call.adpe_embodied_kgsbeq > 0


async def test_streams_with_usage_chunk_and_abandoned_streams(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client, claude = fake.openai(), fake.anthropic()
    async with carbon_session(POLICY, bus=bus) as session:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSG,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
        abandoned = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        )
        received = 0
        async for chunk in abandoned:
            if chunk.choices and chunk.choices[0].delta.content:
                received += 1
            if received == 5:
                break
        await abandoned.close()
        async with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=MSG) as helper:
            seen = 0
            async for event in helper:
                seen += event.type == "text"
                if seen == 7:
                    break
        assert session.spent_g > 0
    recorded = calls(events)
    assert [c.output_tokens for c in recorded] == [40, 5, 7]
    assert recorded[0].input_tokens == 12 and recorded[1].input_tokens is None
    assert all(c.stream for c in recorded)


async def test_attach_impacts(fake: FakeLLM, bus: ecoasync.EventBus, clock: VirtualClock) -> None:
    ecoasync.instrument(attach_impacts=True)
    try:
        async with carbon_session(POLICY, bus=bus):
            done = await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
            message = await fake.anthropic().messages.create(
                model=CLAUDE, max_tokens=64, messages=MSG
            )
        outside = await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    finally:
        ecoasync.instrument(attach_impacts=False)
    impacts: Any = getattr(done, "impacts", None)
    assert impacts.energy.value.min > 0 and impacts.gwp.unit == "kgCO2eq"
    attached: Any = getattr(message, "impacts", None)
    assert attached.energy.value.max > 0
    assert not hasattr(outside, "impacts")


async def test_outside_a_session_nothing_changes(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents
) -> None:
    ecoasync.instrument()
    done = await fake.openai().chat.completions.create(model="gpt-4o", messages=MSG)
    async for _ in await fake.anthropic().messages.create(
        model=CLAUDE, max_tokens=64, messages=MSG, stream=True
    ):
        pass
    assert done.model == "gpt-4o"
    assert not hasattr(done, "impacts")
    assert [r.model for r in fake.requests] == ["gpt-4o", CLAUDE]
    assert list(events) == []


async def test_sdk_error_propagates_unchanged_and_is_not_charged(
    bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    fake = FakeLLM(fail=500)
    with pytest.raises(openai.InternalServerError) as caught:
        async with carbon_session(POLICY, bus=bus) as session:
            await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert caught.value.status_code == 500
    assert session.record is not None
    assert session.record.calls == 0 and session.record.emitted_g == 0
    assert session.record.status == "failed"
    assert calls(events) == []
