"""Generated telemetry for the sink, report and plot tests: real sessions on a virtual clock,
with LLM calls charged by hand (as the instrumentation does)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import anyio

from ecoasync import CallRecord, EventBus, Policy, SessionRecord, carbon_session
from ecoasync._context import current
from ecoasync.events import Event
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock

DAY = datetime(2026, 3, 16, tzinfo=UTC)  # a Monday; the generated days run into Q1's end
MODELS: Sequence[tuple[str, str, float]] = (
    ("openai", "gpt-4o-mini", 0.0004),
    ("openai", "gpt-4o", 0.002),
    ("anthropic", "claude-3-5-haiku-latest", 0.0008),
)
TAGS = ("writer", "critic", "planner")


async def charge(
    model: str,
    energy_kwh: float,
    *,
    provider: str = "openai",
    tags: tuple[str, ...] = (),
    known: bool = True,
    requested: str | None = None,
) -> CallRecord:
    """Charge one LLM call to the current session at the grid's intensity now, and emit."""
    acct = current()
    assert acct is not None, "charge() must run inside a carbon_session"
    intensity, source = acct.intensity_now()
    baseline = acct.baseline_intensity if acct.baseline_intensity is not None else intensity
    energy = energy_kwh if known else 0.0
    call = CallRecord(
        provider=provider,
        requested_model=requested or model,
        effective_model=model,
        output_tokens=200,
        input_tokens=100,
        latency_s=1.5,
        energy_kwh=energy,
        energy_kwh_min=energy * 0.5,
        energy_kwh_max=energy * 1.5,
        intensity=intensity,
        intensity_source=source,
        emitted_g=energy * (intensity or 0.0),
        baseline_g=energy * (baseline or 0.0),
        embodied_g=energy * 10.0,
        known_model=known,
        downgraded=requested is not None and requested != model,
        tags=tags,
        at=acct.clock.now(),
    )
    for bus, event in acct.charge(call):
        await bus.emit(event)
    return call


async def workload(
    bus: EventBus,
    *,
    sessions: int = 60,
    days: int = 3,
    seed: int = 7,
    start: datetime = DAY,
    unknown_every: int = 0,
) -> list[SessionRecord]:
    """Run ``sessions`` sessions submitted over ``days`` days on a virtual clock; each makes
    1-3 calls. Returns the records (in completion order)."""
    rng = random.Random(seed)
    provider = StaticForecastProvider(synthetic_day(start, days=days + 1), name="synthetic")
    records: list[SessionRecord] = []
    plan = []
    for i in range(sessions):
        at = start + timedelta(minutes=rng.randrange(0, days * 24 * 60 - 8 * 60))
        delay = rng.choice(["0m", "2h", "4h", "6h"])
        calls = [(rng.choice(MODELS), rng.choice(TAGS)) for _ in range(rng.randint(1, 3))]
        plan.append((i, at, delay, calls))

    async def one(
        i: int, at: datetime, delay: str, calls: list[tuple[tuple[str, str, float], str]]
    ) -> None:
        await clock.sleep_until(at)
        policy = Policy(
            max_delay=delay, provider=provider, jitter="0m", budget_g=0.05 if i % 9 == 0 else None
        )
        async with carbon_session(
            policy, bus=bus, name=f"job-{i % 4}", tags=[f"team:{'ab'[i % 2]}"]
        ) as session:
            for (llm, model, energy), tag in calls:
                if unknown_every and i % unknown_every == 0:
                    await charge("mystery-model", energy, provider=llm, tags=(tag,), known=False)
                else:
                    await charge(model, energy, provider=llm, tags=(tag,))
        assert session.record is not None
        records.append(session.record)

    with VirtualClock.installed(start) as clock:
        async with anyio.create_task_group() as tg:
            for args in plan:
                tg.start_soon(one, *args)
    return records


def run_workload(*sinks: Callable[[Event], object], **kwargs: object) -> list[SessionRecord]:
    """Run :func:`workload` on a fresh bus with ``sinks`` subscribed, from sync code."""
    bus = EventBus()
    for sink in sinks:
        bus.subscribe(sink)
    out: list[SessionRecord] = []

    async def main() -> None:
        out.extend(await workload(bus, **kwargs))  # type: ignore[arg-type]

    anyio.run(main)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Write synthetic telemetry (and its grid trace) for docs: ``python tests/telemetry_gen.py
    OUT.jsonl [TRACE.csv]``."""
    import argparse

    from ecoasync.sinks import JsonlSink

    parser = argparse.ArgumentParser(description="write synthetic ecoasync telemetry")
    parser.add_argument("out")
    parser.add_argument("trace", nargs="?")
    parser.add_argument("--sessions", type=int, default=120)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args(argv)
    sink = JsonlSink(args.out)
    records = run_workload(sink, sessions=args.sessions, days=args.days, unknown_every=0)
    sink.close()
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as handle:
            handle.write("from,to,intensity_forecast,intensity_actual\n")
            for slot in synthetic_day(DAY, days=args.days + 1):
                handle.write(
                    f"{slot.start:%Y-%m-%dT%H:%MZ},{slot.end:%Y-%m-%dT%H:%MZ},"
                    f"{slot.forecast},{slot.actual}\n"
                )
    print(f"wrote {len(records)} sessions to {args.out}")


if __name__ == "__main__":
    main()
