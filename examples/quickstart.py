"""The README's quickstart: one carbon-aware session on a synthetic day, offline.

Run it: ``python examples/quickstart.py``. The virtual clock makes the four-hour wait instant;
in production, drop it (and the static provider) and the wait is real.
"""

from datetime import UTC, datetime

import anyio

import ecoasync
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock


async def main() -> None:
    policy = ecoasync.Policy(max_delay="4h", provider=StaticForecastProvider(synthetic_day()))
    bus = ecoasync.EventBus()
    bus.subscribe(lambda event: print(f"{event.at:%H:%M}Z {event.kind}"))
    async with ecoasync.carbon_session(policy, bus=bus, name="nightly") as session:
        ...  # your LLM calls run here: measured, budgeted, downgraded on a dirty grid
    hours, minutes = divmod(round(session.plan.delay.total_seconds() / 60), 60)
    print(session.plan.reason)
    print(f"waited {hours} h {minutes} min for {session.plan.planned_intensity:.0f} gCO2eq/kWh")


if __name__ == "__main__":
    with VirtualClock.installed(datetime(2026, 3, 18, 17, tzinfo=UTC)):
        anyio.run(main)
