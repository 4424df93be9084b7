"""The replay engine and ``ecoasync simulate``: hand-made traces with answers known by hand,
hypothesis properties, the CLI as a subprocess, and the shared benchmark trace."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import Forecast, Policy, Slot, SlotLedger
from ecoasync._calibrate import LOOKBACK, MAX_SHIFT
from ecoasync._simulate import (
    SimulationError,
    _inputs,
    _prepare,
    replay,
    replay_herd,
    scenario_days,
)
from ecoasync._synth import synthetic_trace

D0 = datetime(2026, 3, 18, tzinfo=UTC)
HALF = timedelta(minutes=30)
E = 0.001


def trace_of(forecast: list[float], actual: list[float], start: datetime = D0) -> Forecast:
    return Forecast(
        [
            Slot(start + i * HALF, start + (i + 1) * HALF, f, a)
            for i, (f, a) in enumerate(zip(forecast, actual, strict=True))
        ]
    )


def flat(n: int = 50, value: float = 100.0) -> list[float]:
    return [value] * n


def write_csv(path: Path, trace: Forecast) -> Path:
    rows = ["from,to,intensity_forecast,intensity_actual"]
    rows += [
        f"{s.start:%Y-%m-%dT%H:%MZ},{s.end:%Y-%m-%dT%H:%MZ},{s.forecast:g},{s.actual:g}"
        for s in trace
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_known_dip_is_found_by_planner_and_oracle() -> None:
    # one day and one hour of look-ahead; a dip to 40 at slot 10 (05:00)
    values = flat()
    values[10] = 40
    r = replay(trace_of(values, values), Policy(max_delay="1h", strategy="lowest"), energy_kwh=E)
    assert (r.scenarios, r.days) == (48, 1)
    assert r.baseline_g == pytest.approx((47 * 100 + 40) * E)
    # the jobs submitted at 04:00 and 04:30 wait for 05:00
    assert r.scheduled_g == pytest.approx((45 * 100 + 3 * 40) * E)
    assert r.oracle_g == pytest.approx(r.scheduled_g)
    assert r.oracle_capture_pct == pytest.approx(100.0)
    assert r.mean_delay_h == pytest.approx(1.5 / 48)
    assert r.median_delay_h == 0
    assert r.regressions == 0
    assert [d.date for d in r.daily] == ["2026-03-18"]
    assert r.daily[0].reduction_pct == pytest.approx(r.reduction_pct)


def test_a_wrong_forecast_causes_regressions_the_oracle_avoids() -> None:
    forecast, actual = flat(), flat()
    forecast[10] = 40  # the forecast promises a dip at 05:00 ...
    actual[10] = 150  # ... that turns out dirtier
    actual[11] = 40  # and the real dip comes half an hour later
    r = replay(trace_of(forecast, actual), Policy(max_delay="1h", strategy="lowest"), energy_kwh=E)
    assert r.regressions == 2  # submitted at 04:00 and 04:30, ran at 05:00
    assert r.baseline_g == pytest.approx((46 * 100 + 150 + 40) * E)
    assert r.scheduled_g == pytest.approx((44 * 100 + 3 * 150 + 40) * E)
    # oracle: 04:30, 05:00 and 05:30 reach 05:30 (40); 04:00 stays at 100
    assert r.oracle_g == pytest.approx((45 * 100 + 3 * 40) * E)
    assert r.oracle_capture_pct < 0


def test_deadline_is_inclusive_and_ties_go_to_the_earliest() -> None:
    values = flat()
    values[12] = values[14] = 50
    r = replay(trace_of(values, values), Policy(max_delay="1h", strategy="lowest"), energy_kwh=E)
    # 05:00 reaches 06:00 exactly at its deadline; 06:00 runs at once (tie with 07:00)
    assert r.delays_h[10] == pytest.approx(1.0)
    assert r.delays_h[12] == 0
    assert r.delays_h[13] == pytest.approx(0.5)


def test_only_complete_days_with_their_look_ahead_are_replayed() -> None:
    # starts at 23:30 the day before, ends one hour into the second day
    start = D0 - HALF
    n = 1 + 48 + 48 + 2
    trace = trace_of(flat(n), flat(n), start=start)
    assert [d.isoformat() for d in scenario_days(trace, "1h")] == ["2026-03-18", "2026-03-19"]
    assert [d.isoformat() for d in scenario_days(trace, "2h")] == ["2026-03-18"]
    with pytest.raises(SimulationError, match="no complete UTC day"):
        scenario_days(trace_of(flat(40), flat(40)), "1h")
    with pytest.raises(SimulationError, match="empty"):
        replay(Forecast([]), Policy(max_delay="1h"))


def test_a_day_with_a_missing_actual_is_skipped() -> None:
    n = 48 * 2 + 2
    trace = Forecast(
        [Slot(D0 + i * HALF, D0 + (i + 1) * HALF, 100, None if i == 5 else 100) for i in range(n)]
    )
    assert [d.isoformat() for d in scenario_days(trace, "1h")] == ["2026-03-19"]


def _days_by_lookup(trace: Forecast, per_day: int, ahead: int) -> tuple[list[int], list[str]]:
    """The replayed slots and days as the simulator first found them: every start of a day and
    its look-ahead looked up, each slot checked."""
    index = {s.start: i for i, s in enumerate(trace)}
    day = datetime(trace[0].start.year, trace[0].start.month, trace[0].start.day, tzinfo=UTC)
    if day < trace[0].start:
        day += timedelta(days=1)
    scenarios: list[int] = []
    days: list[str] = []
    while day + timedelta(days=1) <= trace[-1].end:
        starts = [day + k * HALF for k in range(per_day + ahead)]
        found = [index.get(t) for t in starts]
        if all(
            i is not None
            and trace[i].start == t
            and trace[i].duration == HALF
            and trace[i].actual is not None
            for i, t in zip(found, starts, strict=True)
        ):
            scenarios.extend(i for i in found[:per_day] if i is not None)
            days.append(day.date().isoformat())
        day += timedelta(days=1)
    return scenarios, days


@settings(max_examples=60, deadline=None)
@given(
    offset=st.integers(0, 47),
    drop=st.sets(st.integers(0, 48 * 4 - 1), max_size=3),
    blank=st.sets(st.integers(0, 48 * 4 - 1), max_size=3),
    short=st.sets(st.integers(0, 48 * 4 - 1), max_size=2),
    split=st.sets(st.integers(0, 48 * 4 - 1), max_size=2),
    budget=st.sampled_from(["1h", "4h", "23h30m"]),
)
def test_the_replayed_days_are_those_whose_slots_are_all_there(
    offset: int, drop: set[int], blank: set[int], short: set[int], split: set[int], budget: str
) -> None:
    """Days with a missing slot, a slot without actual, a shorter slot or one cut in two in
    them or their look-ahead are skipped, exactly as when every start was looked up and
    checked."""
    slots = []
    for i in range(48 * 4):
        if i in drop:
            continue
        start = D0 + (offset + i) * HALF
        actual = None if i in blank else 90.0
        if i in split:
            slots.append(Slot(start, start + HALF / 2, 100.0, actual))
            slots.append(Slot(start + HALF / 2, start + HALF, 100.0, actual))
            continue
        end = start + (HALF / 2 if i in short else HALF)
        slots.append(Slot(start, end, 100.0, actual))
    trace = Forecast(slots)
    ahead = {"1h": 2, "4h": 8, "23h30m": 47}[budget]
    scenarios, days = _days_by_lookup(trace, 48, ahead)
    if not days:
        with pytest.raises(SimulationError, match="no complete UTC day"):
            scenario_days(trace, budget)
        return
    assert [d.isoformat() for d in scenario_days(trace, budget)] == days
    assert _prepare(trace, Policy(max_delay=budget)).scenarios == scenarios


@settings(max_examples=60, deadline=None)
@given(
    minutes=st.sampled_from([5, 15, 30, 60, 90, 180]),
    days=st.integers(1, 3),
    offset=st.integers(0, 3),
    budget=st.sampled_from(["0s", "10m", "1h", "90m", "4h", "23h30m"]),
    strategy=st.sampled_from(["lowest", "calibrated"]),
    gap=st.booleans(),
)
def test_a_sessions_inputs_are_the_slices_between_finds(
    minutes: int, days: int, offset: int, budget: str, strategy: str, gap: bool
) -> None:
    """On a trace without gaps whose slots all last one length, each scenario's forecast and
    history are found by index: they are exactly what between() finds over their time spans
    (the only way when the trace has a gap)."""
    slot = timedelta(minutes=minutes)
    trace = synthetic_trace(days, start=D0 + offset * slot, slot=slot, seed=days)
    if gap:  # one slot taken out, in the middle of the first day
        trace = Forecast([s for i, s in enumerate(trace) if i != int(timedelta(hours=12) / slot)])
    policy = Policy(max_delay=budget, strategy=strategy)  # type: ignore[arg-type]
    try:
        prep = _prepare(trace, policy)
    except SimulationError:
        return
    assert (prep.seen is None) == gap
    for i in prep.scenarios:
        forecast, history, now = _inputs(prep, i, policy)
        assert now == trace[i].start
        reach = now + policy.max_delay + slot + MAX_SHIFT
        expected = prep.blind.between(now, reach)
        assert forecast == expected
        assert forecast._starts == expected._starts
        assert forecast._columns() == expected._columns()
        if strategy == "lowest":
            assert history is None
            continue
        before = trace.between(now - LOOKBACK, now)
        assert history == before
        assert history is not None
        assert history._starts == before._starts
        assert history._columns() == before._columns()


@settings(max_examples=25, deadline=None)
@given(
    forecast=st.lists(st.integers(10, 400), min_size=52, max_size=52),
    noise=st.lists(st.integers(-60, 60), min_size=52, max_size=52),
    strategy=st.sampled_from(["lowest", "calibrated"]),
)
def test_the_oracle_is_never_beaten_and_never_worse_than_running_at_once(
    forecast: list[int], noise: list[int], strategy: str
) -> None:
    actual = [max(f + e, 0) for f, e in zip(forecast, noise, strict=True)]
    r = replay(
        trace_of([float(f) for f in forecast], [float(a) for a in actual]),
        Policy(max_delay="2h", strategy=strategy),  # type: ignore[arg-type]
        energy_kwh=E,
    )
    assert r.oracle_g <= r.scheduled_g + 1e-9
    assert r.oracle_g <= r.baseline_g + 1e-9
    assert all(0 <= d <= 2.0 for d in r.delays_h)


def test_herd_with_the_ledger_spreads_a_crowd_over_near_optimal_slots() -> None:
    values = flat(52)
    values[20] = 50
    values[21] = 50.5
    values[22] = 51
    trace = trace_of(values, values)
    herd = replay_herd(
        trace, Policy(max_delay="2h", strategy="lowest"), 10, energy_kwh=E, ledger=SlotLedger()
    )
    assert herd.jobs == 480
    assert herd.jitter_peak >= 40  # the crowd submitted 08:30-10:00 all picks 10:00
    assert herd.ledger_peak < herd.jitter_peak
    assert herd.ledger_g >= herd.jitter_g
    assert herd.carbon_kept_pct > 95
    assert set(herd.to_json()) == {
        "jobs_per_slot",
        "jobs",
        "baseline_g",
        "jitter",
        "ledger",
        "carbon_kept_pct",
    }
    with pytest.raises(SimulationError, match="jobs_per_slot"):
        replay_herd(trace, Policy(max_delay="2h"), 0)


def test_synthetic_trace_is_deterministic_and_replayable() -> None:
    a, b = synthetic_trace(3, seed=7), synthetic_trace(3, seed=7)
    assert [s.actual for s in a] == [s.actual for s in b]
    assert len(scenario_days(a, "4h")) == 3


KEYS = {
    "scenarios",
    "days",
    "baseline_g",
    "scheduled_g",
    "oracle_g",
    "reduction_pct",
    "oracle_capture_pct",
    "mean_delay_h",
    "median_delay_h",
    "regressions",
    "daily",
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoasync", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_json_has_exactly_the_documented_keys(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    done = run_cli("--trace", str(path), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == KEYS
    assert data["scenarios"] == 96
    assert data["days"] == 2
    assert set(data["daily"][0]) == {
        "date",
        "baseline_g",
        "scheduled_g",
        "oracle_g",
        "reduction_pct",
    }
    assert data["oracle_g"] <= data["scheduled_g"] + 1e-9
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


def test_cli_table_herd_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    out = tmp_path / "daily.png"
    done = run_cli(
        "--trace", str(path), "--policy", "lowest", "--jobs-per-slot", "3", "--plot", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "share of the oracle's savings" in done.stdout
    assert "jitter alone" in done.stdout
    assert "slot ledger" in done.stdout
    assert out.read_bytes().startswith(b"\x89PNG")
    done = run_cli("--trace", str(path), "--json", "--jobs-per-slot", "2")
    assert set(json.loads(done.stdout)) == KEYS | {"herd"}


def test_cli_reports_bad_input_with_exit_2(tmp_path: Path) -> None:
    missing = run_cli("--trace", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2
    assert "no such trace file" in missing.stderr
    short = write_csv(tmp_path / "short.csv", trace_of(flat(10), flat(10)))
    done = run_cli("--trace", str(short))
    assert done.returncode == 2
    assert "no complete UTC day" in done.stderr
    bad = run_cli("--trace", str(short), "--max-delay=-1h")
    assert bad.returncode == 2
    assert "max_delay" in bad.stderr
    assert run_cli("--trace", str(short), "--energy-kwh", "0").returncode == 2
    assert run_cli("--trace", str(short), "--policy", "nope").returncode == 2


# -- the shared benchmark trace (skipped where it is absent) --------------------------------


def test_lowest_reproduces_the_published_ecotracker_figures(trace_path: Path) -> None:
    done = run_cli("--trace", str(trace_path), "--policy", "lowest", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["scenarios"] == 1392
    assert data["days"] == 29
    assert data["baseline_g"] == pytest.approx(88.614, abs=5e-4)
    assert data["scheduled_g"] == pytest.approx(79.7655)  # published rounded: 79.766
    assert data["oracle_g"] == pytest.approx(77.109, abs=5e-4)
    assert data["oracle_capture_pct"] == pytest.approx(76.9, abs=0.05)
    assert data["mean_delay_h"] == pytest.approx(2.05, abs=0.005)
    assert data["regressions"] == 268


def test_the_default_meets_the_targets_on_the_trace_and_its_halves(trace_path: Path) -> None:
    done = run_cli("--trace", str(trace_path), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["scenarios"] == 1392
    # issue 16's bar for the default (it was 87.4 % / 1.70 h / 49 with a one-day look-back;
    # 87.26 % / 1.689 h / 53 with three days; 87.375 % / 1.696 h / 54 with the charge scaled
    # by the forecast-actual correlation: docs/benchmarks.md)
    assert data["oracle_capture_pct"] >= 87
    assert data["mean_delay_h"] <= 1.70
    assert data["regressions"] <= 60
    # and it beats the EcoTracker rule on each half of the trace as well
    from ecoasync.providers import read_trace

    trace = read_trace(trace_path)
    middle = len(trace) // 2
    for part in (Forecast(trace.slots[:middle]), Forecast(trace.slots[middle - 8 :])):
        ours = replay(part, Policy(max_delay="4h"))
        theirs = replay(part, Policy(max_delay="4h", strategy="lowest"))
        assert ours.oracle_capture_pct > theirs.oracle_capture_pct
        assert ours.mean_delay_h < theirs.mean_delay_h
        assert ours.regressions < theirs.regressions
