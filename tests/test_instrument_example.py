"""``examples/agent_demo.py`` runs as written, offline."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_agent_demo_runs_as_written() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "examples/agent_demo.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert result.stderr == ""
    assert "-> completed: 5 calls" in out
    assert "downgraded gpt-4o -> gpt-4o-mini" in out
    assert "-> completed: 5 calls" in out.split("2. ")[1]
    assert "budget tripped" in out and "refused gpt-4o" in out
    assert "-> aborted:" in out
    assert "researcher" in out.split("-> aborted:")[1]  # the per-agent breakdown
