"""The service's whole story, offline, in about a second: ``python examples/service/demo.py``.

Needs the ``examples`` extra (Starlette, uvicorn) and the ``openai`` one:
``pip install "ecoasync[examples,openai]"``.

A real uvicorn server on 127.0.0.1 serves the app of ``app.py``; an HTTP client submits
three jobs at 17:00 on a synthetic British grid day (a clock that moves only when told to);
the clock moves on four hours and the job that waited for the evening dip runs; the server
shuts down while the last job still waits for the night, and the telemetry file shows its
``completed`` line with ``status: cancelled``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx

from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock

try:  # the app serves with Starlette on uvicorn and answers through the OpenAI SDK
    import openai  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    sys.exit(
        "examples/service/demo.py needs the examples and openai extras: "
        'pip install "ecoasync[examples,openai]"'
    )

from app import create_app, loopback_server  # app.py beside this script


def show(job: dict[str, object]) -> None:
    plan = job.get("plan")
    reason = plan["reason"] if isinstance(plan, dict) else ""
    print(f"  {job['id']}  {job['status']:<10} {reason}")


async def main(telemetry: Path) -> None:
    day = datetime(2026, 3, 18, tzinfo=UTC)
    clock = VirtualClock(day + timedelta(hours=17), autojump=False)
    provider = StaticForecastProvider(synthetic_day(day, days=2), name="synthetic-gb")
    app = create_app(telemetry=telemetry, provider=provider, clock=clock, grace=5)

    async with loopback_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        print(f"serving on {url}; it is {clock.now():%H:%M}Z\n\nsubmitted:")
        ids = []
        for prompt, max_delay in [
            ("answer the customer", "0m"),
            ("summarise today's tickets", "4h"),
            ("re-embed the knowledge base", "10h"),
        ]:
            response = await client.post("/jobs", json={"prompt": prompt, "max_delay": max_delay})
            response.raise_for_status()
            ids.append(response.json()["id"])
            show(response.json())

        clock.advance(timedelta(hours=4))
        print(f"\nthe clock moves to {clock.now():%H:%M}Z:")
        for _ in range(200):  # the woken job needs a few turns of the loop to finish
            jobs = (await client.get("/jobs")).json()["jobs"]
            if jobs[1]["status"] == "completed":
                break
        for job in jobs:
            show(job)
        print("\nshutting down with one job still waiting...")

    print(f"\ntelemetry ({telemetry.name}):")
    for line in telemetry.read_text().splitlines():
        data = json.loads(line)
        if data["event"] == "completed":
            r = data["record"]
            ran = r["run_intensity"]
            where = f"ran at {ran:.0f} gCO2eq/kWh" if ran is not None else "never ran"
            print(
                f"  {data['tags'][0]}  {data['status']:<10} "
                f"waited {r['delay_s'] / 3600:.1f} h, {where}"
            )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "service.jsonl"
        anyio.run(main, path)
