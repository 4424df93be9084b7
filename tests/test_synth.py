"""``ecoasync trace synth``: the seeded forecast error model, its statistics, its checks, and the
command line as a real subprocess (on small CSV files written here, never the shared data)."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import PolicyError
from ecoasync._cli.trace import HEADER
from ecoasync._forecast import Forecast, Slot
from ecoasync._synth import UK_ERRORS, ErrorModel, measure, synthesize
from ecoasync.providers import read_trace

START = datetime(2025, 3, 1, tzinfo=UTC)


def grid(days: int, *, slot: timedelta = timedelta(hours=1)) -> Forecast:
    """A made-up grid of actuals (a daily cycle, weather and a slow swing, mean about 300 g; no
    randomness)."""
    n = int(days * timedelta(days=1) / slot)
    slots = []
    for i in range(n):
        at = START + i * slot
        hours = (at - START) / timedelta(hours=1)
        value = (
            300
            + 60 * math.sin(2 * math.pi * hours / 24)
            + 25 * math.sin(2 * math.pi * hours / 12 + 1)  # a daily shape that is no sinusoid
            + 30 * math.sin(hours / 50)
            + 20 * math.sin(hours / 3.3)  # weather
        )
        slots.append(Slot(at, at + slot, value, value))
    return Forecast(slots)


def errors(trace: Forecast) -> list[float]:
    return [s.forecast - s.actual for s in trace if s.actual is not None]


def lag_one(values: list[float]) -> float:
    mean = statistics.fmean(values)
    c = [v - mean for v in values]
    return sum(a * b for a, b in itertools.pairwise(c)) / sum(v * v for v in c)


def mean_actual(trace: Forecast) -> float:
    return statistics.fmean(s.actual for s in trace if s.actual is not None)


QUIET = {"bias_pct": 0.0, "offset": "0", "time_of_day_pct": 0.0}  # the AR(1) error alone


def test_a_seed_gives_the_same_forecast_and_another_seed_another() -> None:
    actuals = grid(5)
    one = synthesize(actuals, ErrorModel(seed=7))
    assert [s.forecast for s in one] == [
        s.forecast for s in synthesize(actuals, ErrorModel(seed=7))
    ]
    assert [s.forecast for s in one] != [
        s.forecast for s in synthesize(actuals, ErrorModel(seed=8))
    ]
    # the slots and actuals are kept
    assert [(s.start, s.end, s.actual) for s in one] == [
        (s.start, s.end, s.actual) for s in actuals
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_random_error_has_the_spread_and_correlation_asked_for(seed: int) -> None:
    actuals = grid(300)
    model = ErrorModel(sigma_pct=10.0, rho=0.6, seed=seed, **QUIET)  # type: ignore[arg-type]
    e = errors(synthesize(actuals, model))
    mean = mean_actual(actuals)
    assert statistics.pstdev(e) == pytest.approx(0.10 * mean, rel=0.06)
    assert lag_one(e) == pytest.approx(0.6, abs=0.04)
    assert abs(statistics.fmean(e)) < 0.015 * mean


def test_rho_is_per_hour_so_half_hours_are_more_alike() -> None:
    actuals = grid(150, slot=timedelta(minutes=30))
    e = errors(synthesize(actuals, ErrorModel(sigma_pct=8.0, rho=0.49, seed=3, **QUIET)))  # type: ignore[arg-type]
    assert lag_one(e) == pytest.approx(0.7, abs=0.04)  # sqrt(0.49) per half-hour
    assert lag_one(e[::2]) == pytest.approx(0.49, abs=0.05)  # one hour apart


def test_bias_is_a_share_of_the_mean() -> None:
    actuals = grid(10)
    e = errors(synthesize(actuals, ErrorModel(sigma_pct=0.0, bias_pct=-10.0, offset="0")))
    assert e == pytest.approx([-0.10 * mean_actual(actuals) + tod for tod in _tod(actuals)])


def _tod(
    trace: Forecast,
    amp_pct: float = UK_ERRORS.time_of_day_pct,
    peak: float = UK_ERRORS.time_of_day_peak,
) -> list[float]:
    mean = mean_actual(trace)
    return [
        amp_pct
        / 100
        * mean
        * math.cos(2 * math.pi * (s.start.hour + s.start.minute / 60 - peak) / 24)
        for s in trace
    ]


def test_the_offset_reads_the_actual_that_much_earlier_or_later() -> None:
    actuals = grid(3)
    a = [s.forecast for s in actuals]  # (grid() sets the forecast to the actual)
    late = synthesize(
        actuals, ErrorModel(sigma_pct=0.0, offset="1h", bias_pct=0, time_of_day_pct=0)
    )
    assert [s.forecast for s in late][1:] == pytest.approx(a[:-1])
    assert late.slots[0].forecast == pytest.approx(a[0])  # held at the trace's start
    early = synthesize(
        actuals, ErrorModel(sigma_pct=0.0, offset="-30m", bias_pct=0, time_of_day_pct=0)
    )
    mid = [(x + y) / 2 for x, y in itertools.pairwise(a)]
    assert [s.forecast for s in early][:-1] == pytest.approx(mid)


def test_the_time_of_day_error_peaks_at_its_hour_with_its_amplitude() -> None:
    actuals = grid(4)
    made = synthesize(
        actuals,
        ErrorModel(
            sigma_pct=0.0, bias_pct=0.0, offset="0", time_of_day_pct=5.0, time_of_day_peak=14
        ),
    )
    mean = mean_actual(actuals)
    by_hour = {s.start.hour: s.forecast - (s.actual or 0) for s in made}
    assert by_hour[14] == pytest.approx(0.05 * mean)
    assert by_hour[2] == pytest.approx(-0.05 * mean)
    assert by_hour[8] == pytest.approx(0.0, abs=1e-9)
    assert statistics.fmean(errors(made)) == pytest.approx(0.0, abs=1e-9)


def test_measure_gives_every_parameter_back() -> None:
    actuals = grid(200)
    model = ErrorModel(
        sigma_pct=6.0,
        rho=0.5,
        bias_pct=4.0,
        offset="1h30m",
        time_of_day_pct=3.0,
        time_of_day_peak=9.0,
        seed=11,
    )
    got = measure(synthesize(actuals, model))
    assert got.sigma_pct == pytest.approx(6.0, rel=0.08)
    assert got.rho == pytest.approx(0.5, abs=0.05)
    assert got.bias_pct == pytest.approx(4.0, abs=0.5)
    assert abs(got.lag - timedelta(minutes=90)) <= timedelta(minutes=6)
    assert got.time_of_day_pct == pytest.approx(3.0, abs=0.4)
    assert got.time_of_day_peak == pytest.approx(9.0, abs=0.6)


def test_the_defaults_are_the_uk_measurement() -> None:
    assert ErrorModel() == UK_ERRORS
    assert UK_ERRORS.to_json() == {
        "sigma_pct": 7.35,
        "rho": 0.43,
        "bias_pct": 1.32,
        "offset": "42m",
        "offset_minutes": 42.0,
        "time_of_day_pct": 0.54,
        "time_of_day_peak": 21.0,
        "seed": 0,
    }


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("sigma_pct", -1.0, "from 0 to 100"),
        ("sigma_pct", float("nan"), "sigma_pct must be a number"),
        ("sigma_pct", True, "sigma_pct must be a number"),
        ("rho", 1.0, "0 <= rho < 1"),
        ("rho", -0.2, "0 <= rho < 1"),
        ("rho", "0.5", "rho must be a number"),
        ("bias_pct", 150.0, "from -100 to 100"),
        ("offset", 3, "write '3h' or '3m'"),
        ("offset", "2d", "within 24h"),
        ("offset", "soon", "offset must be a duration"),
        ("time_of_day_pct", -3.0, "from 0 to 100"),
        ("time_of_day_peak", 24, "0 <= h < 24"),
        ("seed", 1.5, "seed must be a whole number"),
        ("seed", False, "seed must be a whole number"),
    ],
)
def test_a_bad_parameter_is_refused_naming_its_field(field: str, value: object, says: str) -> None:
    with pytest.raises(PolicyError, match=field) as info:
        ErrorModel(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field
    assert says in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    sigma=st.floats(0, 100),
    rho=st.floats(0, 0.999),
    bias=st.floats(-100, 100),
    minutes=st.integers(-24 * 60, 24 * 60),
    tod=st.floats(0, 100),
    peak=st.floats(0, 23.99),
    seed=st.integers(0, 2**32),
    half_hours=st.booleans(),
)
def test_any_valid_model_keeps_the_slots_and_makes_a_usable_forecast(
    sigma: float,
    rho: float,
    bias: float,
    minutes: int,
    tod: float,
    peak: float,
    seed: int,
    half_hours: bool,
) -> None:
    actuals = grid(2, slot=timedelta(minutes=30 if half_hours else 60))
    model = ErrorModel(sigma, rho, bias, timedelta(minutes=minutes), tod, peak, seed)
    made = synthesize(actuals, model)
    assert [(s.start, s.end, s.actual) for s in made] == [
        (s.start, s.end, s.actual) for s in actuals
    ]
    assert all(math.isfinite(s.forecast) and s.forecast >= 0 for s in made)
    assert [s.forecast for s in made] == [s.forecast for s in synthesize(actuals, model)]


def test_a_trace_with_a_gap_or_without_actuals_is_refused() -> None:
    slots = grid(2).slots
    with pytest.raises(ValueError, match="no gaps"):
        synthesize(Forecast(slots[:10] + slots[11:]))
    bare = [Slot(s.start, s.end, s.forecast) for s in slots]
    with pytest.raises(ValueError, match="needs an actual"):
        synthesize(Forecast(bare))


# -- the command line, as a subprocess ---------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoasync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_actuals(path: Path, days: int) -> None:
    """A CSV of actuals in the regions' format (from,to,intensity_actual), hourly."""
    lines = ["from,to,intensity_actual"]
    for s in grid(days):
        lines.append(f"{s.start:%Y-%m-%dT%H:%M}Z,{s.end:%Y-%m-%dT%H:%M}Z,{s.actual:.2f}")
    path.write_text("\n".join(lines) + "\n")


