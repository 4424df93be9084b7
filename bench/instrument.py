"""Per-call overhead of the SDK instrumentation, with the real clients on their mock transport.

    python bench/instrument.py [--n 2000] [--out bench/results/instrument.json]

Measures, in one run, the same ``chat.completions.create`` (OpenAI, async and sync clients)
and ``messages.create`` (Anthropic, async) through ``ecoasync.testing.FakeLLM``:
- uninstrumented (``ecoasync.uninstrument()``): the floor;
- instrumented, outside any session: one ``ContextVar`` lookup more;
- instrumented, inside a session: admission, timing, EcoLogits (cached) and charging.
Also the cost of one uncached EcoLogits lookup. Prints a table with ratios and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json

import ecoasync
from ecoasync._instrument import _impacts
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import FakeLLM, VirtualClock

MSG: list[Any] = [{"role": "user", "content": "hi"}]
ROUNDS = 5


async def _timed_async(call: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n


def _timed_sync(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


async def _figures(n: int) -> dict[str, dict[str, float]]:
    fake = FakeLLM(output_tokens=40)
    oa, oa_sync, an = fake.openai(), fake.openai(sync=True), fake.anthropic()
    policy = ecoasync.Policy(provider=StaticForecastProvider(synthetic_day(days=2)))
    bus = ecoasync.EventBus()

    def openai_async() -> Awaitable[object]:
        return oa.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    def anthropic_async() -> Awaitable[object]:
        return an.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)

    def openai_sync() -> object:
        return oa_sync.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    cases: dict[str, tuple[Callable[[], Any], bool]] = {
        "openai_async": (openai_async, True),
        "anthropic_async": (anthropic_async, True),
        "openai_sync": (openai_sync, False),
    }
    out: dict[str, dict[str, list[float]]] = {
        name: {"plain": [], "outside": [], "inside": []} for name in cases
    }

    async def measure(name: str, call: Callable[[], Any], is_async: bool) -> float:
        if is_async:
            return await _timed_async(call, n)
        return _timed_sync(call, n)  # the sync client on the loop's thread: fine for a bench

    for name, (call, is_async) in cases.items():
        await measure(name, call, is_async)  # warm up: imports, connection pools, EcoLogits
        for _ in range(ROUNDS):
            ecoasync.uninstrument()
            out[name]["plain"].append(await measure(name, call, is_async))
            ecoasync.instrument()
            out[name]["outside"].append(await measure(name, call, is_async))
            async with ecoasync.carbon_session(policy, bus=bus):
                out[name]["inside"].append(await measure(name, call, is_async))
    return {name: {k: min(v) for k, v in d.items()} for name, d in out.items()}


def _uncached_lookup(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        _impacts.lookup("openai", ("gpt-4o-mini",), 40 + i, 1.0)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="calls per measurement (default 2000)")
    parser.add_argument(
        "--out", default=None, help="JSON output path (default bench/results/instrument.json)"
    )
    args = parser.parse_args()
    with VirtualClock.installed():
        figures = anyio.run(_figures, args.n)
    lookup = _uncached_lookup(min(args.n, 1000))
    rows: dict[str, Any] = {}
    print(
        f"{'call':<18} {'plain µs':>10} {'outside µs':>11} {'ratio':>7} {'inside µs':>10} {'ratio':>7} {'added µs':>9}"
    )
    for name, f in figures.items():
        plain, outside, inside = f["plain"], f["outside"], f["inside"]
        rows[name] = {
            "uninstrumented_us": plain * 1e6,
            "instrumented_outside_session_us": outside * 1e6,
            "instrumented_inside_session_us": inside * 1e6,
            "outside_ratio": outside / plain,
            "inside_ratio": inside / plain,
            "outside_added_us": (outside - plain) * 1e6,
            "inside_added_us": (inside - plain) * 1e6,
        }
        print(
            f"{name:<18} {plain * 1e6:>10.1f} {outside * 1e6:>11.1f} {outside / plain:>6.3f}x"
            f" {inside * 1e6:>10.1f} {inside / plain:>6.3f}x {(inside - plain) * 1e6:>9.1f}"
        )
    print(f"{'one uncached EcoLogits lookup':<44} {lookup * 1e6:>10.1f} µs")
    path = write_json(
        "instrument",
        {"n": args.n, "calls": rows, "ecologits_uncached_lookup_us": lookup * 1e6},
        args.out,
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
