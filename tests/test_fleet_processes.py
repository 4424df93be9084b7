"""Several OS processes sharing one Redis: one forecast request for the whole fleet, one herd
spread as one process would spread it, and the store killed and restarted under them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from ecoasync.fleet import RedisLedger
from tests.conftest import ROOT
from tests.fleet_util import close_in_portal, unique
from tests.grid_server import GridServer
from tests.servers import RedisServer, environment

PROCESSES = 3
JOBS = 40


@pytest.fixture
def grid() -> Iterator[GridServer]:
    with GridServer() as server:
        yield server


def workers(*args: str, count: int = PROCESSES) -> list[subprocess.Popen[str]]:
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


def results(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def peak(runs: list[dict[str, Any]]) -> tuple[int, Counter[str]]:
    total: Counter[str] = Counter()
    for run in runs:
        total.update(run["starts"])
    return max(total.values()), total


def test_a_fleet_makes_one_request_and_spreads_one_herd(
    redis_server: RedisServer, grid: GridServer
) -> None:
    with GridServer() as other:
        # three processes sharing Redis; the same three each with its own cache and ledger;
        # and one process with all their jobs, to compare the spread with (all at once)
        shared_procs = workers(
            "--grid",
            grid.url,
            "--redis",
            redis_server.url,
            "--namespace",
            unique(),
            "--jobs",
            str(JOBS),
            "--ledger",
            "redis",
            "--cache",
            "shared",
        )
        own_procs = workers(
            "--grid", other.url, "--jobs", str(JOBS), "--ledger", "memory", "--cache", "own"
        )
        single_procs = workers(
            "--grid",
            other.url,
            "--jobs",
            str(JOBS * PROCESSES),
            "--ledger",
            "memory",
            "--cache",
            "own",
            count=1,
        )
        shared, own, single = results(shared_procs), results(own_procs), results(single_procs)
        assert other.count("/intensity/") == 2 * (PROCESSES + 1)  # each process its own two
    # one forecast and one history request for the three processes sharing Redis
    assert grid.count("/intensity/2026-03-18T00:00Z/fw48h") == 1
    assert grid.count("/intensity/") == 2
    assert sum(run["forecast_fetches"].get("forecast", 0) for run in shared) == 1
    assert all(not run["errors"] and run["granted"] == {"redis": JOBS} for run in shared)
    fleet_peak, fleet_spread = peak(shared)
    single_peak, single_spread = peak(single)
    own_peak, _ = peak(own)
    assert fleet_spread == single_spread and fleet_peak == single_peak
    assert own_peak == PROCESSES * peak([own[0]])[0] > fleet_peak  # three herds in one slot


def test_waiting_sessions_in_two_processes_spread_as_one_process(
    tmp_path: Path, redis_server: RedisServer, grid: GridServer
) -> None:
    """Sessions under ``Policy(ledger=RedisLedger(...))`` in two processes, all waiting at
    once, spread over the slots exactly as one process's sessions spread twice as many; each
    gives its claim back when it ends."""

    def run(count: int, *options: str) -> list[dict[str, Any]]:
        gate = tmp_path / unique("gate")
        gate.mkdir()
        procs = workers(
            "--grid", grid.url, "--sessions", "--gate", str(gate), *options, count=count
        )
        deadline = time.monotonic() + 60
        while len(list(gate.glob("claimed-*"))) < count:  # every herd waits, none has ended
            assert all(p.poll() is None for p in procs), results(procs)
            assert time.monotonic() < deadline, "the sessions never all claimed"
            time.sleep(0.02)
        (gate / "go").touch()
        return results(procs)

    namespace = unique()
    redis = ("--redis", redis_server.url, "--namespace", namespace, "--ledger", "redis")
    shared = run(2, "--jobs", str(JOBS), *redis)
    (single,) = run(1, "--jobs", str(2 * JOBS), "--ledger", "memory", "--cache", "own")
    assert all(not r["errors"] and r["granted"] == {"redis": JOBS} for r in shared), shared
    assert not single["errors"] and single["granted"] == {"memory": 2 * JOBS}
    _, fleet_spread = peak(shared)
    assert fleet_spread == Counter(single["starts"]) and len(fleet_spread) > 1
    assert all(len(r["starts"]) > 1 for r in shared)  # each process's herd is spread too
    assert single["left"] == 0  # every session gave its claim back
    zones = {zone for r in shared for zone in r["zones"]}
    assert anyio.run(fleet_load, RedisLedger(redis_server.url, namespace=namespace), zones) == 0


async def fleet_load(ledger: RedisLedger, zones: set[str]) -> int:
    """The live claims in ``ledger`` over the day of the runs."""
    from tests.fleet_worker import NOW

    try:
        end = NOW + timedelta(hours=7)
        return sum([sum((await ledger.loads(z, NOW, end, now=NOW)).values()) for z in zones])
    finally:
        await ledger.aclose()


def test_redis_killed_and_restarted_under_a_fleet(tmp_path: Path, grid: GridServer) -> None:
    stop = tmp_path / "stop"
    outs = [tmp_path / f"w{i}.jsonl" for i in range(2)]

    def lines(path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_for(ledger: str, after: list[int], limit: float = 20) -> list[int]:
        deadline = time.monotonic() + limit
        while True:
            seen = [lines(p) for p in outs]
            if all(
                any(x["ledger"] == ledger for x in s[n:]) for s, n in zip(seen, after, strict=True)
            ):
                return [len(s) for s in seen]
            assert time.monotonic() < deadline, f"no {ledger!r} claims in every process"
            time.sleep(0.02)

    with RedisServer() as store:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.fleet_worker",
                    "--name",
                    f"w{i}",
                    "--grid",
                    grid.url,
                    "--redis",
                    store.url,
                    "--namespace",
                    unique(),
                    "--ledger",
                    "redis",
                    "--cache",
                    "own",
                    "--retry-after",
                    "0.2",
                    "--until",
                    str(stop),
                    "--out",
                    str(out),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, out in enumerate(outs)
        ]
        try:
            seen = wait_for("redis", [0, 0])
            store.kill()
            seen = wait_for("memory (redis unavailable)", seen)
            store.start()
            wait_for("redis", seen)
        finally:
            stop.touch()
        runs = results(procs)
    assert all(not run["errors"] and run["outages"] == 1 for run in runs)
    assert all(set(run["granted"]) == {"redis", "memory (redis unavailable)"} for run in runs)


def test_a_worker_killed_mid_job_loses_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    """kill -9 of a Celery worker process in the middle of a green job: the broker delivers it
    again (``acks_late``), another worker runs it, and it leaves no ledger load past its lease."""
    import importlib
    import signal

    import anyio
    from celery.contrib.testing.worker import start_worker

    env = {
        "ECOASYNC_TEST_REDIS": redis_server.url,
        "ECOASYNC_TEST_QUEUE": unique("q"),
        "ECOASYNC_TEST_DIR": str(tmp_path),
        "ECOASYNC_TEST_NAMESPACE": unique(),
    }
    with environment(**env):
        module = importlib.reload(importlib.import_module("tests.fleet_celery_app"))
        doomed = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.fleet_celery_app",
                "worker",
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result = module.slow_job.apply_green(args=(41,), task_id="mid-job")
            deadline = time.monotonic() + 30
            while not (tmp_path / f"started-{doomed.pid}").exists():
                assert time.monotonic() < deadline and doomed.poll() is None
                time.sleep(0.02)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        (tmp_path / "go").touch()
        with start_worker(module.app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
            assert result.get(timeout=30) == 42
        close_in_portal(module.ledger)
    assert not list(tmp_path.glob(f"done-41-{doomed.pid}"))
    assert len(list(tmp_path.glob("done-41-*"))) == 1  # run again, once, to the end

    async def left() -> int:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        lease = timedelta(seconds=20) + timedelta(minutes=30)  # the delay budget and the window
        try:
            found = await module.ledger.loads(
                "GB", now - timedelta(minutes=1), now, now=now + lease
            )
        finally:
            await module.ledger.aclose()
        return sum(found.values())

    # no load past the lease (right after the run, the claim is usually gone already, but not
    # always: in about one run in six it stays until its lease ends; cause not found yet)
    assert anyio.run(left) == 0
