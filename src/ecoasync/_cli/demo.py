"""``ecoasync demo``: an offline tour on a synthetic day and a virtual clock, in a second."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel

from .. import events
from .._bus import EventBus
from .._durations import human_duration
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
        "wait for their slots on a virtual clock, and print the plans, the events and the result. "
        "Deterministic: the same --at always prints the same figures.",
    )
    parser.add_argument(
        "--at",
        type=time_of_day,
        default=timedelta(hours=17),
        metavar="HH:MM",
        help="submission time of day, 00:00 to 23:59 UTC (default 17:00)",
    )
    parser.set_defaults(func=_main)


def time_of_day(text: str) -> timedelta:
    """``HH:MM`` from 00:00 to 23:59 as the time since midnight."""
    hour, _, minute = text.strip().partition(":")
    if (
        len(hour) in (1, 2)
        and len(minute) == 2
        and hour.isdigit()
        and minute.isdigit()
        and int(hour) < 24
        and int(minute) < 60
    ):
        return timedelta(hours=int(hour), minutes=int(minute))
    raise argparse.ArgumentTypeError(
        f"must be a time of day from 00:00 to 23:59 like 17:00, got {text!r}"
    )


def _main(args: argparse.Namespace) -> int:
    anyio.run(run_demo, args.at)
    return 0


def _g_per_kwh(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _fmt(event: events.Event) -> str:
    t = f"{event.at:%H:%M}Z"
    head = f"  {t}  {event.kind:<14} {event.session_name:<20}"
    if isinstance(event, events.Planned):
        return f"{head} {event.plan.reason}"
    if isinstance(event, events.Started):
        if event.intensity is None:
            return f"{head} grid intensity unknown"
        return f"{head} grid at {event.intensity:.0f} gCO2eq/kWh ({event.intensity_source})"
    if isinstance(event, events.CallRecorded):
        c = event.call
        return f"{head} {c.effective_model}: {c.energy_kwh * 1000:.2f} Wh, {c.emitted_g:.3f} gCO2eq"
    if isinstance(event, events.Completed):
        r = event.record
        waited = human_duration(r.delay_s)
        return f"{head} {event.status}, waited {waited}, {r.emitted_g:.3f} gCO2eq"
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

    print("\n  result (three gpt-4o-mini calls per job; intensities in gCO2eq/kWh):")
    row = "    {:<19} {:<11} {:>11} {:>11} {:>9} {:>11} {:>8}"
    print(row.format("job", "waited", "forecast", "measured", "emitted", "if at once", "avoided"))
    print(row.format("", "", "now → plan", "now → ran", "", "", "").rstrip())
    for session in sorted(sessions, key=lambda s: s.name):
        r = session.record
        assert r is not None
        avoided = r.saved_g / r.baseline_g * 100 if r.baseline_g else 0.0
        print(
            row.format(
                r.name,
                human_duration(r.delay_s),
                f"{_g_per_kwh(r.now_intensity)} → {_g_per_kwh(r.planned_intensity)}",
                f"{_g_per_kwh(r.baseline_intensity)} → {_g_per_kwh(r.run_intensity)}",
                f"{r.emitted_g:.3f} g",
                f"{r.baseline_g:.3f} g",
                f"{avoided:.0f} %",
            )
        )
    print(
        "\n  'forecast' is what each plan compared, as in its 'planned' line (the mean over the"
        "\n  job's expected duration); 'measured' is the grid's actual intensity at submission"
        "\n  and when the job ran, as in its 'started' line: the calls are charged at it. 'if at"
        "\n  once' is what the same calls would have emitted without waiting."
        "\n  Try: ecoasync demo --at 08:00"
    )
    return sessions
