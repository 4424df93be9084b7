"""Calls charged by hand (``session.record_call``): facts that are recorded even past the
budget, which trip the session so that the next SDK call is refused; and never after the
session has completed."""

from __future__ import annotations

from typing import Any

import pytest

import ecoasync
from ecoasync import CarbonBudgetExceeded, Policy, carbon_session
from ecoasync.events import BudgetTripped, CallRecorded, CallRefused
from ecoasync.testing import FakeLLM, VirtualClock, capture_events
from tests.llm_helpers import MSG, grid

CALL: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "output_tokens": 600,
    "latency_s": 4.0,
}


async def test_a_record_past_the_budget_is_kept_and_the_next_sdk_call_is_refused(
    bus: ecoasync.EventBus, clock: VirtualClock
) -> None:
    fake = FakeLLM(output_tokens=40)
    client = fake.openai()
    policy = Policy(provider=grid(300.0), budget_g=0.01)
    with capture_events(bus) as events:
        async with carbon_session(policy, bus=bus, name="self-hosted") as session:
            for _ in range(10):
                call = await session.record_call(**CALL)
                assert call is not None, "a manual record is never refused"
            assert session.budget_tripped and session.remaining_g == 0
            with pytest.raises(CarbonBudgetExceeded) as caught:
                await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert fake.requests == [], "the SDK call after the trip was never sent"
    assert caught.value.session_name == "self-hosted" and caught.value.budget_g == 0.01
    kinds = events.kinds()
    assert kinds.count("call_recorded") == 10
    assert kinds.count("budget_tripped") == 1
    charged = [e.call for e in events if isinstance(e, CallRecorded)]
    first_over = next(i for i in range(10) if sum(c.emitted_g for c in charged[: i + 1]) >= 0.01)
    assert kinds.index("budget_tripped") == kinds.index("call_recorded") + first_over + 1
    tripped = events.of(BudgetTripped)[0]
    assert isinstance(tripped, BudgetTripped) and tripped.spent_g >= 0.01
    assert kinds[-2:] == ["call_refused", "completed"]
    assert isinstance(events.of(CallRefused)[0], CallRefused)
    record = session.record
    assert record is not None
    assert (record.status, record.calls, record.refused_calls) == ("aborted", 10, 1)
    assert record.emitted_g == pytest.approx(sum(c.emitted_g for c in charged))


async def test_a_record_in_a_nested_session_trips_its_parent_too(
    bus: ecoasync.EventBus, clock: VirtualClock
) -> None:
    client = FakeLLM(output_tokens=40).openai()
    async with carbon_session(Policy(provider=grid(300.0), budget_g=0.01), bus=bus) as parent:
        async with carbon_session(Policy(provider=grid(300.0)), name="step") as child:
            await child.record_call(**CALL)
        assert parent.budget_tripped and child.budget_tripped is False
        with pytest.raises(CarbonBudgetExceeded):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MSG)


@pytest.mark.parametrize("listening", [True, False])
async def test_record_call_after_the_session_has_completed_is_refused(
    bus: ecoasync.EventBus, clock: VirtualClock, listening: bool
) -> None:
    policy = Policy(provider=grid(300.0))
    with capture_events(bus) as events:
        async with carbon_session(
            policy, bus=bus if listening else ecoasync.EventBus(), name="nightly"
        ) as session:
            await session.record_call(**CALL)
        with pytest.raises(RuntimeError) as caught:
            await session.record_call(**CALL)
    assert str(caught.value).startswith(
        "session 'nightly' has completed: record_call() must run inside its 'async with' block"
    )
    if listening:
        assert events.kinds()[-2:] == ["call_recorded", "completed"], "nothing after Completed"
    assert session.record is not None and session.record.calls == 1
    assert session.spent_g == session.record.emitted_g
    # outside any session, the module-level function records nothing (and says so: None)
    assert await ecoasync.record_call(**CALL) is None
