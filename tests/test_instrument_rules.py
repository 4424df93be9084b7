"""Downgrade, budget, unknown models, fallback intensity, tags, threads, manual records,
and turning the instrumentation on and off."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread
import pytest
from ecologits.electricity_mix_repository import electricity_mixes
from ecologits.impacts.llm import compute_llm_impacts

import ecoasync
from ecoasync import CallRecord, CarbonBudgetExceeded, Forecast, Policy, carbon_session
from ecoasync.events import (
    BudgetTripped,
    CallRecorded,
    CallRefused,
    Completed,
    Downgraded,
    ModelUnknown,
)
from ecoasync.testing import (
    CapturedEvents,
    FailingProvider,
    FakeLLM,
    FakeProvider,
    VirtualClock,
    capture_events,
)
from tests.llm_helpers import CLAUDE, MSG, grid, span

FALLBACKS = {"gpt-4o": "gpt-4o-mini", "claude-opus-4-7": "claude-haiku-4-5"}


@pytest.fixture
def fake() -> FakeLLM:
    return FakeLLM(output_tokens=40)


@pytest.fixture
def events(bus: ecoasync.EventBus) -> Iterator[CapturedEvents]:
    with capture_events(bus) as captured:
        yield captured


def calls(events: CapturedEvents) -> list[CallRecord]:
    return [e.call for e in events if isinstance(e, CallRecorded)]


# --- downgrade ---


async def test_dirty_grid_downgrades_dated_ids(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    policy = Policy(provider=grid(400.0), dirty_threshold=300, model_fallbacks=FALLBACKS)
    async with carbon_session(policy, bus=bus) as session:
        done = await fake.openai().chat.completions.create(model="gpt-4o-2024-08-06", messages=MSG)
        message = await fake.anthropic().messages.create(
            model="claude-opus-4-7", max_tokens=64, messages=MSG
        )
    assert done.model == "gpt-4o-mini" and message.model == "claude-haiku-4-5"
    assert [r.model for r in fake.requests] == ["gpt-4o-mini", "claude-haiku-4-5"]
    downgrades = [e for e in events if isinstance(e, Downgraded)]
    assert [(d.requested, d.effective, d.intensity) for d in downgrades] == [
        ("gpt-4o-2024-08-06", "gpt-4o-mini", 400.0),
        ("claude-opus-4-7", "claude-haiku-4-5", 400.0),
    ]
    recorded = calls(events)
    assert all(c.downgraded for c in recorded)
    assert [(c.requested_model, c.effective_model) for c in recorded] == [
        ("gpt-4o-2024-08-06", "gpt-4o-mini"),
        ("claude-opus-4-7", "claude-haiku-4-5"),
    ]
    assert session.record is not None
    assert session.record.downgrades == 2
    assert dict(session.record.models["gpt-4o-mini"].requested) == {"gpt-4o-2024-08-06": 1}


async def test_clean_grid_keeps_the_model(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    policy = Policy(provider=grid(120.0), dirty_threshold=300, model_fallbacks=FALLBACKS)
    async with carbon_session(policy, bus=bus):
        await fake.openai().chat.completions.create(model="gpt-4o", messages=MSG)
    assert [r.model for r in fake.requests] == ["gpt-4o"]
    assert not any(isinstance(e, Downgraded) for e in events)
    assert calls(events)[0].downgraded is False


# --- budget ---


async def test_budget_trips_keeps_the_paid_response_then_refuses(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client = fake.anthropic()
    policy = Policy(provider=grid(500.0), budget_g=0.05)
    results: list[Any] = []
    with pytest.raises(CarbonBudgetExceeded) as caught:
        async with carbon_session(policy, bus=bus, name="agent") as session:
            for _ in range(5):
                results.append(
                    await client.messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
                )
    assert len(results) == 2, "the call that crossed the budget still reached the caller"
    assert results[1].usage.output_tokens == 40
    assert len(fake.requests) == 2, "the refused call was never sent"
    error = caught.value
    assert error.budget_g == 0.05 and error.spent_g >= 0.05 and error.model == CLAUDE
    assert error.session_name == "agent"
    assert events.kinds()[-5:] == [
        "call_recorded",
        "call_recorded",
        "budget_tripped",
        "call_refused",
        "completed",
    ]
    tripped = events.of(BudgetTripped)[0]
    assert isinstance(tripped, BudgetTripped) and tripped.spent_g == pytest.approx(error.spent_g)
    refused = events.of(CallRefused)[0]
    assert isinstance(refused, CallRefused) and refused.model == CLAUDE
    assert session.record is not None
    assert session.record.status == "aborted"
    assert session.record.budget_tripped and session.record.refused_calls == 1
    first = calls(events)[0]
    assert session.record.emitted_g - first.emitted_g < 0.05  # crossed by one call, no more


async def test_tripped_budget_caught_by_user_still_aborts(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    policy = Policy(provider=grid(500.0), budget_g=1e-6)
    async with carbon_session(policy, bus=bus) as session:
        await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert session.budget_tripped and session.remaining_g == 0
        with pytest.raises(CarbonBudgetExceeded):
            await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
        with pytest.raises(CarbonBudgetExceeded):
            fake.anthropic().messages.stream(model=CLAUDE, max_tokens=64, messages=MSG)
    assert session.record is not None and session.record.status == "aborted"
    assert session.record.refused_calls == 2


async def test_budget_without_forecast_uses_the_world_mix(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    policy = Policy(provider=FailingProvider(), budget_g=0.02)
    with pytest.raises(CarbonBudgetExceeded):
        async with carbon_session(policy, bus=bus) as session:
            for _ in range(10):
                await fake.anthropic().messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
    world = electricity_mixes.find_electricity_mix(zone="WOR")
    assert world is not None
    recorded = calls(events)
    assert recorded and all(c.intensity_source == "mix" for c in recorded)
    assert recorded[0].intensity == pytest.approx(world.gwp * 1000)
    assert recorded[0].emitted_g > 0
    assert recorded[0].baseline_g == pytest.approx(recorded[0].emitted_g)
    assert session.record is not None and session.record.status == "aborted"


async def test_empty_forecast_uses_the_zone_mix(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    policy = Policy(provider=FakeProvider(Forecast([], zone="FR")))
    async with carbon_session(policy, bus=bus):
        await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    france = electricity_mixes.find_electricity_mix(zone="FRA")
    assert france is not None
    call = calls(events)[0]
    assert call.intensity_source == "mix"
    assert call.intensity == pytest.approx(france.gwp * 1000)


# --- unknown models ---


async def test_unknown_model_is_flagged_once_never_silently(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    async with carbon_session(Policy(provider=grid(200.0)), bus=bus) as session:
        for _ in range(2):
            await fake.openai().chat.completions.create(model="acme-finetune-7", messages=MSG)
    unknown = events.of(ModelUnknown)
    assert len(unknown) == 1
    assert isinstance(unknown[0], ModelUnknown)
    assert (unknown[0].provider, unknown[0].model) == ("openai", "acme-finetune-7")
    recorded = calls(events)
    assert len(recorded) == 2
    assert all(not c.known_model and c.energy_kwh == 0 and c.output_tokens == 40 for c in recorded)
    assert session.record is not None
    assert session.record.unknown_models == ("acme-finetune-7",)
    assert session.record.models["acme-finetune-7"].known is False


# --- custom models and manual records ---


async def test_registered_moe_model_with_custom_mix_and_record_call(
    bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    mix = ecoasync.ElectricityMix(zone="onsite-solar", gwp_g_per_kwh=40.0, wue_l_per_kwh=0.5)
    ecoasync.register_model(
        "acme-moe", total_params_b=140, active_params_b=39, provider="vllm", pue=1.1, mix=mix
    )
    try:
        async with carbon_session(Policy(provider=FailingProvider()), bus=bus) as session:
            record = await session.record_call(
                provider="vllm", model="acme-moe", output_tokens=300, latency_s=2.5
            )
            other = await ecoasync.record_call(
                provider="vllm", model="nobody-knows", output_tokens=10, latency_s=0.1
            )
    finally:
        ecoasync.unregister_model("acme-moe", provider="vllm")
    assert record is not None and other is not None
    theirs = compute_llm_impacts(
        model_active_parameter_count=39,
        model_total_parameter_count=140,
        output_token_count=300,
        request_latency=2.5,
        if_electricity_mix_adpe=mix.adpe_kgsbeq_per_kwh,
        if_electricity_mix_pe=mix.pe_mj_per_kwh,
        if_electricity_mix_gwp=0.04,
        if_electricity_mix_wue=0.5,
        datacenter_pue=1.1,
        datacenter_wue=0.569,
    )
    mean = span(theirs.energy.value)[0]
    assert record.energy_kwh == pytest.approx(mean, rel=1e-12)
    assert record.intensity == 40.0 and record.intensity_source == "mix"
    assert record.emitted_g == pytest.approx(record.energy_kwh * 40.0)
    assert record.known_model and not other.known_model
    assert [e.kind for e in events if e.kind in ("call_recorded", "model_unknown")] == [
        "call_recorded",
        "model_unknown",
        "call_recorded",
    ]
    assert (
        await ecoasync.record_call(provider="vllm", model="acme-moe", output_tokens=1, latency_s=1)
        is None
    )  # outside a session: nothing to charge


def test_register_model_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="active_params_b"):
        ecoasync.register_model("x", total_params_b=7, active_params_b=8)
    with pytest.raises(ValueError, match="total_params_b"):
        ecoasync.register_model("x", total_params_b=-1)
    with pytest.raises(ValueError, match="gwp_g_per_kwh"):
        ecoasync.ElectricityMix(zone="x", gwp_g_per_kwh=float("nan"))


async def test_record_call_validates(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        await ecoasync.record_call(provider="p", model="m", output_tokens=-1, latency_s=1)
    with pytest.raises(ValueError, match="latency_s"):
        await ecoasync.record_call(provider="p", model="m", output_tokens=1, latency_s=-2)


# --- tags, per-model usage, threads ---


async def test_tags_and_models_in_the_completed_record(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    async with carbon_session(Policy(provider=grid(250.0)), bus=bus) as session:
        with session.tagged("planner"):
            await fake.openai().chat.completions.create(model="gpt-4o", messages=MSG)
        with session.tagged("writer"):
            for _ in range(2):
                await fake.anthropic().messages.create(model=CLAUDE, max_tokens=64, messages=MSG)
            with session.tagged("critic"):
                await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
        await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    completed = events.of(Completed)[0]
    assert isinstance(completed, Completed)
    record = completed.record
    assert {k: v.calls for k, v in record.by_tag.items()} == {
        "planner": 1,
        "writer": 3,
        "critic": 1,
        "untagged": 1,
    }
    assert {k: v.calls for k, v in record.models.items()} == {
        "gpt-4o": 1,
        CLAUDE: 2,
        "gpt-4o-mini": 2,
    }
    tagged = calls(events)
    assert tagged[3].tags == ("writer", "critic")
    assert record.by_tag["planner"].emitted_g == pytest.approx(tagged[0].emitted_g)
    assert sum(m.emitted_g for m in record.models.values()) == pytest.approx(record.emitted_g)


async def test_worker_threads_are_charged_to_the_session(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    client = fake.openai(sync=True)

    def work() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    bare_done = threading.Event()

    def bare() -> None:
        work()
        bare_done.set()

    async with carbon_session(Policy(provider=grid(180.0)), bus=bus) as session:
        await anyio.to_thread.run_sync(work)
        with ThreadPoolExecutor(2) as pool:
            ctx = contextvars.copy_context()
            future = pool.submit(ctx.run, work)
            await anyio.to_thread.run_sync(future.result)
        # a bare thread does not inherit the context: its calls are not the session's
        thread = threading.Thread(target=bare)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
    assert bare_done.is_set()
    assert len(fake.requests) == 3
    assert session.record is not None and session.record.calls == 2
    assert len(calls(events)) == 2


# --- on and off ---


async def test_instrument_is_idempotent_and_reversible(
    fake: FakeLLM, bus: ecoasync.EventBus, events: CapturedEvents, clock: VirtualClock
) -> None:
    from anthropic.resources.messages import Messages
    from openai.resources.chat.completions import AsyncCompletions

    ecoasync.instrument()
    wrapped = AsyncCompletions.create
    ecoasync.instrument()
    assert AsyncCompletions.create is wrapped and ecoasync.is_instrumented()
    assert wrapped.__wrapped__.__name__ == "create"  # type: ignore[attr-defined]
    try:
        ecoasync.uninstrument()
        ecoasync.uninstrument()
        assert not ecoasync.is_instrumented()
        assert AsyncCompletions.create is not wrapped
        assert not hasattr(Messages.stream, "__ecoasync_target__")
        async with carbon_session(Policy(provider=grid(200.0)), bus=bus) as session:
            await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert not ecoasync.is_instrumented(), "a session does not undo uninstrument()"
        assert session.record is not None and session.record.calls == 0
    finally:
        ecoasync.instrument()
    assert hasattr(Messages.stream, "__ecoasync_target__")
    async with carbon_session(Policy(provider=grid(200.0)), bus=bus) as session:
        await fake.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert session.record is not None and session.record.calls == 1


def test_a_session_instruments_sdks_imported_later() -> None:
    code = """
import sys, anyio, ecoasync
from ecoasync.testing import FakeLLM, VirtualClock
assert "openai" not in sys.modules
async def main():
    with VirtualClock.installed():
        async with ecoasync.carbon_session(ecoasync.Policy(provider=ecoasync.testing.FakeProvider.day())) as s:
            import openai  # imported inside the session, after it instrumented
            await FakeLLM().openai().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert s.record.calls == 1, s.record
    print("ok")
anyio.run(main)
"""
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
