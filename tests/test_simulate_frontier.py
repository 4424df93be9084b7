"""``ecoasync simulate --frontier``: the sweep of both strategies over min_improvement (and
caution), its Pareto marking, its JSON and figure, and the flags it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations, pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import Forecast, Policy
from ecoasync._cli import main
from ecoasync._frontier import (
    FRONTIER_CAUTIONS,
    FRONTIER_MIN_IMPROVEMENTS,
    FrontierPoint,
    frontier,
    frontier_policies,
)
from ecoasync._simulate import SimulationError, replay, replay_sweep
from ecoasync._synth import synthetic_trace
from tests.test_simulate import write_csv

# a forecast 45 minutes late: the calibrated strategy has something to find
TRACE = synthetic_trace(4, seed=5, lag_slots=1.5)
POLICY = Policy(max_delay="4h")


@pytest.fixture(scope="module")
def points() -> list[FrontierPoint]:
    return frontier(TRACE, POLICY)


def test_both_strategies_over_the_whole_grid(points: list[FrontierPoint]) -> None:
    lowest = [p for p in points if p.strategy == "lowest"]
    calibrated = [p for p in points if p.strategy == "calibrated"]
    assert [p.min_improvement for p in lowest] == list(FRONTIER_MIN_IMPROVEMENTS)
    assert all(p.caution is None for p in lowest)  # the rule reads no risk setting
    cautions = sorted({*FRONTIER_CAUTIONS, Policy().caution})
    assert [(p.caution, p.min_improvement) for p in calibrated] == [
        (c, m) for c in cautions for m in FRONTIER_MIN_IMPROVEMENTS
    ]
    assert len(points) == len(lowest) + len(calibrated) == len(frontier_policies(POLICY))
    assert {p.series for p in calibrated} == {f"calibrated, caution {c:g}" for c in cautions}


def test_exactly_one_point_is_the_default(points: list[FrontierPoint]) -> None:
    (default,) = [p for p in points if p.default]
    base = Policy()
    assert (default.strategy, default.min_improvement, default.caution) == (
        base.strategy,
        base.min_improvement,
        base.caution,
    )
    assert default.result == replay(TRACE, POLICY)  # the default policy's own replay


def test_every_point_is_a_sane_replay(points: list[FrontierPoint]) -> None:
    first = points[0].result
    for p in points:
        r = p.result
        assert (r.scenarios, r.days, r.baseline_g, r.oracle_g) == (
            first.scenarios,
            first.days,
            first.baseline_g,
            first.oracle_g,
        )
        assert r.oracle_g <= r.scheduled_g + 1e-9
        assert r.oracle_capture_pct <= 100.0 + 1e-9
        assert 0.0 <= r.mean_delay_h <= 4.0
        assert 0 <= r.regressions <= r.scenarios


def test_a_higher_min_improvement_only_moves_jobs_to_now(points: list[FrontierPoint]) -> None:
    """Raising the bar never makes a job wait longer or elsewhere: it waits as before or runs at
    once. So the mean delay and the regressions never rise along a series."""
    for series in {p.series for p in points}:
        line = [p.result for p in points if p.series == series]
        for lo, hi in pairwise(line):
            for before, after in zip(lo.delays_h, hi.delays_h, strict=True):
                assert after in (0.0, before)
            assert hi.mean_delay_h <= lo.mean_delay_h
            assert hi.regressions <= lo.regressions


def test_pareto_marking(points: list[FrontierPoint]) -> None:
    def beats(a: FrontierPoint, b: FrontierPoint) -> bool:
        x, y = a.result, b.result
        no_worse = x.scheduled_g <= y.scheduled_g and x.mean_delay_h <= y.mean_delay_h
        return no_worse and (x.scheduled_g, x.mean_delay_h) != (y.scheduled_g, y.mean_delay_h)

    for p in points:
        assert p.efficient == (not any(beats(q, p) for q in points))
    # the greenest point and the quickest are always on the frontier
    greenest = min(points, key=lambda p: (p.result.scheduled_g, p.result.mean_delay_h))
    quickest = min(points, key=lambda p: (p.result.mean_delay_h, p.result.scheduled_g))
    assert greenest.efficient and quickest.efficient
    # efficient points never dominate each other: sorted by delay, savings rise with it
    front = sorted((p.result.mean_delay_h, p.result.scheduled_g) for p in points if p.efficient)
    for (d1, g1), (d2, g2) in combinations(front, 2):
        assert (d1 == d2 and g1 == g2) or (d1 <= d2 and g1 > g2) or (d1 < d2 and g1 >= g2)


def test_the_sweep_replays_each_policy_as_replay_would() -> None:
    policies = [
        Policy(max_delay="3h", strategy="lowest", min_improvement=0.05),
        Policy(max_delay="3h", strategy="calibrated", caution=0.0),
        Policy(max_delay="3h", strategy="calibrated", min_improvement=0.1, caution=0.5),
    ]
    assert replay_sweep(TRACE, policies) == [replay(TRACE, p) for p in policies]
    assert replay_sweep(TRACE, []) == []


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 50),
    lag=st.sampled_from([0.0, 1.5]),
    gap=st.one_of(st.none(), st.integers(0, 150)),
    max_delay=st.sampled_from(["1h", "3h"]),
    settings_=st.lists(
        st.tuples(
            st.sampled_from(["lowest", "calibrated"]),
            st.sampled_from([0.0, 0.03, 0.1, 0.25]),
            st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_property_the_sweep_is_replay_and_the_front_is_pareto(
    seed: int,
    lag: float,
    gap: int | None,
    max_delay: str,
    settings_: list[tuple[str, float, float]],
) -> None:
    """On any trace (also one with a gap, where sessions' inputs are found by time, not by
    index), the sweep's figures are each policy's own replay's; the marked points are exactly
    those nothing beats."""
    trace = synthetic_trace(3, seed=seed, lag_slots=lag)
    if gap is not None:  # one slot missing: its day is not replayed, slices go by time
        trace = Forecast([s for k, s in enumerate(trace.slots) if k != gap])
    policies = [
        Policy(max_delay=max_delay, strategy=s, min_improvement=m, caution=c)  # type: ignore[arg-type]
        for s, m, c in settings_
    ]
    assert replay_sweep(trace, policies) == [replay(trace, p) for p in policies]
    points = frontier(
        trace,
        Policy(max_delay=max_delay),
        min_improvements=sorted({m for _, m, _ in settings_}),
        cautions=sorted({c for _, _, c in settings_}),
    )
    results = [p.result for p in points]
    for p in points:
        beaten = any(
            (q.scheduled_g, q.mean_delay_h) != (p.result.scheduled_g, p.result.mean_delay_h)
            and q.scheduled_g <= p.result.scheduled_g
            and q.mean_delay_h <= p.result.mean_delay_h
            for q in results
        )
        assert p.efficient == (not beaten)
    assert any(p.efficient for p in points)
    assert sum(p.default for p in points) == (1 if 0.0 in {m for _, m, _ in settings_} else 0)


def test_the_sweep_counts_progress_over_all_policies() -> None:
    seen: list[tuple[int, int]] = []
    policies = [Policy(max_delay="2h", strategy="lowest")] * 3
    replay_sweep(TRACE, policies, progress=lambda done, total: seen.append((done, total)))
    total = 3 * replay(TRACE, policies[0]).scenarios
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_the_sweep_refuses_policies_with_other_scenarios() -> None:
    with pytest.raises(SimulationError, match="max_delay"):
        replay_sweep(TRACE, [Policy(max_delay="4h"), Policy(max_delay="2h")])


def test_to_json_keys(points: list[FrontierPoint]) -> None:
    assert set(points[0].to_json()) == POINT_KEYS


POINT_KEYS = {
    "strategy",
    "min_improvement",
    "caution",
    "scheduled_g",
    "reduction_pct",
    "oracle_capture_pct",
    "mean_delay_h",
    "median_delay_h",
    "regressions",
    "pareto",
    "default",
}
KEYS = {
    "scenarios",
    "days",
    "max_delay_h",
    "energy_kwh",
    "baseline_g",
    "oracle_g",
    "oracle_reduction_pct",
    "min_improvements",
    "cautions",
    "points",
}


def test_cli_json_and_plot_in_a_real_process(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    out = tmp_path / "frontier.png"
    argv = ["simulate", "--trace", str(path), "--frontier", "--json", "--plot", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "ecoasync", *argv, "--max-delay", "3h"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    data = json.loads(done.stdout)
    assert set(data) == KEYS
    assert data["max_delay_h"] == 3.0
    assert data["min_improvements"] == list(FRONTIER_MIN_IMPROVEMENTS)
    assert data["cautions"] == sorted({*FRONTIER_CAUTIONS, Policy().caution})
    assert all(set(p) == POINT_KEYS for p in data["points"])
    assert {p["strategy"] for p in data["points"]} == {"lowest", "calibrated"}
    assert sum(p["default"] for p in data["points"]) == 1
    assert any(p["pareto"] for p in data["points"])
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    assert main(["simulate", "--trace", str(path), "--frontier"]) == 0
    out = capsys.readouterr().out
    assert "the carbon-for-delay frontier, 28 policies" in out
    assert out.count("default") >= 1
    rows = [line for line in out.splitlines() if line.startswith(("  lowest", "  calibrated"))]
    assert len(rows) == 28
    assert sum(line.endswith("default") for line in rows) == 1
    assert any(" *" in line for line in rows)


def test_cli_help_names_the_grid(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    grid = ", ".join(f"{100 * m:g}" for m in FRONTIER_MIN_IMPROVEMENTS[:-1])
    assert f"min_improvement {grid} and {100 * FRONTIER_MIN_IMPROVEMENTS[-1]:g} %" in text
    cautions = ", ".join(f"{c:g}" for c in FRONTIER_CAUTIONS[:-1])
    assert f"caution {cautions} and {FRONTIER_CAUTIONS[-1]:g})" in text


def test_cli_svg_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    out = tmp_path / "frontier.svg"
    assert main(["simulate", "--trace", str(path), "--frontier", "--plot", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--policy", "lowest"], "--policy"),
        (["--min-improvement", "0.1"], "--min-improvement"),
        (["--jobs-per-slot", "3"], "--jobs-per-slot"),
        (["--mode", "temporal"], "--mode"),
        (["--home", "a"], "--home"),
    ],
)
def test_cli_refuses_flags_the_sweep_sets_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], named: str
) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    assert main(["simulate", "--trace", str(path), "--frontier", *extra]) == 2
    err = capsys.readouterr().err
    assert f"drop {named}" in err
    assert "--frontier sweeps one trace" in err


def test_cli_refuses_several_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    argv = ["simulate", "--trace", f"a={path}", "--trace", f"b={path}", "--frontier"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "several --trace" in err
    assert "run --frontier on each route's trace" in err
    assert main(["simulate", "--trace", f"a={path}", "--frontier"]) == 2
    assert "drop --trace NAME=PATH" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    assert main(["simulate", "--trace", str(tmp_path / "nope.csv"), "--frontier"]) == 2
    assert "no such trace file" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(path), "--frontier", "--max-delay=-1h"]) == 2
    assert "max_delay" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(path), "--frontier", "--plot", "f.pdf"]) == 2
    assert "--plot must end in .png or .svg" in capsys.readouterr().err


def test_plot_draws_a_saved_frontier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    assert main(["simulate", "--trace", str(path), "--frontier", "--json"]) == 0
    saved = tmp_path / "frontier.json"
    saved.write_text(capsys.readouterr().out)
    out = tmp_path / "frontier.png"
    assert main(["plot", str(saved), "-o", str(out)]) == 0
    assert "(frontier)" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG")
    saved.write_text(json.dumps({"points": [{"strategy": "lowest"}]}))
    assert main(["plot", str(saved), "-o", str(out)]) == 2
    assert "a frontier result needs points with" in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    out = tmp_path / "frontier.png"
    assert main(["simulate", "--trace", str(path), "--frontier", "--plot", str(out)]) == 2
    assert "pip install 'ecoasync[plot]'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_says_when_nothing_can_be_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "trace.csv", synthetic_trace(2, seed=3))
    assert main(["simulate", "--trace", str(path), "--frontier", "--max-delay", "0"]) == 0
    assert "no start within the budget saves anything" in capsys.readouterr().out
