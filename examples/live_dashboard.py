"""A live terminal dashboard that follows ``bus.stream()``: ``python examples/live_dashboard.py``.

Needs the ``rich`` extra: ``pip install "ecoasync[rich]"``.

Four sessions are submitted at 17:00 on a synthetic British grid day and run on a virtual
clock (a night passes in about a second): a chat reply that cannot wait and is downgraded on
the dirty evening grid, summaries that wait for the evening dip, a nightly evaluation that
waits for the night and trips its carbon budget, and a translation job. The dashboard shows
each session's plan, its live gCO2eq as calls are charged, downgrades and budget trips, and
ends by itself when every session has completed.

``--fast`` skips the pacing that lets a person watch (the pacing is on only in a terminal).
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from simulated_llm import (
    simulated_call,  # beside this script: charges calls as instrumentation does
)

import ecoasync
from ecoasync import events
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock

try:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.table import Table
except ImportError:
    sys.exit('examples/live_dashboard.py needs the rich extra: pip install "ecoasync[rich]"')

DAY = datetime(2026, 3, 18, tzinfo=UTC)
FALLBACKS = {"gpt-4o": "gpt-4o-mini", "gpt-4.1": "gpt-4.1-mini"}

JOBS: list[tuple[str, dict[str, Any], str, int]] = [
    # name, policy fields, model, calls
    ("chat-reply", {"max_delay": "0m"}, "gpt-4o", 3),
    ("ticket-summaries", {"max_delay": "4h"}, "gpt-4o", 4),
    ("nightly-eval", {"max_delay": "10h", "budget_g": 0.2}, "gpt-4o", 8),
    ("translations", {"max_delay": "2h", "budget_g": 1.0}, "gpt-4.1", 3),
]


@dataclass
class Row:
    """What the dashboard knows of one session, from its events alone."""

    name: str
    status: str = "planning"
    plan: str = ""
    now: float | None = None
    planned: float | None = None
    calls: int = 0
    downgrades: int = 0
    refused: int = 0
    total_g: float = 0.0
    budget_g: float | None = None
    tripped: bool = False


@dataclass
class Board:
    rows: dict[str, Row] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=12))
    clock: datetime = DAY
    completed: int = 0

    def apply(self, event: events.Event) -> None:
        row = self.rows.setdefault(event.session_id, Row(event.session_name))
        self.clock = max(self.clock, event.at)
        t = f"{event.at:%H:%M}Z"
        if isinstance(event, events.Planned):
            p = event.plan
            row.status = "waiting" if p.waits else "running"
            row.plan = f"{p.start:%H:%M}Z +{p.delay.total_seconds() / 3600:.1f}h"
            row.now, row.planned = p.now_intensity, p.planned_intensity
            self.log.append(f"{t} [cyan]planned[/]     {row.name}: {p.reason}")
        elif isinstance(event, events.Started):
            row.status = "running"
            self.log.append(
                f"{t} [green]started[/]     {row.name} at {event.intensity or 0:.0f} gCO2eq/kWh"
            )
        elif isinstance(event, events.Downgraded):
            row.downgrades += 1
            self.log.append(
                f"{t} [yellow]downgraded[/]  {row.name}: {event.requested} → {event.effective} "
                f"(grid {event.intensity:.0f} ≥ {event.threshold:.0f})"
            )
        elif isinstance(event, events.CallRecorded):
            c = event.call
            row.calls += 1
            row.total_g = event.session_total_g
            self.log.append(
                f"{t} call        {row.name}: {c.effective_model}, {c.output_tokens} tokens, "
                f"{c.emitted_g:.3f} g at {c.intensity or 0:.0f} g/kWh (total {row.total_g:.3f} g)"
            )
        elif isinstance(event, events.BudgetTripped):
            row.tripped, row.budget_g = True, event.budget_g
            self.log.append(
                f"{t} [red]budget[/]      {row.name}: {event.spent_g:.3f} g ≥ {event.budget_g:g} g;"
                " later calls are refused"
            )
        elif isinstance(event, events.CallRefused):
            row.refused += 1
            self.log.append(f"{t} [red]refused[/]     {row.name}: {event.model}")
        elif isinstance(event, events.Completed):
            row.status = event.status
            row.budget_g = event.record.budget_g
            self.completed += 1
            self.log.append(
                f"{t} [bold]completed[/]   {row.name}: {event.status}, "
                f"{event.record.emitted_g:.3f} g emitted, {event.record.saved_g:.3f} g avoided"
            )

    def render(self) -> Group:
        table = Table(title=f"ecoasync — sessions at {self.clock:%H:%M}Z", expand=True)
        for column in ("session", "status", "starts", "grid g/kWh", "calls"):
            table.add_column(column)
        table.add_column("gCO2eq", justify="right")
        table.add_column("budget", justify="right")
        for row in self.rows.values():
            grid = (
                f"{row.now:.0f} → {row.planned:.0f}"
                if row.now is not None and row.planned is not None
                else ""
            )
            calls = f"{row.calls}"
            if row.downgrades:
                calls += f" ({row.downgrades} downgraded)"
            if row.refused:
                calls += f" ({row.refused} refused)"
            budget = "" if row.budget_g is None else f"{row.budget_g:g} g"
            if row.tripped:
                budget = f"[red]{budget or 'tripped'} tripped[/]"
            style = {"waiting": "cyan", "running": "green", "aborted": "red"}.get(row.status, "")
            table.add_row(
                row.name,
                f"[{style}]{row.status}[/]" if style else row.status,
                row.plan,
                grid,
                calls,
                f"{row.total_g:.3f}",
                budget,
            )
        return Group(table, Panel("\n".join(self.log), title="events", border_style="dim"))


async def run_job(
    bus: ecoasync.EventBus,
    clock: VirtualClock,
    name: str,
    fields: dict[str, Any],
    model: str,
    calls: int,
) -> None:
    policy = ecoasync.Policy(
        provider=StaticForecastProvider(synthetic_day(DAY, days=2), name="synthetic-gb"),
        jitter="0m",
        dirty_threshold=240,
        model_fallbacks=FALLBACKS,
        **fields,
    )
    try:
        async with ecoasync.carbon_session(policy, bus=bus, name=name):
            for _ in range(calls):
                await simulated_call(model, output_tokens=350)
                await clock.sleep_until(clock.now() + timedelta(minutes=7))
    except ecoasync.CarbonBudgetExceeded:
        pass  # the session is recorded as aborted; the dashboard shows it


async def main(*, pace: float) -> Board:
    console = Console() if Console().is_terminal else Console(width=120)
    bus = ecoasync.EventBus()
    board = Board()
    with VirtualClock.installed(DAY + timedelta(hours=17)) as clock:
        async with bus.stream(max_buffer=10_000) as stream:

            async def follow() -> None:
                with Live(board.render(), console=console, refresh_per_second=12) as live:
                    async for event in stream:
                        board.apply(event)
                        live.update(board.render())
                        if pace:
                            await anyio.sleep(pace)  # a real pause, so a person can follow
                        if board.completed == len(JOBS):
                            return

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                for name, fields, model, calls in JOBS:
                    tg.start_soon(run_job, bus, clock, name, fields, model, calls)
    return board


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="no pacing")
    args = parser.parse_args()
    interactive = Console().is_terminal
    anyio.run(lambda: main(pace=0.0 if args.fast or not interactive else 0.12))
