"""An agentic workflow under one carbon-aware session, with carbon per agent.

Needs the ``openai`` and ``anthropic`` extras: ``pip install "ecoasync[openai,anthropic]"``.

``python examples/agent.py [TELEMETRY.jsonl]``. A planner outlines a report, then a writer
and a critic loop — draft, review, redraft — until the critic approves or three rounds have
passed (the offline critic never approves, so it runs three). The whole run is one session
(``max_delay="3h"``: a report wanted tonight may wait for a cleaner hour); each agent's calls
are tagged with ``session.tagged("planner")`` etc., so the session record — and
``ecoasync report --by tag`` — breaks energy and emissions down per agent.

The agents are plain async functions over the real OpenAI and Anthropic clients; an agent
framework built on these SDKs (LangChain's ``ChatOpenAI``/``ChatAnthropic``, for one) is
measured the same way, since its calls go through the SDK. Offline: the clients talk to
``ecoasync.testing.FakeLLM`` through their own mock transport, and a virtual clock runs the
wait. The telemetry goes to TELEMETRY.jsonl, by default a fresh
``ecoasync-examples/agent.jsonl`` in the temporary folder, kept so that the printed
``ecoasync report`` command works after the script too.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

import ecoasync
from ecoasync import events
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.sinks import JsonlSink
from ecoasync.testing import FakeLLM, VirtualClock

try:  # FakeLLM below builds the real SDKs' clients
    import anthropic  # noqa: F401
    import openai  # noqa: F401
except ImportError:
    sys.exit(
        "examples/agent.py needs the openai and anthropic extras: "
        'pip install "ecoasync[openai,anthropic]"'
    )

DAY = datetime(2026, 3, 18, tzinfo=UTC)
MAX_ROUNDS = 3
fake = FakeLLM(output_tokens=300)
openai_client = fake.openai()  # in production: openai.AsyncOpenAI()
claude_client = fake.anthropic()  # in production: anthropic.AsyncAnthropic()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def planner(session: ecoasync.Session, topic: str) -> str:
    with session.tagged("planner"):
        reply = await openai_client.chat.completions.create(
            model="gpt-4o", messages=user(f"Outline a short report on {topic}")
        )
    return reply.choices[0].message.content or ""


async def writer(session: ecoasync.Session, outline: str, feedback: str) -> str:
    with session.tagged("writer"):
        stream = await openai_client.chat.completions.create(
            model="gpt-4o",
            messages=user(f"Write the report.\nOutline: {outline}\nFeedback: {feedback}"),
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def critic(session: ecoasync.Session, draft: str) -> str:
    with session.tagged("critic"):
        message = await claude_client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=400,
            messages=user(f"Review this draft; answer APPROVED if it is ready:\n{draft[:500]}"),
        )
    block = message.content[0]
    return block.text if block.type == "text" else ""


async def research_report(session: ecoasync.Session, topic: str) -> str:
    outline = await planner(session, topic)
    draft, feedback = "", "none yet"
    for round_ in range(1, MAX_ROUNDS + 1):
        draft = await writer(session, outline, feedback)
        feedback = await critic(session, draft)
        approved = "APPROVED" in feedback
        print(
            f"  round {round_}: a {len(draft.split())}-word draft, "
            f"{'approved' if approved else 'sent back'} by the critic"
        )
        if approved:
            break
    return draft


def narrate(event: events.Event) -> None:
    if isinstance(event, events.Planned):
        print(f"  {event.at:%H:%M}Z planned: {event.plan.reason}")
    elif isinstance(event, events.Started):
        print(f"  {event.at:%H:%M}Z started at {event.intensity or 0:.0f} gCO2eq/kWh")


async def main(telemetry: Path) -> None:
    bus = ecoasync.EventBus()
    sink = JsonlSink(telemetry)
    bus.subscribe(sink)
    bus.subscribe(narrate, events.Planned, events.Started)
    policy = ecoasync.Policy(
        max_delay="3h",
        jitter="0m",
        budget_g=5,
        provider=StaticForecastProvider(synthetic_day(DAY, days=2), name="synthetic-gb"),
    )
    print("a research agent, submitted at 19:00Z\n")
    async with ecoasync.carbon_session(
        policy, bus=bus, name="research-agent", tags=["team:docs"]
    ) as session:
        await research_report(session, "heat pumps")
    await sink.aclose()

    record = session.record
    assert record is not None
    print(
        f"\n{record.status}: {record.calls} calls, {record.emitted_g:.3f} g emitted, "
        f"{record.saved_g:.3f} g avoided by waiting {record.delay_s / 3600:.1f} h\n"
    )
    print(f"  {'agent':<10} {'calls':>5} {'tokens':>7} {'energy Wh':>10} {'gCO2eq':>8}")
    for tag, usage in sorted(record.by_tag.items()):
        print(
            f"  {tag:<10} {usage.calls:>5} {usage.output_tokens:>7} "
            f"{usage.energy_kwh * 1000:>10.3f} {usage.emitted_g:>8.3f}"
        )
    command = ["ecoasync", "report", str(telemetry), "--by", "tag"]
    print(f"\n$ {shlex.join(command)}\n", flush=True)
    subprocess.run([sys.executable, "-m", *command], check=True)


def fresh_telemetry(name: str) -> Path:
    """A new telemetry file in the temporary folder, kept after the script ends so that the
    printed ``ecoasync report`` command finds it."""
    folder = Path(tempfile.gettempdir()) / "ecoasync-examples"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else fresh_telemetry("agent.jsonl")
    with VirtualClock.installed(DAY + timedelta(hours=19)):
        anyio.run(main, path)
