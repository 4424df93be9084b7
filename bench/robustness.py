"""Robustness across grids: the default planner against the EcoTracker rule on every zone of
../shared/data/regions/ and the UK trace, each under several forecast error models.

    python bench/robustness.py [--data DIR] [--regions DIR] [--uk PATH] [--zones DE_2022,...]
        [--models sigma5,...] [--days N] [--max-delay 4h] [--caution X] [--jobs 2] [--seed 1]
        [--markdown] [--out PATH]

The regions' files have actuals only (Electricity Maps' hourly exports, see their SOURCE.md);
``ecoasync._synth`` adds a forecast to each, one error model at a time (percentages of the
zone's mean actual; the random error is AR(1) with the UK forecast's one-hour correlation,
0.43; the same ``--seed`` for every cell):

- ``sigma5``, ``sigma10``, ``sigma20``: unbiased and on time, sigma 5 / 10 / 20 %;
- ``bias+10``, ``bias-10``: sigma 10 %, every slot 10 % of the mean too high / too low;
- ``late1h``: sigma 10 %, the forecast one hour late (it reads the actual of an hour before);
- ``tod``: sigma 10 %, plus a daily error of 10 % amplitude, largest at 15:00 UTC.

The UK trace (half-hourly, with the National Grid ESO's real forecast) runs as it is (``as-is``)
and under the same seven models on its actuals. Every cell replays both strategies with
``ecoasync._simulate.replay`` (one job per slot, 4 h budget, charged the actual intensity):
``lowest`` (EcoTracker's rule) and the default ``calibrated``. The table gives, per strategy,
the share of the oracle's savings captured, the reduction against running at once, the mean
delay and the regressions, and whether the default is Pareto-better than ``lowest`` in that
cell (capture >= and mean delay <=). Summary: Pareto-better cells / cells, the mean capture
difference (points), and the delay ratio (the default's mean delay over all cells divided by
``lowest``'s). Writes bench/results/robustness.json (or ``--out``).

``--caution X`` is passed to ``Policy(caution=X)`` where the Policy has that field (and refused
where it has not). ``--jobs N`` replays N cells at a time in worker processes. A full year per
zone; ``--days N`` keeps the first N days of each trace (for a quick look and the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _common import write_json

from ecoasync import Forecast, Policy
from ecoasync._cli._trace_synth import read_actuals
from ecoasync._simulate import Replay, replay
from ecoasync._synth import ErrorModel, synthesize
from ecoasync.providers import read_trace

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("lowest", "calibrated")
RHO = 0.43  # the UK forecast's one-hour correlation (ecoasync trace errors)
_QUIET: dict[str, Any] = {"rho": RHO, "bias_pct": 0.0, "offset": "0", "time_of_day_pct": 0.0}
MODELS: dict[str, dict[str, Any]] = {
    "sigma5": {**_QUIET, "sigma_pct": 5.0},
    "sigma10": {**_QUIET, "sigma_pct": 10.0},
    "sigma20": {**_QUIET, "sigma_pct": 20.0},
    "bias+10": {**_QUIET, "sigma_pct": 10.0, "bias_pct": 10.0},
    "bias-10": {**_QUIET, "sigma_pct": 10.0, "bias_pct": -10.0},
    "late1h": {**_QUIET, "sigma_pct": 10.0, "offset": "1h"},
    "tod": {**_QUIET, "sigma_pct": 10.0, "time_of_day_pct": 10.0, "time_of_day_peak": 15.0},
}
AS_IS = "as-is"
UK = "UK"


def has_caution() -> bool:
    return "caution" in {f.name for f in dataclasses.fields(Policy)}


def policy(strategy: str, max_delay: str, caution: float | None) -> Policy:
    options: dict[str, Any] = {"max_delay": max_delay, "strategy": strategy}
    if caution is not None:
        options["caution"] = caution
    return Policy(**options)


def load(zone: str, path: str, days: int | None) -> Forecast:
    trace: Forecast = read_trace(path) if zone == UK else read_actuals(Path(path))
    if days is not None:
        per_day = round(86400 / trace.slots[0].duration.total_seconds())
        trace = Forecast(trace.slots[: days * per_day], provider=trace.provider)
    return trace


def cell(
    zone: str,
    path: str,
    model: str,
    days: int | None,
    max_delay: str,
    caution: float | None,
    seed: int,
) -> dict[str, Any]:
    """One zone under one error model: both strategies' figures."""
    trace = load(zone, path, days)
    if model != AS_IS:
        trace = synthesize(trace, ErrorModel(seed=seed, **MODELS[model]))
    out: dict[str, Any] = {"zone": zone, "model": model}
    for s in STRATEGIES:
        r: Replay = replay(trace, policy(s, max_delay, caution))
        out[s] = {
            "capture_pct": round(r.oracle_capture_pct, 3),
            "reduction_pct": round(r.reduction_pct, 3),
            "mean_delay_h": round(r.mean_delay_h, 4),
            "regressions": r.regressions,
            "scenarios": r.scenarios,
        }
    ours, theirs = out["calibrated"], out["lowest"]
    out["pareto"] = (
        ours["capture_pct"] >= theirs["capture_pct"]
        and ours["mean_delay_h"] <= theirs["mean_delay_h"]
    )
    return out


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    if not cells:
        return {"cells": 0}
    diff = [c["calibrated"]["capture_pct"] - c["lowest"]["capture_pct"] for c in cells]
    ours = statistics.fmean(c["calibrated"]["mean_delay_h"] for c in cells)
    theirs = statistics.fmean(c["lowest"]["mean_delay_h"] for c in cells)
    return {
        "cells": len(cells),
        "pareto_better": sum(c["pareto"] for c in cells),
        "mean_capture_difference_points": round(statistics.fmean(diff), 2),
        "min_capture_difference_points": round(min(diff), 2),
        "mean_delay_h": {"calibrated": round(ours, 3), "lowest": round(theirs, 3)},
        "delay_ratio": round(ours / theirs, 3) if theirs > 0 else None,
        "regressions": {s: sum(c[s]["regressions"] for c in cells) for s in STRATEGIES},
    }


