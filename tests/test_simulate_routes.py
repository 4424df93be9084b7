"""The multi-trace replay: one route is today's replay bit for bit, identical routes make
``both`` equal ``temporal``, and traces that do not line up are refused clearly."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import Forecast, Policy
from ecoasync._simulate import SimulationError, replay
from ecoasync._simulate_routes import Mode, replay_routes
from ecoasync._synth import synthetic_trace


def renamed(trace: Forecast, zone: str) -> Forecast:
    return trace.with_source(zone=zone)


@settings(max_examples=8, deadline=None)
@given(
    st.integers(0, 10_000), st.sampled_from(["lowest", "calibrated"]), st.sampled_from(["2h", "6h"])
)
def test_one_route_is_todays_replay_bit_for_bit(seed: int, strategy: str, delay: str) -> None:
    trace = synthetic_trace(3, seed=seed)
    policy = Policy(max_delay=delay, strategy=strategy)  # type: ignore[arg-type]
    today = replay(trace, policy)
    modes: tuple[Mode, ...] = ("temporal", "both")
    for mode in modes:
        routed = replay_routes({"home": trace}, policy, mode=mode)
        assert routed.figures == today  # every float, every delay, every day
        assert routed.jobs == {"home": today.scenarios}


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["lowest", "calibrated"]))
def test_identical_routes_make_both_equal_temporal(seed: int, strategy: str) -> None:
    trace = synthetic_trace(3, seed=seed)
    policy = Policy(max_delay="4h", strategy=strategy)  # type: ignore[arg-type]
    traces = {name: renamed(trace, name) for name in ("a", "b", "c")}
    temporal = replay_routes(traces, policy, home="b", mode="temporal")
    both = replay_routes(traces, policy, home="b", mode="both")
    assert both.figures == temporal.figures
    assert both.jobs == {"b": both.figures.scenarios, "a": 0, "c": 0}  # ties stay home


def test_spatial_and_both_use_the_greener_route() -> None:
    dirty = synthetic_trace(4, seed=1)
    clean = Forecast(
        [
            type(s)(s.start, s.end, s.forecast / 4, (s.actual or 0) / 4)
            for s in synthetic_trace(4, seed=2)
        ],
        zone="clean",
    )
    policy = Policy(max_delay="4h", strategy="lowest")
    spatial = replay_routes({"dirty": dirty, "clean": clean}, policy, mode="spatial")
    both = replay_routes({"dirty": dirty, "clean": clean}, policy, mode="both")
    temporal = replay_routes({"dirty": dirty, "clean": clean}, policy, mode="temporal")
    assert spatial.figures.baseline_g == both.figures.baseline_g == temporal.figures.baseline_g
    assert spatial.figures.mean_delay_h == 0 and spatial.figures.regressions == 0
    assert both.figures.scheduled_g <= spatial.figures.scheduled_g * 1.05
    assert spatial.figures.scheduled_g < temporal.figures.scheduled_g / 2
    assert spatial.jobs["clean"] > 0.9 * spatial.figures.scenarios
    assert (
        both.figures.oracle_g <= spatial.figures.oracle_g
        and both.figures.oracle_g <= temporal.figures.oracle_g
    )
    out = both.to_json()
    assert set(out) >= {
        "scenarios",
        "baseline_g",
        "scheduled_g",
        "oracle_g",
        "oracle_capture_pct",
        "reduction_pct",
        "mean_delay_h",
        "regressions",
    }
    assert out["routes"]["clean"]["jobs"] == both.jobs["clean"] and out["mode"] == "both"
    assert "location-based" in out["basis"]


def test_traces_that_do_not_line_up_are_refused() -> None:
    a = synthetic_trace(3, seed=1)
    later = synthetic_trace(3, seed=1, start=a[0].start + timedelta(days=1))
    with pytest.raises(SimulationError, match="cover different time ranges"):
        replay_routes({"a": a, "b": later}, Policy(max_delay="4h"))
    hourly = synthetic_trace(3, seed=1, slot=timedelta(hours=1))
    with pytest.raises(SimulationError, match="different slot lengths"):
        replay_routes({"a": a, "b": hourly}, Policy(max_delay="4h"))
    with pytest.raises(SimulationError, match="home 'z'"):
        replay_routes({"a": a}, Policy(max_delay="4h"), home="z")
    with pytest.raises(SimulationError, match="mode"):
        replay_routes({"a": a}, Policy(max_delay="4h"), mode="sideways")  # type: ignore[arg-type]


def write(path: Path, trace: Forecast) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["from", "to", "intensity_forecast", "intensity_actual"])
        for s in trace:
            out.writerow(
                [f"{s.start:%Y-%m-%dT%H:%MZ}", f"{s.end:%Y-%m-%dT%H:%MZ}", s.forecast, s.actual]
            )
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoasync", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_simulates_several_traces(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", synthetic_trace(2, seed=1))
    b = write(tmp_path / "b.csv", synthetic_trace(2, seed=5))
    out = cli("--trace", f"de={a}", "--trace", f"se={b}", "--home", "de", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["mode"] == "both" and payload["home"] == "de"
    assert sum(r["jobs"] for r in payload["routes"].values()) == payload["scenarios"]
    single = json.loads(cli("--trace", str(a), "--json").stdout)
    assert "routes" not in single  # one unnamed trace: today's output, unchanged
    named = json.loads(cli("--trace", f"de={a}", "--json").stdout)
    assert {k: named[k] for k in single} == single  # one route: today's figures
    text = cli("--trace", f"de={a}", "--trace", f"se={b}", "--mode", "spatial")
    assert text.returncode == 0 and "jobs per route" in text.stdout and "spatial" in text.stdout
    bad = cli("--trace", f"de={a}", "--trace", str(b))
    assert bad.returncode == 2 and "name each" in bad.stderr
    short = write(tmp_path / "c.csv", synthetic_trace(3, seed=1))
    mismatch = cli("--trace", f"de={a}", "--trace", f"se={short}")
    assert mismatch.returncode == 2 and "different time ranges" in mismatch.stderr
