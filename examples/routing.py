"""Where and when: one service, three regions, each job routed to the greenest it may use.

Needs the ``openai`` extra: ``pip install "ecoasync[openai]"``.

``python examples/routing.py [TELEMETRY.jsonl]``. A summarising service holds three
OpenAI-compatible clients, one per region of the same model (Frankfurt, its home; Stockholm;
Paris). Every job runs in a ``carbon_session`` whose policy lists the three as routes: the
session plans the pair (route, start) with the lowest expected intensity within two hours,
at most half of the running jobs on any one region (``max_share``), EU residency only.
``session.routed(...)`` calls the chosen region and falls over to the next best when it
answers 5xx: Stockholm has an outage for the first batch. A chat reply that cannot wait asks
``choose_route`` where to go right now. At the end, ``ecoasync report --by route`` says where
the carbon (and the water) went (the telemetry is by default a fresh
``ecoasync-examples/routing.jsonl`` in the temporary folder, kept afterwards).

Offline: each client is the real ``openai.AsyncOpenAI`` talking to ``ecoasync.testing.FakeLLM``
through the SDK's mock transport, each region's grid is a static forecast (in production, e.g.
``ElectricityMapsProvider(zone="SE-SE3")``), and a virtual clock makes the hours pass at once.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio

import ecoasync
from ecoasync import Route, Routes, events
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.sinks import JsonlSink
from ecoasync.testing import FakeLLM, VirtualClock

try:
    import openai  # noqa: F401  (FakeLLM below builds the real SDK's clients)
except ImportError:
    sys.exit('examples/routing.py needs the openai extra: pip install "ecoasync[openai]"')

DAY = datetime(2026, 3, 18, tzinfo=UTC)


def grid(zone: str, scale: float) -> StaticForecastProvider:
    """A day of the synthetic grid, scaled to a region (in production: a live provider)."""
    day = synthetic_day(DAY, days=2)
    slots = [
        ecoasync.Slot(
            s.start, s.end, round(s.forecast * scale, 1), round((s.actual or 0) * scale, 1)
        )
        for s in day
    ]
    return StaticForecastProvider(slots, name=f"grid-{zone}", zone=zone)


llms = {"frankfurt": FakeLLM(), "stockholm": FakeLLM(fail=503), "paris": FakeLLM()}
routes = Routes(
    [
        Route(
            "frankfurt",
            "azure:germanywestcentral",
            provider=grid("DE", 2.2),
            latency="180ms",
            tags=["eu"],
            target=llms["frankfurt"].openai(),  # in production: AsyncAzureOpenAI(endpoint=...)
        ),
        Route(
            "stockholm",
            "azure:swedencentral",
            provider=grid("SE-SE3", 0.15),
            latency="260ms",
            tags=["eu"],
            target=llms["stockholm"].openai(),
        ),
        Route(
            "paris",
            "azure:francecentral",
            provider=grid("FR", 0.35),
            latency="200ms",
            tags=["eu"],
            target=llms["paris"].openai(),
        ),
    ],
    home="frankfurt",
    residency=["eu"],
    max_share=0.5,
)
policy = ecoasync.Policy(routes=routes, max_delay="2h", jitter="0m")
bus = ecoasync.EventBus()


async def summarise(route: Route, text: str) -> str:
    reply = await route.target.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarise: {text}"}]
    )
    return reply.choices[0].message.content or ""


async def job(n: int) -> None:
    async with ecoasync.carbon_session(policy, bus=bus, name=f"summary-{n}") as session:
        for part in range(3):
            await session.routed(partial(summarise, text=f"document {n}, part {part}"))


def narrate(event: events.Event) -> None:
    t = f"{event.at:%H:%M}Z"
    if isinstance(event, events.Routed) and event.reason == "planned":
        print(f"  {t} {event.session_name}: {event.choice.reason}")
    elif isinstance(event, events.Routed):
        print(
            f"  {t} {event.session_name}: {event.failed} failed ({event.error}); now {event.route}"
        )
    elif isinstance(event, events.Completed):
        r = event.record
        print(
            f"  {t} {event.session_name}: ran on {r.route}, {r.calls} calls, {r.emitted_g:.4f} g "
            f"emitted, {r.saved_g:.4f} g avoided against running at once in Frankfurt"
        )


async def batch(first: int, count: int) -> None:
    async with anyio.create_task_group() as tg:
        for n in range(first, first + count):
            tg.start_soon(job, n)


async def serve(telemetry: Path) -> None:
    sink = JsonlSink(telemetry, events=[events.Routed, events.CallRecorded, events.Completed])
    bus.subscribe(sink)
    bus.subscribe(narrate, events.Routed, events.Completed)
    with VirtualClock.installed(DAY + timedelta(hours=17)) as clock:
        print("17:00Z, Stockholm is down: four summaries come in\n")
        await batch(1, 4)
        llms["stockholm"].fail = None
        clock.advance(timedelta(hours=3))
        print(f"\n{clock.now():%H:%M}Z, Stockholm is back: four more\n")
        await batch(5, 4)
        choice: Any = await ecoasync.choose_route(routes, "balanced")
        print(f"\na chat reply that cannot wait goes to {choice.route.name}: {choice.reason}")
    sink.close()


def main(telemetry: Path) -> None:
    anyio.run(serve, telemetry)
    command = ["ecoasync", "report", str(telemetry), "--by", "route"]
    print(f"\n$ {shlex.join(command)}\n", flush=True)
    subprocess.run([sys.executable, "-m", *command, "--plain"], check=True)


def fresh_telemetry(name: str) -> Path:
    """A new telemetry file in the temporary folder, kept after the script ends so that the
    printed ``ecoasync report`` command finds it."""
    folder = Path(tempfile.gettempdir()) / "ecoasync-examples"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else fresh_telemetry("routing.jsonl"))
