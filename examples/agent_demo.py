"""A multi-step agent under ecoasync: per-agent carbon, a dirty-grid downgrade, a budget trip.

Needs the ``openai`` and ``anthropic`` extras: ``pip install "ecoasync[openai,anthropic]"``.

Run it: ``python examples/agent_demo.py``. Offline: the real OpenAI and Anthropic clients talk
to ``ecoasync.testing.FakeLLM`` through their own mock transport, the grid is the synthetic
day, and a virtual clock stands in for time. In production, use your real clients and drop
the fakes; nothing else changes.

The agent is four plain async functions (planner, researcher, writer, critic), each tagged,
so the session record breaks the carbon down per agent.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import anyio

import ecoasync
from ecoasync.events import BudgetTripped, CallRecorded, CallRefused, Downgraded, Event
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import FakeLLM, VirtualClock

try:  # FakeLLM below builds the real SDKs' clients
    import anthropic  # noqa: F401
    import openai  # noqa: F401
except ImportError:
    sys.exit(
        "examples/agent_demo.py needs the openai and anthropic extras: "
        'pip install "ecoasync[openai,anthropic]"'
    )

GRID = StaticForecastProvider(synthetic_day())
FALLBACKS = {"gpt-4o": "gpt-4o-mini", "claude-opus-4-7": "claude-haiku-4-5"}
fake = FakeLLM(output_tokens=120, dated={"gpt-4o": "gpt-4o-2024-08-06"})
openai_client = fake.openai()
claude_client = fake.anthropic()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def planner(session: ecoasync.Session, task: str) -> str:
    with session.tagged("planner"):
        done = await openai_client.chat.completions.create(model="gpt-4o", messages=user(task))
    return done.choices[0].message.content or ""


async def researcher(session: ecoasync.Session, plan: str) -> list[str]:
    notes = []
    with session.tagged("researcher"):
        for step in ("sources", "facts"):
            message = await claude_client.messages.create(
                model="claude-opus-4-7", max_tokens=512, messages=user(f"{step}: {plan[:40]}")
            )
            notes.append(message.content[0].text)  # type: ignore[union-attr]
    return notes


async def writer(session: ecoasync.Session, notes: list[str]) -> str:
    with session.tagged("writer"):
        stream = await openai_client.chat.completions.create(
            model="gpt-4o",
            messages=user(" ".join(notes)[:200]),
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def critic(session: ecoasync.Session, draft: str) -> str:
    with session.tagged("critic"):
        async with claude_client.messages.stream(
            model="claude-haiku-4-5", max_tokens=256, messages=user(draft[:200])
        ) as stream:
            return await stream.get_final_text()


async def agent(session: ecoasync.Session, task: str) -> str:
    plan = await planner(session, task)
    notes = await researcher(session, plan)
    draft = await writer(session, notes)
    return await critic(session, draft)


def show(event: Event) -> None:
    if isinstance(event, Downgraded):
        print(
            f"  downgraded {event.requested} -> {event.effective} "
            f"(grid {event.intensity:.0f} >= {event.threshold:.0f} gCO2eq/kWh)"
        )
    elif isinstance(event, CallRecorded):
        call = event.call
        print(
            f"  {call.tags[0] if call.tags else '-':<10} {call.effective_model:<18} "
            f"{call.output_tokens:>4} tok  {call.emitted_g * 1000:7.2f} mg  "
            f"(session {event.session_total_g * 1000:.2f} mg)"
        )
    elif isinstance(event, BudgetTripped):
        print(f"  budget tripped: {event.spent_g * 1000:.2f} mg of {event.budget_g * 1000:.2f} mg")
    elif isinstance(event, CallRefused):
        print(f"  refused {event.model}: the budget is spent")


def summary(session: ecoasync.Session) -> None:
    record = session.record
    assert record is not None
    print(
        f"  -> {record.status}: {record.calls} calls, {record.emitted_g * 1000:.2f} mg CO2eq, "
        f"{record.downgrades} downgraded, {record.refused_calls} refused"
    )
    for tag, usage in record.by_tag.items():
        print(f"     {tag:<10} {usage.calls} calls {usage.emitted_g * 1000:7.2f} mg")


async def main() -> None:
    bus = ecoasync.EventBus()
    bus.subscribe(show)

    print("1. the agent at 13:30, a clean windy afternoon")
    clock.advance(datetime(2026, 3, 18, 13, 30, tzinfo=UTC) - clock.now())
    policy = ecoasync.Policy(provider=GRID, dirty_threshold=250, model_fallbacks=FALLBACKS)
    async with ecoasync.carbon_session(policy, bus=bus, name="clean") as session:
        await agent(session, "write a brief on heat pumps")
    summary(session)

    print("2. the same agent at 18:00, the evening peak: big models are downgraded")
    clock.advance(datetime(2026, 3, 18, 18, tzinfo=UTC) - clock.now())
    async with ecoasync.carbon_session(policy, bus=bus, name="dirty") as session:
        await agent(session, "write a brief on heat pumps")
    summary(session)

    print("3. three runs on a 20 mg budget: the call that crosses it is kept, the next refused")
    tight = policy.evolve(budget_g=0.02)
    try:
        async with ecoasync.carbon_session(tight, bus=bus, name="budget") as session:
            for _ in range(3):
                await agent(session, "write a brief on heat pumps")
    except ecoasync.CarbonBudgetExceeded as exc:
        print(f"  CarbonBudgetExceeded: {exc}")
    summary(session)


if __name__ == "__main__":
    with VirtualClock.installed() as clock:
        anyio.run(main)
