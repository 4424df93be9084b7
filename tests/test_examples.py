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
    assert "waiting 4 h for" in out  # the plan reads its delay as the table does
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
def test_demo_table_agrees_with_its_events(at: str) -> None:
    # as a user runs it: a fresh process, where the first measured call imports EcoLogits
    # (the virtual clock jumped meanwhile and every call was stamped at the last job's slot)
    out = run("-m", "ecoasync", "demo", "--at", at)
    jobs = ("chat-reply", "summarise-reports", "nightly-embeddings")
    events: dict[str, list[tuple[str, str, str]]] = {
        job: re.findall(rf"^  (\d\d:\d\dZ)  (\w+) +{job} +(.*)$", out, re.M) for job in jobs
    }
    table = {
        m["job"]: m
        for m in re.finditer(
            r"^    (?P<job>[\w-]+) +(?P<waited>[\d hmins]+?) +(?P<now>\d+) → (?P<plan>\d+) +"
            r"(?P<at>\d+) → (?P<ran>\d+) +(?P<emitted>[\d.]+) g +(?P<once>[\d.]+) g +"
            r"(?P<avoided>-?\d+) %$",
            out,
            re.M,
        )
    }
    assert set(table) == set(jobs), out
    for job in jobs:
        row, seen = table[job], events[job]
        assert [kind for _, kind, _ in seen] == [
            "planned", "started", *["call_recorded"] * 3, "completed"
        ], out  # fmt: skip
        (_, _, planned), (ran_at, _, started), *calls, (_, _, completed) = seen
        waiting = re.search(r"for (\d+) gCO2eq/kWh instead of (\d+) now", planned)
        if waiting:
            assert (row["plan"], row["now"]) == waiting.groups()
        else:
            assert planned.startswith("running now") and row["plan"] == row["now"]
        assert started == f"grid at {row['ran']} gCO2eq/kWh (actual)"
        assert completed == f"completed, waited {row['waited']}, {row['emitted']} gCO2eq"
        # each call is made (and charged) when the job ran, at the intensity the table shows
        emitted = 0.0
        for when, _, call in calls:
            line = re.fullmatch(
                r"gpt-4o-mini: [\d.]+ Wh at (\d+) gCO2eq/kWh, ([\d.]+) gCO2eq", call
            )
            assert when == ran_at and line and line[1] == row["ran"], (job, out)
            emitted += float(line[2])
        assert emitted == pytest.approx(float(row["emitted"]), abs=0.002)
        # the same calls at submission: the avoided share follows from the two intensities
        # (integers in the output, so within their rounding)
        ran, now = int(row["ran"]), int(row["at"])
        lowest, highest = (
            100 * (1 - (ran + 0.5) / (now - 0.5)),
            100 * (1 - (ran - 0.5) / (now + 0.5)),
        )
        assert lowest - 0.5 <= int(row["avoided"]) <= highest + 0.5, (job, out)
    # submitted together, measured at the same moment: chat-reply, which ran then, says what
    chat = table["chat-reply"]
    assert {table[job]["at"] for job in jobs} == {chat["ran"]} and chat["avoided"] == "0"
    assert "covers none" not in out and "unknown" not in out


def test_quickstart_example() -> None:
    out = run("examples/quickstart.py")
    assert out.splitlines()[:1] == ["17:00Z planned"]
    assert re.search(r"waiting (3 h 5\d min|4 h) for", out), out
    assert "completed" in out


def test_cli_without_a_command_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ecoasync"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "demo" in result.stderr
