"""Many workers, one schedule: a real Redis, several worker processes, and the same work with
per-process state in the same run.

    .venv/bin/python bench/fleet.py [--processes 4] [--jobs 2500] [--celery-jobs 2000]

1. **Herd.** ``--processes`` processes each plan ``--jobs`` jobs submitted at one moment
   (forecast, planner, a claim), sharing Redis (``SharedCacheProvider`` + ``RedisLedger``);
   then the same processes with their own cache and ledger; then one process with all the
   jobs. Reported: forecast requests the grid server saw (target: one per kind for the
   fleet), the most jobs planned into one slot (target: no more than one process planning
   every job), Redis round trips per job.
2. **Latency.** One process plans jobs one after another with the Redis ledger and with its
   own: p50/p99 of a claim (target: Redis's p99 at most 2 ms on loopback).
3. **Celery.** ``--celery-jobs`` green jobs through ``GreenTask`` onto three worker processes
   on the same Redis; one worker is killed (SIGKILL) mid-run. Reported: jobs run (target:
   every one), jobs run twice (those the killed worker had begun: Celery with ``acks_late``
   runs them again), the most jobs planned into one one-second slot and started in one
   second (runs the broker delivered again after the kill are counted apart), the load
   left in the ledger (target: none once the jobs have run, none past the leases), and where
   a job that never ran still is (``lost_jobs_found_in``: the broker's queue, its unacked
   messages, the ledger). Celery's Redis transport pops a message (BRPOP) before it records
   it as unacked, so a worker killed between the two loses it: the broker, not ecoasync.

Timing targets live here, never in the tests. Writes ``bench/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import write_json  # noqa: E402
from tests.grid_server import GridServer  # noqa: E402
from tests.servers import RedisServer  # noqa: E402


def workers(args: list[str], count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_worker", "--name", f"w{i}", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(stderr)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def spread(runs: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for run in runs:
        total.update(run["starts"])
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


def herd(redis: RedisServer, processes: int, jobs: int) -> dict[str, Any]:
    with GridServer() as fleet_grid, GridServer() as own_grid:
        ns = "herd-" + uuid.uuid4().hex[:8]
        common = ["--jobs", str(jobs)]
        began = time.perf_counter()
        shared = collect(
            workers(
                [
                    *common,
                    "--grid",
                    fleet_grid.url,
                    "--redis",
                    redis.url,
                    "--namespace",
                    ns,
                    "--ledger",
                    "redis",
                    "--cache",
                    "shared",
                ],
                processes,
            )
        )
        shared_s = time.perf_counter() - began
        own = collect(
            workers(
                [*common, "--grid", own_grid.url, "--ledger", "memory", "--cache", "own"], processes
            )
        )
        before = own_grid.count("/intensity/")
        single = collect(
            workers(
                [
                    "--jobs",
                    str(jobs * processes),
                    "--grid",
                    own_grid.url,
                    "--ledger",
                    "memory",
                    "--cache",
                    "own",
                ],
                1,
            )
        )
        single_requests = own_grid.count("/intensity/") - before
        fleet_requests, own_requests = fleet_grid.count("/intensity/"), before
    fleet_spread, own_spread, single_spread = spread(shared), spread(own), spread(single)
    total = processes * jobs
    return {
        "processes": processes,
        "jobs_per_process": jobs,
        "grid_requests": {
            "shared": fleet_requests,
            "per_process_state": own_requests,
            "one_process": single_requests,
        },
        "peak_jobs_in_one_slot": {
            "shared": max(fleet_spread.values()),
            "per_process_state": max(own_spread.values()),
            "one_process_all_jobs": max(single_spread.values()),
        },
        "slots_used": {"shared": len(fleet_spread), "per_process_state": len(own_spread)},
        "same_spread_as_one_process": fleet_spread == single_spread,
        "redis_round_trips_per_job": sum(r["round_trips"] for r in shared) / total,
        "fallbacks": sum(r["granted"].get("memory (redis unavailable)", 0) for r in shared),
        "herd_claim_ms": {
            "p50": pct([s for r in shared for s in r["claim_s"]], 0.5),
            "p99": pct([s for r in shared for s in r["claim_s"]], 0.99),
        },
        "shared_wall_s": shared_s,
    }


def latency(redis: RedisServer, jobs: int) -> dict[str, Any]:
    with GridServer() as grid:
        ns = "lat-" + uuid.uuid4().hex[:8]
        out: dict[str, Any] = {}
        for ledger in ("redis", "memory", "redis", "memory"):  # interleaved, best of two
            [run] = collect(
                workers(
                    [
                        "--jobs",
                        str(jobs),
                        "--steady",
                        "--grid",
                        grid.url,
                        "--redis",
                        redis.url,
                        "--namespace",
                        ns + ledger,
                        "--ledger",
                        ledger,
                        "--cache",
                        "own",
                    ],
                    1,
                )
            )
            seconds = run["claim_s"][50:]  # (the first ones pay for connecting)
            figures = {
                "p50_ms": pct(seconds, 0.5),
                "p99_ms": pct(seconds, 0.99),
                "mean_ms": statistics.fmean(seconds) * 1000,
            }
            best = out.get(ledger)
            if best is None or figures["p99_ms"] < best["p99_ms"]:
                out[ledger] = figures
    out["added_by_redis_p50_ms"] = out["redis"]["p50_ms"] - out["memory"]["p50_ms"]
    out["added_by_redis_p99_ms"] = out["redis"]["p99_ms"] - out["memory"]["p99_ms"]
    return out


BOOT_S = 12


def _text(key: bytes | str) -> str:
    """A Redis hash key as text (redis-py answers bytes unless told to decode)."""
    return key.decode() if isinstance(key, bytes) else key


def whereabouts(client: Any, ns: str, job: str) -> dict[str, bool]:
    """Where a job that never ran still is: in the broker's queue, among its unacked messages
    (a killed worker's, not yet restored), and in the ledger (its claim, kept until its lease
    expires). In neither of the first two, the broker lost the message."""
    needle = job.encode()
    return {
        "broker_queue": any(needle in m for m in client.lrange(ns, 0, -1)),
        "broker_unacked": any(needle in m for m in client.hvals("unacked")),
        "ledger_claim": bool(client.hexists(f"{ns}:{{GB}}:jobs", job)),
    }


def celery_run(redis: RedisServer, jobs: int) -> dict[str, Any]:
    import anyio
    import redis as redis_py

    ns = "cel-" + uuid.uuid4().hex[:8]
    # the green dip starts a few seconds after the workers are up (they take a while to boot)
    origin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=BOOT_S)
    env = {
        **os.environ,
        "FLEET_REDIS": redis.url,
        "FLEET_QUEUE": ns,
        "FLEET_NAMESPACE": ns,
        "FLEET_ORIGIN": origin.isoformat(),
        "PYTHONPATH": f"{ROOT / 'bench'}{os.pathsep}{ROOT}",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("FLEET_")})
    sys.path.insert(0, str(ROOT / "bench"))
    import fleet_app

    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "fleet_app",
                "worker",
                "-P",
                "threads",
                "-c",
                "8",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "ERROR",
                "-n",
                f"w{i}@%h",
            ],
            cwd=ROOT / "bench",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(3)
    ]

    async def send(i: int, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:  # (a service takes requests a hundred at a time, not all at once)
            await fleet_job.apply_green_async(args=(i,), task_id=f"{ns}-{i}")

    async def enqueue() -> float:
        began = time.perf_counter()
        limiter = anyio.CapacityLimiter(100)
        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(send, i, limiter)
        return time.perf_counter() - began

    fleet_job = fleet_app.fleet_job
    client = redis_py.Redis.from_url(redis.url)
    try:
        deadline = time.monotonic() + BOOT_S
        while len(fleet_app.app.control.ping(timeout=0.5) or []) < len(procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery workers were not up within {BOOT_S} s")
        enqueue_s = anyio.run(enqueue)
        # kill one worker once the jobs have started to run
        deadline = time.monotonic() + 60
        while sum(int(v) for v in client.hvals(f"{ns}:runs")) < jobs // 3:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        killed_at = sum(int(v) for v in client.hvals(f"{ns}:runs"))
        deadline = time.monotonic() + 120
        while client.hlen(f"{ns}:runs") < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        runs = {_text(k): int(v) for k, v in client.hgetall(f"{ns}:runs").items()}
        lost = [f"{ns}-{i}" for i in range(jobs) if f"{ns}-{i}" not in runs]
        where_lost = {job: whereabouts(client, ns, job) for job in lost}
        started = {int(k): int(v) for k, v in client.hgetall(f"{ns}:started").items()}
        planned = {int(k): int(v) for k, v in client.hgetall(f"{ns}:planned").items()}
        redelivered = int(client.get(f"{ns}:redelivered") or 0)

        async def left(at: datetime) -> int:
            try:
                found = await fleet_app.ledger.loads(
                    "GB", origin - timedelta(minutes=1), origin + timedelta(minutes=1), now=at
                )
            finally:
                await fleet_app.ledger.aclose()
            return sum(found.values())

        time.sleep(1.0)  # the last releases
        now = datetime.now(UTC)
        leaked_now = anyio.run(left, now)
        lease = fleet_app.policy.max_delay + timedelta(minutes=30)  # (delay budget + window)
        leaked_after_lease = anyio.run(left, now + lease)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    return {
        "jobs": jobs,
        "worker_processes": 3,
        "enqueue_s": enqueue_s,
        "killed_after_runs": killed_at,
        "jobs_run": len(runs),
        "jobs_lost": jobs - len(runs),
        "jobs_run_twice": sum(1 for v in runs.values() if v > 1),
        "lost_jobs_found_in": where_lost,
        "runs_redelivered_after_the_kill": redelivered,
        "peak_jobs_planned_in_one_slot": max(planned.values(), default=0),
        "slots_planned": len(planned),
        "peak_jobs_started_in_one_second": max(started.values(), default=0),
        "seconds_started_in": len(started),
        "planned_per_second": {k - int(origin.timestamp()): v for k, v in sorted(planned.items())},
        "started_per_second": {k - int(origin.timestamp()): v for k, v in sorted(started.items())},
        "ledger_load_left": leaked_now,
        "ledger_load_past_leases": leaked_after_lease,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2500)
    parser.add_argument("--latency-jobs", type=int, default=2000)
    parser.add_argument("--celery-jobs", type=int, default=2000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with RedisServer() as redis:
        figures = {
            "herd": herd(redis, args.processes, args.jobs),
            "latency": latency(redis, args.latency_jobs),
            "celery": celery_run(redis, args.celery_jobs),
        }
    print(json.dumps(figures, indent=2))
    path = write_json("fleet", figures, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
