"""Per-call overhead of the decorator: llm-eco-tracker 0.1.0 vs ecoasync, in one run.

    python bench/vs_peer.py [--install-peer] [--peer-python PATH] [--calls 2000] [--out PATH]

Both wrap a function that does nothing, with no delay budget, so what is timed is the
machinery itself: for ecoasync, ``@carbon_aware`` on a plain function (the sync API, whose
plan here is made in the calling thread: the forecast is in memory and says run now), on a
coroutine function, and ``async with carbon_session``; for the peer,
its ``@carbon_aware(max_delay_hours=0)`` with an empty forecast and its no-op sink. With
``--install-peer`` the peer is pip-installed into its own virtual environment in a temporary
directory and measured there through a subprocess; without it (and without
``--peer-python``), ecoasync's figures are reported and the peer is said not to be measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import anyio
from _common import write_json

from ecoasync import Forecast, Policy, Slot, carbon_aware, carbon_session
from ecoasync.providers import StaticForecastProvider

PEER = "llm-eco-tracker==0.1.0"

PEER_SCRIPT = r"""
import json, sys, time
from llm_eco_tracker import carbon_aware
from llm_eco_tracker.models import ForecastSnapshot
from llm_eco_tracker.telemetry.sinks import NoOpTelemetrySink

class Empty:
    provider_name = "empty"
    def load_forecast(self, max_delay_hours):
        return ForecastSnapshot(intervals=())

calls = int(sys.argv[1])

@carbon_aware(max_delay_hours=0, forecast_provider=Empty(), telemetry_sink=NoOpTelemetrySink())
def work():
    return 1

def bare():
    return 1

t0 = time.perf_counter(); work(); first = time.perf_counter() - t0
best = float("inf")
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(calls):
        work()
    best = min(best, (time.perf_counter() - t0) / calls)
t0 = time.perf_counter()
for _ in range(calls):
    bare()
base = (time.perf_counter() - t0) / calls
print(json.dumps({"first_call_s": first, "per_call_s": best - base}))
"""


def _provider() -> StaticForecastProvider:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=30)
    slots = [Slot(start + i * step, start + (i + 1) * step, 150.0) for i in range(24 * 2 * 400)]
    return StaticForecastProvider(Forecast(slots), name="static")


def _best(run: Any, calls: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(calls)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def measure_ecoasync(calls: int) -> dict[str, float]:
    policy = Policy(provider=_provider(), max_delay="0m")

    @carbon_aware(policy)
    def work_sync() -> int:
        return 1

    @carbon_aware(policy)
    async def work_async() -> int:
        return 1

    def bare() -> int:
        return 1

    t0 = time.perf_counter()
    work_sync()
    first = time.perf_counter() - t0

    def run_sync(n: int) -> None:
        for _ in range(n):
            work_sync()

    async def run_async(n: int) -> None:
        for _ in range(n):
            await work_async()

    async def run_session(n: int) -> None:
        for _ in range(n):
            async with carbon_session(policy):
                pass

    def run_bare(n: int) -> None:
        for _ in range(n):
            bare()

    base = _best(run_bare, calls)
    return {
        "first_call_s": first,
        "carbon_aware_sync_s": _best(run_sync, calls) - base,
        "carbon_aware_async_s": _best(lambda n: anyio.run(run_async, n), calls) - base,
        "carbon_session_s": _best(lambda n: anyio.run(run_session, n), calls) - base,
    }


def install_peer(root: Path) -> Path:
    env = root / "peer-venv"
    print(f"installing {PEER} into {env} ...", file=sys.stderr)
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", PEER], check=True, timeout=900)
    return python


def measure_peer(python: Path, calls: int, root: Path) -> dict[str, float]:
    script = root / "peer_overhead.py"
    script.write_text(PEER_SCRIPT)
    done = subprocess.run(
        [str(python), str(script), str(calls)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=root,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-peer", action="store_true")
    parser.add_argument("--peer-python", help="a Python that already has llm-eco-tracker")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args()
    ours = measure_ecoasync(args.calls)
    peer: dict[str, float] | None = None
    note = "peer not measured (pass --install-peer or --peer-python)"
    with tempfile.TemporaryDirectory(prefix="ecoasync-peer-") as tmp:
        root = Path(tmp)
        python = Path(args.peer_python) if args.peer_python else None
        if python is None and args.install_peer:
            python = install_peer(root)
        if python is not None:
            peer = measure_peer(python, args.calls, root)
            note = f"peer {PEER} measured in its own environment"
    print(f"decorator overhead per call (no delay budget), best of 5 x {args.calls} calls")
    print(f"  {'':<34}{'per call':>12}{'vs peer':>10}")
    rows = [
        ("ecoasync @carbon_aware (sync)", ours["carbon_aware_sync_s"]),
        ("ecoasync @carbon_aware (async)", ours["carbon_aware_async_s"]),
        ("ecoasync carbon_session", ours["carbon_session_s"]),
    ]
    ratios = {}
    for label, value in rows:
        ratio = f"{value / peer['per_call_s']:.2f}x" if peer else "-"
        if peer:
            ratios[label] = value / peer["per_call_s"]
        print(f"  {label:<34}{value * 1e3:>10.3f}ms{ratio:>10}")
    if peer:
        print(
            f"  {'llm-eco-tracker @carbon_aware':<34}{peer['per_call_s'] * 1e3:>10.3f}ms{'1.00x':>10}"
        )
        print(
            f"  first call: ecoasync {ours['first_call_s'] * 1e3:.1f} ms, "
            f"llm-eco-tracker {peer['first_call_s'] * 1e3:.1f} ms"
        )
    else:
        print(f"  first call: ecoasync {ours['first_call_s'] * 1e3:.1f} ms")
    print(f"  {note}")
    path = write_json(
        "vs_peer",
        {"calls": args.calls, "ecoasync": ours, "peer": peer, "ratios": ratios, "note": note},
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
