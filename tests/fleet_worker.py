"""One worker process of a fleet, for the multi-process tests and ``bench/fleet.py``.

    python -m tests.fleet_worker --grid URL --redis URL --namespace NS --jobs 2500 \\
        --ledger redis --cache shared

plans ``--jobs`` jobs submitted at the same moment (a herd; ``--steady``: one after
another), each through the queue core
(forecast, planner, a claim in the ledger), and prints one JSON line: the planned starts per
slot, the ledgers that granted the claims, the forecast requests this process made, Redis
round trips and the time each claim took. With ``--until FILE`` it plans one job after
another instead, writing a line per job to ``--out``, until FILE exists (the tests kill and
restart Redis meanwhile). With ``--sessions --gate DIR`` each job is a ``carbon_session``
under ``Policy(ledger=...)`` instead (see :func:`sessions`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

import ecoasync
from ecoasync._ledger import Choice, Claim, Ledger
from ecoasync.fleet import RedisLedger, SharedCacheProvider
from ecoasync.providers import UKCarbonIntensityProvider
from ecoasync.queues._core import plan_job
from ecoasync.testing import VirtualClock

NOW = datetime(2026, 3, 18, 0, 7, tzinfo=UTC)
"""When the herd is submitted (the grid server's "now" is midnight: actuals before it)."""


class Timed:
    """A ledger that times its claims (what planning pays for the ledger)."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.name = inner.name
        self.bucket = inner.bucket
        self.seconds: list[float] = []
        self.granted: Counter[str] = Counter()
        self.zones: set[str] = set()

    async def claim(
        self, job_id: str, zone: str, choices: Sequence[Choice], *, lease: timedelta, now: datetime
    ) -> Claim:
        began = time.perf_counter()
        try:
            claim = await self.inner.claim(job_id, zone, choices, lease=lease, now=now)
        finally:
            self.seconds.append(time.perf_counter() - began)
        self.granted[claim.ledger] += 1
        self.zones.add(zone)
        return claim

    async def release(self, claim: Claim) -> None:
        await self.inner.release(claim)

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        return await self.inner.loads(zone, start, end, now=now)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    provider: Any = UKCarbonIntensityProvider(base_url=args.grid)
    cache: SharedCacheProvider | None = None
    if args.cache == "shared":
        provider = cache = SharedCacheProvider(
            provider, redis=args.redis, namespace=args.namespace, retry_after=args.retry_after
        )
    store: RedisLedger | None = None
    inner: Ledger
    if args.ledger == "redis":
        inner = store = RedisLedger(
            args.redis, namespace=args.namespace, retry_after=args.retry_after
        )
    else:
        inner = ecoasync.SlotLedger()
    ledger = Timed(inner)
    policy = ecoasync.Policy(max_delay="6h", provider=provider, jitter="0m", ledger=ledger)
    starts: Counter[str] = Counter()
    granted: Counter[str] = Counter()
    errors: list[str] = []

    async def one(i: int, now: datetime) -> None:
        try:
            job = await plan_job(policy, job_id=f"{args.name}-{i}", queue="fleet", now=now)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        starts[job.start.isoformat()] += 1
        granted[job.claim.ledger if job.claim else "none"] += 1
        if args.until:
            with open(args.out, "a") as out:
                ledger_name = job.claim.ledger if job.claim else None
                out.write(json.dumps({"i": i, "ledger": ledger_name}) + "\n")

    began = time.perf_counter()
    left = None
    if args.sessions:
        left = await sessions(args, policy, ledger, starts, errors)
        granted = ledger.granted
    elif args.until:
        i = 0
        while not Path(args.until).exists():
            await one(i, NOW + timedelta(seconds=i))
            i += 1
            await anyio.sleep(args.pause)
    elif args.steady:
        for i in range(args.jobs):
            await one(i, NOW)
    else:
        async with anyio.create_task_group() as tg:
            for i in range(args.jobs):
                tg.start_soon(one, i, NOW)
    elapsed = time.perf_counter() - began
    result = {
        "name": args.name,
        "jobs": sum(starts.values()),
        "errors": errors[:5],
        "starts": dict(sorted(starts.items())),
        "granted": dict(granted),
        "forecast_fetches": provider.fetches if cache is None else cache.fetches,
        "round_trips": (store.round_trips if store else 0) + (cache.round_trips if cache else 0),
        "claim_s": ledger.seconds,
        "outages": (store.guard.outages if store else 0),
        "elapsed_s": elapsed,
        "left": left,
        "zones": sorted(ledger.zones),
    }
    if cache is not None:
        await cache.aclose()
    if store is not None:
        await store.aclose()
    await (provider.provider if cache else provider).aclose()
    return result


async def sessions(
    args: argparse.Namespace,
    policy: ecoasync.Policy,
    ledger: Timed,
    starts: Counter[str],
    errors: list[str],
) -> int:
    """``--jobs`` sessions entered at once at ``NOW``, on a virtual clock that moves only when
    told. Once all have claimed their slots (in ``policy.ledger``), ``DIR/claimed-NAME`` says
    so, and the clock stays put until ``DIR/go`` exists (the test starts every process's herd
    before any ends); then it moves past every start, the sessions run and end, giving their
    claims back. Returns the ledger's load left after them (a shared ledger's: the whole
    fleet's)."""
    clock = VirtualClock(NOW, autojump=False)
    gate = Path(args.gate)

    async def one(i: int) -> None:
        try:
            async with ecoasync.carbon_session(policy, name=f"{args.name}-{i}", clock=clock) as s:
                starts[s.plan.start.isoformat()] += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as tg:
        for i in range(args.jobs):
            tg.start_soon(one, i)
        with anyio.fail_after(60):
            while len(ledger.seconds) < args.jobs:
                await anyio.sleep(0.01)
            (gate / f"claimed-{args.name}").touch()
            while not (gate / "go").exists():
                await anyio.sleep(0.01)
        clock.advance(timedelta(hours=7))
    end = NOW + timedelta(hours=7)
    left = 0
    for zone in ledger.zones:
        left += sum((await ledger.loads(zone, NOW, end, now=NOW)).values())
    return left


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--namespace", default="fleet")
    parser.add_argument("--name", default="w")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--ledger", choices=["redis", "memory"], default="redis")
    parser.add_argument("--cache", choices=["shared", "own"], default="shared")
    parser.add_argument("--retry-after", type=float, default=5.0)
    parser.add_argument("--until", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--sessions", action="store_true", help="run each job in a session")
    parser.add_argument("--gate", default=None, help="with --sessions: where to meet")
    parser.add_argument(
        "--steady", action="store_true", help="plan one job after another (latency, not a herd)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, parse())))
    sys.stdout.flush()
