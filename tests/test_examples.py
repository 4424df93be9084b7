"""The README's commands and the examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ecoasync._cli import main
from tests.conftest import ROOT


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_command() -> None:
    out = run("-m", "ecoasync", "demo")
    assert "summarise-reports" in out
    assert "waiting 4h00m" in out
    assert out.count("completed") >= 3
    assert re.search(r"nightly-embeddings +9 h 30 min .* 58 %", out)  # its saving on the day


@pytest.mark.parametrize("at", ["25:00", "17:60", "99:99", "noon", "-1:00", "7", "17:5", ""])
def test_demo_rejects_an_impossible_time(at: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", f"--at={at}"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"ecoasync demo: error: argument --at: must be a time of day from 00:00 to 23:59 "
        f"like 17:00, got {at!r}\n"
    )


def test_demo_has_no_seed_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # it was never used: the demo is deterministic
        main(["demo", "--seed", "1"])
    assert exited.value.code == 2 and "unrecognized arguments: --seed" in capsys.readouterr().err


@pytest.mark.parametrize("at", ["00:00", "08:00", "17:00", "23:59"])
def test_demo_table_agrees_with_its_events(at: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--at", at]) == 0
    out = capsys.readouterr().out
    jobs = ("chat-reply", "summarise-reports", "nightly-embeddings")
    events: dict[str, dict[str, str]] = {job: {} for job in jobs}
    for job in jobs:
        for kind, rest in re.findall(rf"^  \d\d:\d\dZ  (\w+) +{job} +(.*)$", out, re.M):
            events[job][kind] = rest
    table = {
        m["job"]: m
        for m in re.finditer(
            r"^    (?P<job>[\w-]+) +(?P<waited>[\d hmins]+?) +(?P<now>\d+) → (?P<plan>\d+) +"
            r"(?P<at>\d+) → (?P<ran>\d+) +(?P<emitted>[\d.]+) g ",
            out,
            re.M,
        )
    }
    assert set(table) == set(jobs), out
    for job in jobs:
        row, seen = table[job], events[job]
        waiting = re.search(r"for (\d+) gCO2eq/kWh instead of (\d+) now", seen["planned"])
        if waiting:
            assert (row["plan"], row["now"]) == waiting.groups()
        else:
            assert seen["planned"].startswith("running now") and row["plan"] == row["now"]
        assert seen["started"] == f"grid at {row['ran']} gCO2eq/kWh (actual)"
        assert seen["completed"] == (f"completed, waited {row['waited']}, {row['emitted']} gCO2eq")
    assert "covers none" not in out and "unknown" not in out


def test_quickstart_example() -> None:
    out = run("examples/quickstart.py")
    assert out.splitlines()[:1] == ["17:00Z planned"]
    assert "waiting 3h5" in out or "waiting 4h00m" in out
    assert "completed" in out


def test_cli_without_a_command_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ecoasync"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "demo" in result.stderr
