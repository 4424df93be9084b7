"""The small things a newcomer meets in the first hour: zero delays, messages that say a
thing once, signed zeros, delays for people, empty plots, whole-day histogram ticks and the
SDK versions a test run names."""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ecoasync import Policy, PolicyError
from ecoasync._cli import main
from ecoasync._durations import human_duration
from ecoasync.providers import synthetic_day
from ecoasync.sinks import JsonlSink
from tests.conftest import ROOT, pytest_report_header
from tests.telemetry_gen import DAY, run_workload


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic days as a trace CSV (no third-party data)."""
    path = tmp_path_factory.mktemp("trace") / "grid.csv"
    rows = ["from,to,intensity_forecast,intensity_actual"]
    rows += [
        f"{s.start:%Y-%m-%dT%H:%MZ},{s.end:%Y-%m-%dT%H:%MZ},{s.forecast},{s.actual}"
        for s in synthetic_day(DAY, days=4)
    ]
    path.write_text("\n".join(rows) + "\n", "utf-8")
    return path


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("zero", [0, 0.0, "0", "00", "0.0", "0m", "0h", "PT0S"])
def test_a_zero_delay_is_zero_in_any_unit(zero: Any) -> None:
    assert Policy(max_delay=zero).max_delay == timedelta(0)
    assert Policy(max_delay=0) == Policy()  # the default, typed: Literal[0]


@pytest.mark.parametrize("number", [1, 0.5, -1])
def test_other_numbers_still_need_a_unit(number: Any) -> None:
    with pytest.raises(PolicyError, match=f"got the number {number}; write '{number}h'"):
        Policy(max_delay=number)


def test_a_negative_delay_is_named_once() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy(max_delay="-1h")
    assert (
        str(caught.value) == "Policy.max_delay must be >= 0 (a duration such as '90m'), got '-1h'"
    )
    assert str(caught.value).count("-1h") == 1


@pytest.mark.parametrize("zero", ["0", "0m"])
def test_simulate_with_no_delay_prints_no_negative_zero(
    trace: Path, capsys: pytest.CaptureFixture[str], zero: str
) -> None:
    code, out, err = simulate(capsys, "--trace", str(trace), "--max-delay", zero)
    assert (code, err) == (0, "")
    assert "max_delay 0s" in out
    assert "-0.00" not in out and out.count("(+0.00 %)") == 2
    assert "share of the oracle's savings  - (no start saves anything)" in out
    assert "mean 0 min, median 0 min" in out


def test_simulate_says_a_negative_delay_once(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(capsys, "--trace", str(trace), "--max-delay=-1h")
    assert (code, out) == (2, "")
    assert err == (
        "ecoasync simulate: Policy.max_delay must be >= 0 (a duration such as '90m'), got '-1h'\n"
    )


@pytest.mark.parametrize(
    ("delay", "text"),
    [
        (timedelta(hours=3, minutes=58, seconds=14.660710), "3 h 58 min"),
        (timedelta(hours=4), "4 h"),
        (timedelta(hours=9, minutes=30), "9 h 30 min"),
        (1500.0, "25 min"),
        (40.0, "40 s"),
        (0.0, "0 min"),
        (0.2, "0 min"),
        (-3600.0, "-1 h"),
    ],
)
def test_delays_read_as_hours_and_minutes(delay: timedelta | float, text: str) -> None:
    assert human_duration(delay) == text


def test_cli_delays_are_for_people(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = simulate(capsys, "--trace", str(trace), "--max-delay", "4h")
    assert code == 0
    assert re.search(r"delay +mean (\d+ h )?\d+ min, median (\d+ h )?\d+ min\n", out), out
    assert main(["demo"]) == 0
    demo = capsys.readouterr().out
    assert "waited 9 h 30 min" in demo and "waited 4 h," in demo
    for text in (out, demo):
        assert not re.search(r"\d:\d\d:\d\d", text), "no raw timedelta"


def test_report_delays_are_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ecoasync.jsonl"
    sink = JsonlSink(path)
    run_workload(sink, sessions=8, days=1)
    sink.close()
    assert main(["report", str(path), "--by", "name"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Average delay +(\d+ h )?(\d+ min)? ?\(max \d+ h( \d+ min)?\)", out), out
    assert not re.search(r"\d\.\d\d h", out)


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "ecoasync.jsonl"
    sink = JsonlSink(path)
    run_workload(sink, sessions=10, days=2)
    sink.close()
    return path


def test_plot_on_a_day_without_data_is_a_clear_error(
    telemetry: Path, trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "day.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty picture came with a matplotlib warning
        code = main(["plot", str(telemetry), "--day", "2026-01-05", "-o", str(out)])
    _, err = capsys.readouterr()
    assert code == 1 and not out.exists()
    assert err == (
        "ecoasync plot: --day 2026-01-05: no session was submitted that day (the telemetry "
        "runs from 2026-03-16 to 2026-03-17); pick a day in that range, or leave --day out "
        "for the busiest day\n"
    )
    beyond = ["--day", "2026-03-20", "--trace", str(trace)]  # the trace ends on the 19th
    assert main(["plot", str(telemetry), *beyond, "-o", str(out)]) == 1
    assert "no session was submitted that day" in capsys.readouterr().err
    # a day with only the grid's curve still has something to draw
    grid_only = ["--day", "2026-03-18", "--trace", str(trace), "--kind", "timeline"]
    assert main(["plot", str(telemetry), *grid_only, "-o", str(out)]) == 0
    assert out.exists()


def test_the_daily_histogram_counts_whole_days() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecoasync._report._plot import _daily

    fig, ax = plt.subplots()
    try:
        _daily(ax, [("2026-03-16", 10.0), ("2026-03-17", 12.5), ("2026-03-18", 30.0)], "sim")
        fig.canvas.draw()
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(t == int(t) for t in ticks), ticks
    finally:
        plt.close(fig)


def test_the_session_header_names_the_sdk_versions_and_the_readme_their_lines() -> None:
    header = pytest_report_header()
    readme = (ROOT / "README.md").read_text("utf-8")
    for sdk in ("openai", "anthropic", "ecologits", "httpx"):
        version = importlib.metadata.version(sdk)
        assert f"{sdk} {version}" in header
    for sdk in ("openai", "anthropic"):
        major = importlib.metadata.version(sdk).split(".")[0]
        assert re.search(rf"\*\*{sdk} {major}\.\d+\*\*", readme), f"README: tested {sdk} version"
