"""Many concurrent sessions sharing one client: every call lands in its own session."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any

import anyio
import openai
import pytest

import ecoasync
from ecoasync import CarbonBudgetExceeded, Policy, SessionRecord, carbon_session
from ecoasync._instrument._fakes import _http_module
from ecoasync.events import CallRecorded, CallRefused
from ecoasync.testing import FakeLLM, VirtualClock, capture_events
from tests.llm_helpers import CLAUDE, MSG, grid

SESSIONS = 100
CALLS = 6


async def test_hundred_sessions_different_grids_and_budgets(bus: ecoasync.EventBus) -> None:
    fake = FakeLLM(output_tokens=30)
    openai_client, claude_client = fake.openai(), fake.anthropic()
    intensity = {i: 100.0 + 3 * i for i in range(SESSIONS)}
    # a third unbounded, the rest between about one and five calls' worth
    budget = {i: None if i % 3 == 0 else 0.004 * (1 + i % 5) for i in range(SESSIONS)}
    made: dict[str, int] = {}
    records: dict[int, SessionRecord] = {}
    ids: dict[str, int] = {}
    refusals: dict[int, CarbonBudgetExceeded] = {}

    async def agent(i: int) -> None:
        policy = Policy(provider=grid(intensity[i]), budget_g=budget[i])
        sent = 0
        try:
            async with carbon_session(policy, bus=bus, name=f"s{i}") as session:
                ids[session.id] = i
                with session.tagged(f"agent-{i}"):
                    for n in range(CALLS):
                        await anyio.sleep(0)  # let the other sessions interleave
                        if n % 2:
                            await claude_client.messages.create(
                                model=CLAUDE, max_tokens=64, messages=MSG
                            )
                        else:
                            await openai_client.chat.completions.create(
                                model="gpt-4o-mini", messages=MSG
                            )
                        sent += 1
        except CarbonBudgetExceeded as exc:
            refusals[i] = exc
        made[session.id] = sent
        assert session.record is not None
        records[i] = session.record

    with VirtualClock.installed(), capture_events(bus) as events:
        async with anyio.create_task_group() as tg:
            for i in range(SESSIONS):
                tg.start_soon(agent, i)

    by_session: dict[str, list[CallRecorded]] = defaultdict(list)
    for event in events:
        if isinstance(event, CallRecorded):
            by_session[event.session_id].append(event)
    assert len(fake.requests) == sum(made.values())
    for sid, i in ids.items():
        mine = by_session[sid]
        record = records[i]
        assert len(mine) == made[sid] == record.calls, f"session {i}"
        # every call was charged at this session's grid and tagged by this session's agent
        assert all(e.call.intensity == intensity[i] for e in mine)
        assert all(e.call.tags == (f"agent-{i}",) for e in mine)
        assert record.by_tag[f"agent-{i}"].calls == record.calls
        assert record.emitted_g == pytest.approx(sum(e.call.emitted_g for e in mine))
        # running totals are this session's own
        assert mine[-1].session_total_g == pytest.approx(record.emitted_g)
        limit = budget[i]
        if i in refusals:
            assert refusals[i].session_id == sid
        if limit is None:
            assert record.calls == CALLS and record.status == "completed"
            continue
        if record.emitted_g >= limit:
            assert record.status == "aborted" and record.budget_tripped
            # crossed by the last call only: before it, the session was under budget
            assert record.emitted_g - mine[-1].call.emitted_g < limit
            refused = [e for e in events if isinstance(e, CallRefused) and e.session_id == sid]
            assert len(refused) == (1 if record.calls < CALLS else 0)
        else:
            assert record.calls == CALLS and record.status == "completed"
    statuses = {r.status for r in records.values()}
    assert statuses == {"completed", "aborted"}


async def test_a_budget_is_crossed_by_at_most_the_calls_in_flight_when_it_trips(
    clock: VirtualClock,
) -> None:
    """docs/guides/budgets.md: sequential code ends below budget + one call; N calls at once
    below budget + N calls."""
    fake = FakeLLM(output_tokens=500)
    client = fake.openai()
    async with carbon_session(Policy(provider=grid(250.0))) as probe:
        await client.chat.completions.create(model="gpt-4o", messages=MSG)
    one = probe.spent_g
    budget = 2.5 * one

    async with carbon_session(Policy(provider=grid(250.0), budget_g=budget)) as sequential:
        with pytest.raises(CarbonBudgetExceeded):
            for _ in range(10):
                await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert budget <= sequential.spent_g < budget + one
    assert sequential.spent_g == pytest.approx(3 * one, rel=1e-3)

    gate = anyio.Event()
    http = _http_module(openai.DefaultAsyncHttpxClient)

    async def answer(request: Any) -> Any:
        await gate.wait()  # every call is admitted before any is charged
        return fake.handle(request)

    gated = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://fake-llm.local/v1",
        http_client=openai.DefaultAsyncHttpxClient(transport=http.MockTransport(answer)),
        max_retries=0,
    )
    async with carbon_session(Policy(provider=grid(250.0), budget_g=budget)) as concurrent:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(partial(gated.chat.completions.create, model="gpt-4o", messages=MSG))
            await anyio.wait_all_tasks_blocked()
            gate.set()
        with pytest.raises(CarbonBudgetExceeded):
            await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert concurrent.spent_g == pytest.approx(20 * one, rel=1e-3)
    assert concurrent.spent_g < budget + 20 * one * 1.001
