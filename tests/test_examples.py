"""The README's commands and the examples run as written."""

from __future__ import annotations

import subprocess
import sys

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
    assert "58%" in out  # the nightly job's saving on the synthetic day


def test_demo_rejects_a_bad_time() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ecoasync", "demo", "--at", "noon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--at must look like 17:00" in result.stdout + result.stderr


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
