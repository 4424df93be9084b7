"""``ecoasync demo``: an offline tour on a synthetic day and a virtual clock, in a second."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel

from .. import events
from .._bus import EventBus
from .._policy import Policy
from .._session import Session, carbon_session
from ..providers import StaticForecastProvider, synthetic_day
from ..testing import VirtualClock

__all__ = ["register", "run_demo"]

_JOBS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("chat-reply", {"max_delay": "0m"}),
    ("summarise-reports", {"max_delay": "4h"}),
    ("nightly-embeddings", {"max_delay": "10h", "expected_duration": "2h"}),
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="an offline tour: plan three jobs on a synthetic day (virtual clock, no network)",
        description="Plan three jobs submitted at 17:00 UTC on a synthetic British-style day, "
        "wait for their slots on a virtual clock, and print the plans, the events and the result.",
    )
    parser.add_argument(
        "--at", default="17:00", help="submission time of day, HH:MM UTC (default 17:00)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="unused; kept for reproducible future demos"
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        hour, minute = (int(part) for part in str(args.at).split(":"))
        at = timedelta(hours=hour, minutes=minute)
    except ValueError:
        print(f"ecoasync demo: --at must look like 17:00, got {args.at!r}")
        return 2
    anyio.run(run_demo, at)
    return 0


def _fmt(event: events.Event) -> str:
    t = f"{event.at:%H:%M}Z"
    head = f"  {t}  {event.kind:<14} {event.session_name:<20}"
    if isinstance(event, events.Planned):
        return f"{head} {event.plan.reason}"
    if isinstance(event, events.Started):
        return f"{head} grid at {event.intensity or 0:.0f} gCO2eq/kWh ({event.intensity_source})"
    if isinstance(event, events.CallRecorded):
        c = event.call
        return f"{head} {c.effective_model}: {c.energy_kwh * 1000:.2f} Wh, {c.emitted_g:.3f} gCO2eq"
    if isinstance(event, events.Completed):
        r = event.record
        return f"{head} {event.status}, waited {r.delay_s / 3600:.1f} h, {r.emitted_g:.3f} gCO2eq"
    return f"{head}"


async def run_demo(submit_at: timedelta = timedelta(hours=17)) -> list[Session]:
    """Run the demo and print it; returns the finished sessions (for tests)."""
    day = datetime(2026, 3, 18, tzinfo=UTC)
    provider = StaticForecastProvider(synthetic_day(day, days=2), name="synthetic-gb")
    bus = EventBus()
    bus.subscribe(lambda e: print(_fmt(e)))
    sessions: list[Session] = []

    print("ecoasync demo — a synthetic British grid day, a virtual clock, no network\n")
    print("  grid forecast (gCO2eq/kWh), every 2 hours from midnight:")
    values = [s.forecast for s in provider.all()[:48:4]]
    print("  " + " ".join(f"{v:4.0f}" for v in values))
    print(f"\n  jobs submitted at {day + submit_at:%H:%M}Z:")
    for name, fields in _JOBS:
        print(f"    {name:<20} {', '.join(f'{k}={v}' for k, v in fields.items())}")
    print("\n  events:")

    async def job(name: str, fields: dict[str, Any]) -> None:
        policy = Policy(provider=provider, jitter="0m", **fields)
        async with carbon_session(policy, bus=bus, name=name) as session:
            # the work: three LLM calls (charged with EcoLogits' energy model, offline)
            for _ in range(3):
                await session.record_call(
                    provider="openai", model="gpt-4o-mini", output_tokens=600, latency_s=4.0
                )
        sessions.append(session)

    with VirtualClock.installed(day + submit_at):
        async with anyio.create_task_group() as tg:
            for name, fields in _JOBS:
                tg.start_soon(job, name, fields)

    print("\n  result (three gpt-4o-mini calls per job):")
    print(
        f"    {'job':<20} {'delay':>6} {'now':>5} {'ran at':>7} {'emitted':>9} {'if at once':>11} {'avoided':>8}"
    )
    for session in sorted(sessions, key=lambda s: s.name):
        r = session.record
        assert r is not None
        print(
            f"    {r.name:<20} {r.delay_s / 3600:5.1f}h {r.baseline_intensity or 0:5.0f} "
            f"{r.run_intensity or 0:7.0f} {r.emitted_g:8.3f}g {r.baseline_g:10.3f}g "
            f"{r.saved_g / r.baseline_g * 100 if r.baseline_g else 0:7.0f}%"
        )
    print(
        "\n  'now' and 'ran at' are the grid's measured intensity (gCO2eq/kWh) at submission and"
        "\n  when the job ran; 'if at once' is what the same calls would have emitted without"
        "\n  waiting. Try: ecoasync demo --at 08:00"
    )
    return sessions
