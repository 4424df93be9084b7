"""How fast the replay engine is: a synthetic year of 30-minute slots, both strategies.

    python bench/replay_speed.py [--days 365] [--repeats 3] [--out bench/results/replay_speed.json]

Target: a year in at most 2.2 s with the default strategy (the planner keeps no replay-only
path: a replay plans exactly as live sessions do). (llm-eco-tracker's benchmark script takes
3-4 s for one month: it rebuilds the remaining trace for every scenario.)
"""

from __future__ import annotations

import argparse
import time

from _common import write_json

from ecoasync import Policy
from ecoasync._simulate import replay
from ecoasync._synth import synthetic_trace

TARGET_S = 2.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    t0 = time.perf_counter()
    trace = synthetic_trace(args.days, seed=1, lag_slots=1.5)
    generated = time.perf_counter() - t0
    rows = {}
    for strategy in ("lowest", "calibrated"):
        policy = Policy(max_delay="4h", strategy=strategy)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = replay(trace, policy)
            times.append(time.perf_counter() - t0)
        rows[strategy] = {
            "best_s": min(times),
            "median_s": sorted(times)[len(times) // 2],
            "scenarios": result.scenarios,
            "us_per_scenario": min(times) / result.scenarios * 1e6,
        }
    print(
        f"replay of {args.days} days of 30-minute slots ({len(trace):,} slots), best of {args.repeats}"
    )
    print(f"  {'strategy':<12}{'scenarios':>10}{'best s':>9}{'median s':>10}{'us/job':>9}")
    for name, row in rows.items():
        print(
            f"  {name:<12}{row['scenarios']:>10,}{row['best_s']:>9.2f}{row['median_s']:>10.2f}"
            f"{row['us_per_scenario']:>9.0f}"
        )
    default = rows["calibrated"]["best_s"]
    verdict = "meets" if default <= TARGET_S else "MISSES"
    print(f"  default strategy: {default:.2f} s, {verdict} the {TARGET_S:g} s target")
    print(f"  (synthetic trace generated in {generated:.2f} s, not counted)")
    path = write_json(
        "replay_speed",
        {"days": args.days, "slots": len(trace), "target_s": TARGET_S, "strategies": rows},
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
