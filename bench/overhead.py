"""Per-session overhead of ``carbon_session`` and of the sync decorator.

    python bench/overhead.py [--n 20000] [--out bench/results/overhead.json]

Measures, in one run:
- an empty ``async with`` (the floor) vs ``carbon_session`` with no wait and a forecast already
  in memory (a static provider), on asyncio;
- the planning of sessions that arrive in one slot with a 4 h budget (their forecast and
  history read from memory, then ``plan``), on an in-memory provider and on a
  ``FallbackProvider`` over one whose answers it relabels;
- a plain function call vs the same function under ``@carbon_aware`` (sync; no delay budget,
  so planned in the calling thread without crossing to the blocking portal).
Prints a table and writes JSON. Targets: at most 20 µs per session over the floor; planning
through the fallback within 1.2x of the bare provider.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json

import ecoasync
from ecoasync.providers import StaticForecastProvider, synthetic_day


class _Empty:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _async_figures(n: int) -> dict[str, float]:
    provider = StaticForecastProvider(synthetic_day(days=400))
    policy = ecoasync.Policy(provider=provider)  # no waiting: max_delay 0
    waiting_policy = ecoasync.Policy(provider=provider, max_delay="4h")
    bus = ecoasync.EventBus()

    async def empty() -> float:
        start = time.perf_counter()
        for _ in range(n):
            async with _Empty():
                pass
        return (time.perf_counter() - start) / n

    async def session(p: ecoasync.Policy) -> float:
        start = time.perf_counter()
        for _ in range(n):
            async with ecoasync.carbon_session(p, bus=bus):
                pass
        return (time.perf_counter() - start) / n

    results: dict[str, list[float]] = {"empty": [], "session": [], "session_planning": []}
    for _ in range(5):
        results["empty"].append(await empty())
        results["session"].append(await session(policy))
        # planning over a 4 h budget, with the start at or before now: a day far in the past
        # would not plan, so the clock is set inside the synthetic year by the caller
        results["session_planning"].append(await session(waiting_policy))
    return {k: min(v) for k, v in results.items()}


def _arrival_figures(n: int) -> dict[str, float]:
    """Seconds to plan one of ``n`` sessions arriving in one slot, as a session plans."""
    import random
    from datetime import UTC, datetime, timedelta

    from ecoasync.providers import FallbackProvider

    submitted = datetime(2026, 3, 18, 12, 7, tzinfo=UTC)
    bare = StaticForecastProvider(synthetic_day(days=400), name="grid")
    inner = StaticForecastProvider(synthetic_day(days=400), name="grid")
    inner.name = "grid-relabelled"  # its answers say "grid": the fallback relabels each one
    fallback = FallbackProvider([inner])
    rng = random.Random(0)

    def timed(provider: Any) -> float:
        policy = ecoasync.Policy(provider=provider, max_delay="4h")
        start = time.perf_counter()
        for k in range(n):
            now = submitted + timedelta(microseconds=k)
            forecast = provider.forecast_nowait(now, now + timedelta(hours=7))
            history = provider.history_nowait(now - timedelta(hours=24), now)
            ecoasync.plan(forecast, now, policy, rng=rng, history=history)
        return (time.perf_counter() - start) / n

    results: dict[str, list[float]] = {"bare": [], "fallback": []}
    for _ in range(5):  # interleaved
        results["bare"].append(timed(bare))
        results["fallback"].append(timed(fallback))
    return {k: min(v) for k, v in results.items()}


def _sync_figures(n: int) -> dict[str, float]:
    provider = StaticForecastProvider(synthetic_day(days=400))

    def plain(x: int) -> int:
        return x + 1

    decorated = ecoasync.carbon_aware(provider=provider, bus=ecoasync.EventBus())(plain)

    def timed(fn: Any, count: int) -> float:
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        return (time.perf_counter() - start) / count

    sync_n = max(n // 20, 200)
    return {
        "plain_call": min(timed(plain, n) for _ in range(5)),
        "carbon_aware_call": min(timed(decorated, sync_n) for _ in range(3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=20000, help="sessions per measurement (default 20000)"
    )
    parser.add_argument(
        "--out", default=None, help="JSON output path (default bench/results/overhead.json)"
    )
    args = parser.parse_args()

    from datetime import UTC, datetime

    from ecoasync.testing import VirtualClock

    with VirtualClock.installed(datetime(2026, 3, 18, 12, tzinfo=UTC)):
        a = anyio.run(_async_figures, args.n)
        arrival = _arrival_figures(args.n)
        s = _sync_figures(args.n)
    overhead = a["session"] - a["empty"]
    figures = {
        "n": args.n,
        "empty_async_with_us": a["empty"] * 1e6,
        "carbon_session_us": a["session"] * 1e6,
        "carbon_session_overhead_us": overhead * 1e6,
        "carbon_session_4h_budget_us": a["session_planning"] * 1e6,
        "plan_arriving_session_us": arrival["bare"] * 1e6,
        "plan_arriving_session_fallback_us": arrival["fallback"] * 1e6,
        "fallback_ratio": arrival["fallback"] / arrival["bare"],
        "fallback_target_ratio": 1.2,
        "target_overhead_us": 20.0,
        "meets_target": overhead * 1e6 <= 20.0,
        "plain_call_us": s["plain_call"] * 1e6,
        "carbon_aware_sync_call_us": s["carbon_aware_call"] * 1e6,
        "sync_ratio": s["carbon_aware_call"] / s["plain_call"],
    }
    print(f"{'measure':<44} {'µs per op':>10}")
    print(f"{'empty async with':<44} {figures['empty_async_with_us']:>10.2f}")
    print(f"{'carbon_session, no wait, cached forecast':<44} {figures['carbon_session_us']:>10.2f}")
    print(
        f"{'  overhead over empty (target <= 20)':<44} {figures['carbon_session_overhead_us']:>10.2f}"
    )
    print(
        f"{'carbon_session, 4 h budget planned':<44} {figures['carbon_session_4h_budget_us']:>10.2f}"
    )
    print(
        f"{'plan, session arriving in a slot (4 h)':<44} {figures['plan_arriving_session_us']:>10.2f}"
    )
    print(
        f"{'  through FallbackProvider (relabelling)':<44} "
        f"{figures['plan_arriving_session_fallback_us']:>10.2f}"
    )
    print(f"{'  ratio (target <= 1.2)':<44} {figures['fallback_ratio']:>10.2f}x")
    print(f"{'plain sync call':<44} {figures['plain_call_us']:>10.3f}")
    print(
        f"{'@carbon_aware sync call (planned inline)':<44} {figures['carbon_aware_sync_call_us']:>10.2f}"
    )
    print(f"{'  ratio':<44} {figures['sync_ratio']:>10.0f}x")
    print(f"written to {write_json('overhead', figures, args.out)}")


if __name__ == "__main__":
    main()