def print_table(cells: list[dict[str, Any]]) -> None:
    head = (
        f"{'zone':<18}{'model':<9}"
        f"{'capture % (low/def)':>21}{'reduction %':>15}{'delay h':>13}{'regressions':>15}  pareto"
    )
    print(head)
    print("-" * len(head))
    for c in cells:
        lo, de = c["lowest"], c["calibrated"]
        print(
            f"{c['zone']:<18}{c['model']:<9}"
            f"{lo['capture_pct']:>11.1f}/{de['capture_pct']:<9.1f}"
            f"{lo['reduction_pct']:>7.2f}/{de['reduction_pct']:<7.2f}"
            f"{lo['mean_delay_h']:>6.2f}/{de['mean_delay_h']:<6.2f}"
            f"{lo['regressions']:>7}/{de['regressions']:<7}  {'yes' if c['pareto'] else 'NO'}"
        )


def print_markdown(cells: list[dict[str, Any]], parts: dict[str, dict[str, Any]]) -> None:
    """The table and the per-model summary as Markdown (for docs/benchmarks.md)."""
    print(
        "| zone | errors | capture % lowest / default | reduction % | mean delay h "
        "| regressions | Pareto-better |"
    )
    print("|---|---|---:|---:|---:|---:|:---:|")
    for c in cells:
        lo, de = c["lowest"], c["calibrated"]
        print(
            f"| {c['zone']} | {c['model']} | {lo['capture_pct']:.1f} / {de['capture_pct']:.1f} "
            f"| {lo['reduction_pct']:.2f} / {de['reduction_pct']:.2f} "
            f"| {lo['mean_delay_h']:.2f} / {de['mean_delay_h']:.2f} "
            f"| {lo['regressions']:,} / {de['regressions']:,} | {'yes' if c['pareto'] else '**no**'} |"
        )
    print()
    print(
        "| errors | Pareto-better cells | capture difference, mean (worst), points "
        "| delay ratio default / lowest |"
    )
    print("|---|---:|---:|---:|")
    for name, s in parts.items():
        print(
            f"| {name} | {s['pareto_better']}/{s['cells']} "
            f"| {s['mean_capture_difference_points']:+.2f} ({s['min_capture_difference_points']:+.2f}) "
            f"| {s['delay_ratio']} |"
        )


