"""Ten thousand concurrent sessions on live providers, against a loopback grid server.

    python bench/providers.py [--sessions 10000] [--zones 3] [--backend asyncio] [--out ...]

The grid server (``tests/grid_server.py``) runs in a subprocess, so its threads do not share
the benchmark's GIL. Sessions plan with ``max_delay=4h`` on an ``ecoasync.testing.VirtualClock``
(they really plan, wait for their slot and complete, without waiting for real), spread over
``--zones`` UK regions (one provider each). Measured:

- HTTP requests made (target: one per zone and TTL);
- peak RSS of the process (target: at most 100 MB);
- the longest event-loop stall, as the lateness of a heartbeat task that sleeps 2 ms at a time
  (target: none over 10 ms), with the garbage collector on and off; and the same lateness in
  this thread's CPU time (``time.thread_time``), which leaves out the time the machine gave
  to other processes (on a shared machine the wall-clock figure measures them too).

The live runs import httpx before the sessions arrive, as an application using the OpenAI or
Anthropic SDK has; one more run (collector off) leaves the first client to import it, in a
worker thread: the cold start, once per process.

Prints a table and writes JSON (``bench/results/providers.json`` by default).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json

import ecoasync
from ecoasync.events import Completed
from ecoasync.providers import StaticForecastProvider, UKCarbonIntensityProvider, synthetic_day
from ecoasync.testing import VirtualClock

ROOT = Path(__file__).resolve().parent.parent
SUBMITTED = datetime(2026, 3, 18, 20, 7, tzinfo=UTC)  # evening: waiting for the night pays
HEARTBEAT_S = 0.002


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run(url: str | None, sessions: int, zones: int, *, floor: bool = False) -> dict[str, Any]:
    """``url`` None: the peer, static in-memory forecasts (what sessions cost without network).

    ``floor``: the same tasks, spawned the same way, without ecoasync (each waits until all
    have arrived): what 10,000 waiting anyio tasks cost this interpreter on their own.
    """
    providers: list[Any]
    if url is None:
        day = synthetic_day(SUBMITTED.replace(hour=0, minute=0), days=2)
        providers = [StaticForecastProvider(day, name=f"static-{r}") for r in range(zones)]
    else:
        providers = [UKCarbonIntensityProvider(region=r + 1, base_url=url) for r in range(zones)]
    bus = ecoasync.EventBus()
    completed: dict[str, int] = {}

    def count(event: Completed) -> None:
        completed[event.record.decision] = completed.get(event.record.decision, 0) + 1

    bus.subscribe(count, Completed)
    policies = [ecoasync.Policy(max_delay="4h", provider=p) for p in providers]
    stalls: list[float] = []
    own_stalls: list[float] = []
    cpu_stalls: list[float] = []
    gc_pauses: list[tuple[float, float]] = []
    gc_started = [0.0]
    running = True

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((gc_started[0], time.perf_counter()))

    def gc_time(a: float, b: float) -> float:
        total = 0.0
        for start, end in reversed(gc_pauses):
            if end < a:
                break
            total += max(0.0, min(b, end) - max(a, start))
        return total

    async def heartbeat() -> None:
        while running:
            before, before_cpu = time.perf_counter(), time.thread_time()
            await anyio.sleep(HEARTBEAT_S)
            after, after_cpu = time.perf_counter(), time.thread_time()
            late = after - before - HEARTBEAT_S
            stalls.append(late)
            cpu_stalls.append(max(0.0, min(late, after_cpu - before_cpu - HEARTBEAT_S)))
            # the part of the lateness not spent in the garbage collector: ecoasync's own
            own_stalls.append(max(0.0, late - gc_time(before, after)))

    alive = [0, 0]  # sessions between submission and completion now, and at most

    async def session(i: int) -> None:
        alive[0] += 1
        alive[1] = max(alive)
        try:
            async with ecoasync.carbon_session(policies[i % zones], bus=bus, name="bench"):
                await anyio.lowlevel.checkpoint()
        finally:
            alive[0] -= 1

    arrived = anyio.Event()

    async def bare(i: int) -> None:
        await arrived.wait()
        await anyio.sleep(i * 5e-5)  # then finish one after another, as sessions do
        completed["bare"] = completed.get("bare", 0) + 1

    task = bare if floor else session

    gc.collect()
    gc.callbacks.append(on_gc)
    rss_before = rss_mb()
    began = time.perf_counter()
    with VirtualClock.installed(SUBMITTED) as clock:
        async with anyio.create_task_group() as outer:
            outer.start_soon(heartbeat)
            async with anyio.create_task_group() as tg:
                for i in range(sessions):
                    tg.start_soon(task, i)
                    if i % 20 == 19:
                        await anyio.lowlevel.checkpoint()  # arrivals, not one 10,000-task burst
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                arrived.set()
            running = False
    elapsed = time.perf_counter() - began
    gc.callbacks.remove(on_gc)
    requests = sum(getattr(p, "requests", 0) for p in providers)
    kinds: dict[str, int] = {}
    for provider in providers:
        for kind, n in getattr(provider, "fetches", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    for provider in providers:
        if url is not None:
            await provider.aclose()
    return {
        "sessions": sessions,
        "zones": zones,
        "requests": requests,
        "requests_per_zone": requests / zones,
        "requests_by_kind": kinds,
        "max_requests_per_zone_and_kind": max(kinds.values(), default=0) / zones,
        "completed": sum(completed.values()),
        "max_concurrent": alive[1] if not floor else sessions,
        "decisions": completed,
        "virtual_hours": clock.slept.total_seconds() / 3600,
        "wall_s": round(elapsed, 3),
        "sessions_per_s": round(sessions / elapsed),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "longest_stall_ms": round(max(stalls, default=0.0) * 1000, 2),
        "p99_stall_ms": round(sorted(stalls)[int(len(stalls) * 0.99)] * 1000, 2) if stalls else 0.0,
        "longest_stall_excluding_gc_ms": round(max(own_stalls, default=0.0) * 1000, 2),
        "longest_stall_cpu_ms": round(max(cpu_stalls, default=0.0) * 1000, 2),
        "longest_gc_pause_ms": round(max((e - s for s, e in gc_pauses), default=0.0) * 1000, 2),
        "gc_pauses": len(gc_pauses),
        "heartbeats": len(stalls),
    }


def measure(mode: str, sessions: int, zones: int, backend: str) -> dict[str, Any]:
    """One configuration, in this process (called in a fresh subprocess per configuration)."""
    if mode == "static":
        return anyio.run(run, None, sessions, zones, backend=backend)
    if mode == "floor":
        return anyio.run(partial(run, None, sessions, zones, floor=True), backend=backend)
    if mode in ("live-nogc", "live-cold-nogc"):
        gc.disable()  # isolates the stalls of the code from the collector's pauses
    if mode != "live-cold-nogc":
        # as in an application whose OpenAI or Anthropic SDK has imported httpx before the
        # sessions arrive; "live-cold-nogc" leaves the first client to import it (in a worker
        # thread, once per process: its GIL hand-offs are the cold start's stalls)
        import httpcore._backends.anyio
        import httpcore._backends.auto  # noqa: F401
        import httpx  # noqa: F401
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.grid_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        return anyio.run(run, f"http://127.0.0.1:{port}", sessions, zones, backend=backend)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--only",
        choices=("live", "static", "live-nogc", "live-cold-nogc", "floor"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.sessions, args.zones, args.backend)))
        return
    runs: dict[str, dict[str, Any]] = {}
    # each in a fresh process: peak RSS is a high-water mark
    for mode in ("floor", "static", "live", "live-nogc", "live-cold-nogc"):
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--only",
                mode,
                "--sessions",
                str(args.sessions),
                "--zones",
                str(args.zones),
                "--backend",
                args.backend,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        runs[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    live, static, nogc, floor = runs["live"], runs["static"], runs["live-nogc"], runs["floor"]
    cold = runs["live-cold-nogc"]
    figures: dict[str, Any] = {
        **live,
        "backend": args.backend,
        "peer_static": static,
        "floor_no_ecoasync": floor,
        "ecoasync_rss_mb": round(live["peak_rss_mb"] - floor["peak_rss_mb"], 1),
        "ecoasync_bytes_per_session": round(
            (live["peak_rss_mb"] - floor["peak_rss_mb"]) * 2**20 / live["sessions"]
        ),
        "live_gc_disabled": nogc,
        "longest_stall_gc_disabled_ms": nogc["longest_stall_ms"],
        "longest_stall_gc_disabled_cpu_ms": nogc["longest_stall_cpu_ms"],
        "live_cold_start_gc_disabled": cold,
        "longest_stall_cold_start_gc_disabled_ms": cold["longest_stall_ms"],
    }
    figures["rss_ratio_live_to_static"] = round(live["peak_rss_mb"] / static["peak_rss_mb"], 3)
    targets = {
        "max_requests_per_zone_and_kind": (
            live["max_requests_per_zone_and_kind"],
            "<= 1",
            live["max_requests_per_zone_and_kind"] <= 1,
        ),
        "peak_rss_mb": (live["peak_rss_mb"], "<= 100", live["peak_rss_mb"] <= 100),
        "longest_stall_ms": (live["longest_stall_ms"], "<= 10", live["longest_stall_ms"] <= 10),
        "longest_stall_gc_disabled_ms": (
            nogc["longest_stall_ms"],
            "<= 10",
            nogc["longest_stall_ms"] <= 10,
        ),
    }
    figures["targets_met"] = {k: ok for k, (_, _, ok) in targets.items()}
    print(f"bench/providers.py: {args.sessions} sessions over {args.zones} zones, {args.backend}")
    print(f"  {'figure':<31} {'live (HTTP)':>12} {'static peer':>12} {'no ecoasync':>12}  target")
    rows = (
        "requests",
        "completed",
        "max_concurrent",
        "wall_s",
        "sessions_per_s",
        "rss_before_mb",
        "peak_rss_mb",
        "longest_stall_ms",
        "longest_gc_pause_ms",
        "p99_stall_ms",
    )
    for key in rows:
        target = targets.get(key)
        mark = f"  {target[1]} {'ok' if target[2] else 'MISSED'}" if target else ""
        print(f"  {key:<31} {live[key]!s:>12} {static[key]!s:>12} {floor[key]!s:>12}{mark}")
    print(
        f"  {'longest_stall_gc_disabled_ms':<31} {nogc['longest_stall_ms']!s:>12} {'':>12}"
        f"  <= 10 {'ok' if nogc['longest_stall_ms'] <= 10 else 'MISSED'}"
    )
    print(
        f"  {'  in this thread CPU time':<31} {nogc['longest_stall_cpu_ms']!s:>12} {'':>12}"
        "  (other processes' time left out)"
    )
    print(
        f"  {'  cold start (imports httpx)':<31} {cold['longest_stall_ms']!s:>12}"
        f" {'':>12} {'':>12}  (once per process; peak RSS {cold['peak_rss_mb']} MB)"
    )
    print(
        f"  requests by kind: {live['requests_by_kind']} over {live['zones']} zones "
        "(the default calibrated strategy also reads 72 h of actuals: one history request)"
    )
    print(f"  peak RSS live / static: {figures['rss_ratio_live_to_static']}")
    print(
        f"  ecoasync's own share of the peak (live - no ecoasync): {figures['ecoasync_rss_mb']} MB, "
        f"{figures['ecoasync_bytes_per_session']} bytes per waiting session"
    )
    path = write_json("providers", figures, args.out)
    print(f"  written to {path}")


if __name__ == "__main__":
    main()
