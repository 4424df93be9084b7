"""Where and when, on a year of real multi-region data: temporal, spatial and both side by side.

    python bench/where_and_when.py [REGIONS_DIR] [--max-delay 4h] [--strategy calibrated]
        [--sigma 10] [--rho 0.8] [--bias 0] [--offset 0m] [--time-of-day 0] [--seed 0] [--out PATH]

REGIONS_DIR defaults to $ECOASYNC_SHARED_DATA/regions (../shared/data/regions): a year of
hourly Electricity Maps actuals per zone (life-cycle, location-based averages), read, never
copied. Sets of zones of the same year: 2022 (SE-SE3, FR, DE, PL, NL, IE, US-CAL-CISO) and
2023 (DE, FR, US-CAL-CISO, US-MIDA-PJM), home DE; and two without a dominant clean grid:
2022 DE, NL, IE, PL (home DE) and 2023 US-MIDA-PJM, US-CAL-CISO (home US-MIDA-PJM). The files hold actuals only; each gets a forecast
from ``ecoasync trace synth``'s error model (``ecoasync._synth``): by default on time, with a
seeded AR(1) error of 10 % of the zone's mean and correlation 0.8 one hour apart (so every
route's planner reads a forecast that errs, never the actuals). Every slot of every complete day, one job is submitted at home;
``temporal`` plans it at home, ``spatial`` sends it at once to the lowest forecast, ``both``
plans the pair (route, start). Each is charged the actual intensity where and when it ran.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _common import write_json

from ecoasync import Forecast, Policy
from ecoasync._cli._trace_synth import read_actuals
from ecoasync._simulate_routes import MODES, RoutedReplay, replay_routes
from ecoasync._synth import ErrorModel, synthesize

ROOT = Path(__file__).resolve().parent.parent
SETS = {  # name: (year, zones, home)
    "2022": ("2022", ("DE", "SE-SE3", "FR", "PL", "NL", "IE", "US-CAL-CISO"), "DE"),
    "2023": ("2023", ("DE", "FR", "US-CAL-CISO", "US-MIDA-PJM"), "DE"),
    # no dominant clean grid among the routes: where and when both matter
    "2022 DE/NL/IE/PL": ("2022", ("DE", "NL", "IE", "PL"), "DE"),
    "2023 US": ("2023", ("US-MIDA-PJM", "US-CAL-CISO"), "US-MIDA-PJM"),
}
ROWS = (
    ("baseline g (at once, home)", "baseline_g", "{:.3f}"),
    ("scheduled g", "scheduled_g", "{:.3f}"),
    ("oracle g", "oracle_g", "{:.3f}"),
    ("reduction %", "reduction_pct", "{:.2f}"),
    ("oracle savings %", "oracle_capture_pct", "{:.1f}"),
    ("mean delay h", "mean_delay_h", "{:.2f}"),
    ("regressions", "regressions", "{:,}"),
)


def with_forecast(path: Path, model: ErrorModel) -> Forecast:
    """The file's actuals, and the forecast ``ecoasync trace synth`` makes of them under
    ``model`` (seeded)."""
    trace = synthesize(read_actuals(path), model)
    zone = path.stem.rsplit("_", 1)[0]
    return Forecast(trace.slots, provider=f"csv:{path.name}", zone=zone)


def figures(result: RoutedReplay) -> dict[str, Any]:
    out = result.to_json()
    out.pop("daily")
    return out


def table(title: str, results: Mapping[str, RoutedReplay]) -> None:
    print(title)
    print(f"  {'':<28}" + "".join(f"{mode:>14}" for mode in MODES))
    for label, key, fmt in ROWS:
        cells = "".join(f"{fmt.format(getattr(results[m].figures, key)):>14}" for m in MODES)
        print(f"  {label:<28}{cells}")
    shares = ", ".join(
        f"{name} {100 * n / results['both'].figures.scenarios:.1f} %"
        for name, n in sorted(results["both"].jobs.items(), key=lambda kv: -kv[1])
        if n
    )
    print(f"  jobs per route (both): {shares}")
    print()


def main() -> None:
    default = Path(os.environ.get("ECOASYNC_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regions", nargs="?", default=str(default / "regions"))
    parser.add_argument("--max-delay", default="4h")
    parser.add_argument("--strategy", default="calibrated", choices=("calibrated", "lowest"))
    parser.add_argument("--energy-kwh", type=float, default=0.0005)
    # trace synth's error model: an on-time forecast with an AR(1) error of 10 % of the mean
    parser.add_argument("--sigma", type=float, default=10.0, help="%% of the mean (10)")
    parser.add_argument("--rho", type=float, default=0.8, help="one hour apart (0.8)")
    parser.add_argument("--bias", type=float, default=0.0, help="%% of the mean (0)")
    parser.add_argument("--offset", default="0m", help="how late the forecast runs (0m)")
    parser.add_argument("--time-of-day", type=float, default=0.0, help="%% of the mean (0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    policy = Policy(max_delay=args.max_delay, strategy=args.strategy)
    model = ErrorModel(
        sigma_pct=args.sigma,
        rho=args.rho,
        bias_pct=args.bias,
        offset=args.offset,
        time_of_day_pct=args.time_of_day,
        seed=args.seed,
    )
    out: dict[str, Any] = {
        "max_delay": args.max_delay,
        "strategy": args.strategy,
        "forecast": model.to_json(),
        "basis": "location-based average, life-cycle (Electricity Maps actuals)",
        "sets": {},
    }
    for name, (year, zones, home) in SETS.items():
        traces = {
            zone: with_forecast(
                Path(args.regions) / f"{zone}_{year}.csv", model.evolve(seed=args.seed + k)
            )
            for k, zone in enumerate(zones)
        }
        results: dict[str, RoutedReplay] = {}
        seconds = {}
        for mode in MODES:
            began = time.perf_counter()
            results[mode] = replay_routes(
                traces, policy, home=home, mode=mode, energy_kwh=args.energy_kwh
            )
            seconds[mode] = round(time.perf_counter() - began, 2)
        table(
            f"{name}: {', '.join(zones)} (home {home}), max_delay {args.max_delay}, "
            f"strategy {args.strategy}, {results['both'].figures.scenarios:,} jobs",
            results,
        )
        out["sets"][name] = {
            "year": year,
            "home": home,
            "zones": list(zones),
            "modes": {m: figures(r) for m, r in results.items()},
            "seconds": seconds,
        }
    path = write_json("where_and_when", out, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