def test_synth_writes_a_trace_that_simulate_replays(tmp_path: Path) -> None:
    src, out = tmp_path / "actuals.csv", tmp_path / "trace.csv"
    write_actuals(src, 6)
    done = cli("trace", "synth", str(src), "--out", str(out), "--sigma", "10%", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "wrote 144 rows" in done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 145
    trace = read_trace(out)
    assert trace.contiguous and len(trace) == 144
    assert [round(s.actual or 0, 2) for s in trace] == [round(s.actual or 0, 2) for s in grid(6)]
    again = tmp_path / "again.csv"
    assert (
        cli(
            "trace", "synth", str(src), "--out", str(again), "--sigma", "10", "--seed", "3"
        ).returncode
        == 0
    )
    assert again.read_text() == out.read_text()  # seeded
    for policy in ("calibrated", "lowest"):
        ran = cli("simulate", "--trace", str(out), "--json", "--policy", policy)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["days"] == 5


def test_synth_reads_a_half_hourly_trace_and_replaces_its_forecast(tmp_path: Path) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    lines = [HEADER]
    for s in grid(3, slot=timedelta(minutes=30)):
        lines.append(f"{s.start:%Y-%m-%dT%H:%M}Z,{s.end:%Y-%m-%dT%H:%M}Z,1,{s.actual:.1f},low")
    src.write_text("\n".join(lines) + "\n")
    done = cli("trace", "synth", str(src), "--out", str(out), "--offset=-30m", "--rho", "0")
    assert done.returncode == 0, done.stderr
    trace = read_trace(out)
    assert len(trace) == 144 and all(s.forecast > 100 for s in trace)
    measured = cli("trace", "errors", str(out), "--json")
    assert measured.returncode == 0, measured.stderr
    assert json.loads(measured.stdout)["offset_minutes"] < 0  # early


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--rho", "1.5"], "--rho: rho must be"),
        (["--sigma", "-4"], "--sigma: sigma_pct must be"),
        (["--offset", "3"], "--offset: offset must be a duration"),
        (["--time-of-day-peak", "25"], "--time-of-day-peak: time_of_day_peak must be"),
    ],
)
def test_synth_refuses_a_bad_flag_naming_it(tmp_path: Path, flags: list[str], says: str) -> None:
    src = tmp_path / "actuals.csv"
    write_actuals(src, 2)
    done = cli("trace", "synth", str(src), "--out", str(tmp_path / "o.csv"), *flags)
    assert done.returncode == 2
    assert says in done.stderr
    assert not (tmp_path / "o.csv").exists()


def test_synth_names_the_bad_row_of_its_input(tmp_path: Path) -> None:
    src = tmp_path / "actuals.csv"
    src.write_text("from,to,intensity_actual\n2025-01-01T00:00Z,2025-01-01T01:00Z,oops\n")
    done = cli("trace", "synth", str(src), "--out", str(tmp_path / "o.csv"))
    assert done.returncode == 2
    assert "actuals.csv:2: bad row" in done.stderr


def test_synth_says_when_it_cannot_write(tmp_path: Path) -> None:
    src = tmp_path / "actuals.csv"
    write_actuals(src, 2)
    done = cli("trace", "synth", str(src), "--out", str(tmp_path / "no" / "such" / "o.csv"))
    assert done.returncode == 2
    assert "cannot write" in done.stderr and "Traceback" not in done.stderr