def print_summary(title: str, s: dict[str, Any]) -> None:
    if not s["cells"]:
        return
    print(
        f"{title}: Pareto-better in {s['pareto_better']}/{s['cells']} cells; capture "
        f"{s['mean_capture_difference_points']:+.2f} points on average (worst "
        f"{s['min_capture_difference_points']:+.2f}); mean delay {s['mean_delay_h']['calibrated']:.2f} h "
        f"vs {s['mean_delay_h']['lowest']:.2f} h (ratio {s['delay_ratio']}); regressions "
        f"{s['regressions']['calibrated']:,} vs {s['regressions']['lowest']:,}"
    )


def main(argv: list[str] | None = None) -> int:
    default = Path(os.environ.get("ECOASYNC_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default, help=f"default {default}")
    parser.add_argument("--regions", type=Path, help="default DATA/regions")
    parser.add_argument("--uk", type=Path, help="default DATA/benchmark_trace.csv ('' to skip)")
    parser.add_argument("--zones", help="comma-separated file stems (DE_2022,...); default all")
    parser.add_argument("--models", help=f"comma-separated; default all: {','.join(MODELS)}")
    parser.add_argument("--days", type=int, help="the first N days of each trace (default all)")
    parser.add_argument("--max-delay", default="4h")
    parser.add_argument("--caution", type=float, help="Policy(caution=X), where Policy has it")
    parser.add_argument("--jobs", type=int, default=2, help="cells at a time (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="the error models' seed (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.caution is not None and not has_caution():
        print("robustness: --caution needs a Policy with a caution field", file=sys.stderr)
        return 2
    if args.days is not None and args.days < 2:
        print(f"robustness: --days must be at least 2, got {args.days}", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"robustness: unknown model(s) {unknown}; pick from {list(MODELS)}", file=sys.stderr)
        return 2
    regions = args.regions or args.data / "regions"
    uk = args.uk if args.uk is not None else args.data / "benchmark_trace.csv"
    zones = sorted(p.stem for p in regions.glob("*.csv")) if regions.is_dir() else []
    if args.zones:
        wanted = args.zones.split(",")
        zones = [z for z in zones if z in wanted]
    tasks: list[tuple[str, str, str]] = [
        (z, str(regions / f"{z}.csv"), m) for z in zones for m in models
    ]
    if str(uk) and uk.is_file():
        tasks += [(UK, str(uk), m) for m in [AS_IS, *models]]
    if not tasks:
        print(f"robustness: no traces under {regions} or at {uk}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    common = (args.days, args.max_delay, args.caution, args.seed)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(cell, z, p, m, *common) for z, p, m in tasks]
            cells = [f.result() for f in futures]
    else:
        cells = [cell(z, p, m, *common) for z, p, m in tasks]
    took = time.perf_counter() - began
    print(
        f"max_delay {args.max_delay}, {'all' if args.days is None else args.days} days per trace, "
        f"seed {args.seed}, caution {args.caution if args.caution is not None else 'default'}; "
        "figures: lowest/default"
    )
    synthetic = [c for c in cells if c["model"] != AS_IS]
    total = summary(cells)
    parts = {"all": total, "synthetic": summary(synthetic)}
    for m in [AS_IS, *models]:
        parts[m] = summary([c for c in cells if c["model"] == m])
    if args.markdown:
        print_markdown(cells, {k: v for k, v in parts.items() if v["cells"]})
    else:
        print_table(cells)
    print()
    print_summary("all cells", total)
    print_summary("synthetic forecasts", parts["synthetic"])
    print(f"({len(cells)} cells, {2 * len(cells)} replays in {took:.0f} s, {args.jobs} jobs)")
    out = {
        "max_delay": args.max_delay,
        "days": args.days,
        "seed": args.seed,
        "caution": args.caution,
        "models": MODELS,
        "cells": cells,
        "summary": total,
        "by_model": {k: v for k, v in parts.items() if k not in ("all",)},
        "seconds": round(took, 1),
    }
    path = write_json("robustness", out, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
