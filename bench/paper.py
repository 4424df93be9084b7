"""The EcoTracker table, for its policy and ecoasync's default side by side, plus the
overfitting checks: each half of the trace and synthetic traces.

    python bench/paper.py [TRACE] [--max-delay 4h] [--energy-kwh 0.0005] [--out PATH]

TRACE defaults to $ECOASYNC_SHARED_DATA/benchmark_trace.csv (../shared/data); it is read, never
copied. Published EcoTracker figures on that trace (4 h, 0.0005 kWh): 1,392 scenarios,
baseline 88.614 g, scheduled 79.766 g, oracle 77.109 g, 76.9 % of oracle savings, 2.05 h,
268 regressions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from _common import write_json

from ecoasync import Forecast, Policy
from ecoasync._simulate import Replay, replay
from ecoasync._synth import synthetic_trace
from ecoasync.providers import read_trace

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = (("EcoTracker (lowest)", "lowest"), ("ecoasync (calibrated)", "calibrated"))
ROWS = (
    ("scenarios", "scenarios", "{:,}"),
    ("baseline g", "baseline_g", "{:.3f}"),
    ("scheduled g", "scheduled_g", "{:.3f}"),
    ("oracle g", "oracle_g", "{:.3f}"),
    ("reduction %", "reduction_pct", "{:.2f}"),
    ("oracle savings %", "oracle_capture_pct", "{:.1f}"),
    ("mean delay h", "mean_delay_h", "{:.2f}"),
    ("median delay h", "median_delay_h", "{:.2f}"),
    ("regressions", "regressions", "{:,}"),
)


def figures(r: Replay) -> dict[str, Any]:
    out = r.to_json()
    out.pop("daily")
    return out


def table(title: str, results: dict[str, Replay]) -> None:
    print(title)
    print(f"  {'':<18}" + "".join(f"{name:>24}" for name, _ in STRATEGIES))
    for label, key, fmt in ROWS:
        cells = "".join(f"{fmt.format(getattr(results[s], key)):>24}" for _, s in STRATEGIES)
        print(f"  {label:<18}{cells}")
    print()


def run(trace: Forecast, max_delay: str, energy: float) -> dict[str, Replay]:
    return {
        s: replay(trace, Policy(max_delay=max_delay, strategy=s), energy_kwh=energy)  # type: ignore[arg-type]
        for _, s in STRATEGIES
    }


def main() -> None:
    default = Path(os.environ.get("ECOASYNC_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default=str(default / "benchmark_trace.csv"))
    parser.add_argument("--max-delay", default="4h")
    parser.add_argument("--energy-kwh", type=float, default=0.0005)
    parser.add_argument("--out")
    args = parser.parse_args()
    trace = read_trace(args.trace)
    out: dict[str, Any] = {"trace": Path(args.trace).name, "max_delay": args.max_delay}

    full = run(trace, args.max_delay, args.energy_kwh)
    table(
        f"{Path(args.trace).name}, max_delay {args.max_delay}, {args.energy_kwh} kWh per job", full
    )
    out["full"] = {s: figures(r) for s, r in full.items()}

    # sub-periods: the first and the second half (each with its own look-ahead)
    middle = len(trace) // 2
    halves = {
        "first half": Forecast(trace.slots[: middle + 8]),
        "second half": Forecast(trace.slots[middle - 48 :]),
    }
    out["halves"] = {}
    for name, part in halves.items():
        res = run(part, args.max_delay, args.energy_kwh)
        table(f"{name} of the trace", res)
        out["halves"][name] = {s: figures(r) for s, r in res.items()}

    # synthetic traces: a forecast on time, and one running 45 minutes late
    out["synthetic"] = {}
    print("synthetic traces, 90 days each (oracle savings % / mean delay h / regressions)")
    print(f"  {'trace':<28}" + "".join(f"{name:>24}" for name, _ in STRATEGIES))
    for lag in (0.0, 1.5):
        for seed in (1, 2, 3):
            name = f"lag {lag:g} slots, seed {seed}"
            res = run(
                synthetic_trace(90, seed=seed, lag_slots=lag), args.max_delay, args.energy_kwh
            )
            cells = "".join(
                f"{f'{r.oracle_capture_pct:.1f} / {r.mean_delay_h:.2f} / {r.regressions}':>24}"
                for r in (res[s] for _, s in STRATEGIES)
            )
            print(f"  {name:<28}{cells}")
            out["synthetic"][name] = {s: figures(r) for s, r in res.items()}
    path = write_json("paper", out, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
