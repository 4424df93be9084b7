"""A nightly batch script: plain functions, ``@carbon_aware``, the OpenAI SDK, a report at the end.

Needs the ``openai`` extra: ``pip install "ecoasync[openai]"``.

``python examples/batch_job.py [TELEMETRY.jsonl]``. Cron starts it at 18:00, the dirtiest
hour of the synthetic grid day. Three steps, each a plain (sync) function under
``@ecoasync.carbon_aware``:

1. an urgent digest that cannot wait: it runs at once, and its ``gpt-4o`` calls are
   downgraded to ``gpt-4o-mini`` because the grid is above the dirty threshold;
2. ticket summaries that may wait six hours: the plan moves them to the night;
3. a re-embedding job with a small carbon budget: the call that crosses it is kept, the next
   one is refused, and the job stops cleanly.

Every session's record goes to a ``JsonlSink`` (by default a fresh
``ecoasync-examples/nightly.jsonl`` in the temporary folder, kept afterwards); at the end the
script prints and runs ``ecoasync report PATH --by model``, which works after it too.
Offline: the real ``openai.OpenAI`` client talks to ``ecoasync.testing.FakeLLM`` through the
SDK's own mock transport, and a virtual clock makes the night pass in a second. In
production, drop the fake and the clock; nothing else changes.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ecoasync
from ecoasync import events
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.sinks import JsonlSink
from ecoasync.testing import FakeLLM, VirtualClock

try:
    import openai  # noqa: F401  (FakeLLM below builds the real SDK's client)
except ImportError:
    sys.exit('examples/batch_job.py needs the openai extra: pip install "ecoasync[openai]"')

DAY = datetime(2026, 3, 18, tzinfo=UTC)
client = FakeLLM(output_tokens=400).openai(sync=True)  # in production: openai.OpenAI()

policy = ecoasync.Policy(
    max_delay="0m",
    provider=StaticForecastProvider(synthetic_day(DAY, days=2), name="synthetic-gb"),
    jitter="0m",
    dirty_threshold=230,  # gCO2eq/kWh: the evening peak is above it
    model_fallbacks={"gpt-4o": "gpt-4o-mini"},
)
bus = ecoasync.EventBus()


def ask(prompt: str, model: str = "gpt-4o") -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    return reply.choices[0].message.content or ""


@ecoasync.carbon_aware(policy, bus=bus)
def urgent_digest(incidents: list[str]) -> str:
    return ask("Digest for the on-call team: " + "; ".join(incidents))


@ecoasync.carbon_aware(policy.evolve(max_delay="6h"), bus=bus)
def summarise_tickets(tickets: list[str]) -> list[str]:
    return [ask(f"Summarise ticket: {ticket}") for ticket in tickets]


@ecoasync.carbon_aware(policy.evolve(max_delay="2h", budget_g=0.3), bus=bus)
def reembed(documents: list[str]) -> int:
    done = 0
    for document in documents:
        try:
            ask(f"Rewrite for the index: {document}")
        except ecoasync.CarbonBudgetExceeded as exc:
            print(f"    stopping: {exc}")
            break
        done += 1
    return done


def narrate(event: events.Event) -> None:
    t = f"{event.at:%H:%M}Z"
    if isinstance(event, events.Planned):
        print(f"  {t} {event.session_name}: {event.plan.reason}")
    elif isinstance(event, events.Downgraded):
        print(
            f"  {t}   downgraded {event.requested} -> {event.effective} "
            f"(grid {event.intensity:.0f} >= {event.threshold:.0f} gCO2eq/kWh)"
        )
    elif isinstance(event, events.BudgetTripped):
        print(f"  {t}   budget tripped: {event.spent_g:.3f} g of {event.budget_g:g} g")
    elif isinstance(event, events.CallRefused):
        print(f"  {t}   refused a {event.model} call: the budget is spent")
    elif isinstance(event, events.Completed):
        r = event.record
        print(
            f"  {t} {event.session_name}: {event.status}, {r.calls} calls, "
            f"{r.emitted_g:.3f} g emitted, {r.saved_g:.3f} g avoided by waiting"
        )


def main(telemetry: Path) -> None:
    sink = JsonlSink(telemetry)
    bus.subscribe(sink)
    bus.subscribe(narrate, events.Planned, events.Downgraded, events.BudgetTripped)
    bus.subscribe(narrate, events.CallRefused, events.Completed)
    with VirtualClock.installed(DAY + timedelta(hours=18)):
        print("nightly batch, started by cron at 18:00Z\n")
        urgent_digest(["db failover at 17:12", "queue backlog"])
        summarise_tickets([f"ticket #{n}" for n in range(1, 6)])
        print(f"    re-embedded {reembed([f'doc {n}' for n in range(1, 21)])} of 20 documents")
    sink.close()
    command = ["ecoasync", "report", str(telemetry), "--by", "model"]
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
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else fresh_telemetry("nightly.jsonl"))
