"""``bench/robustness.py`` runs end to end on tiny traces written here (never the shared data):
every zone under every error model, the UK-format trace as it is too, one table and one JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ecoasync import Policy
from tests.conftest import ROOT

MODELS = ("sigma5", "sigma10", "sigma20", "bias+10", "bias-10", "late1h", "tod")


def _value(hours: float, phase: float) -> float:
    return 200 + 80 * math.sin(2 * math.pi * hours / 24 + phase) + 15 * math.sin(hours / 3.1)


def write_data(root: Path) -> None:
    regions = root / "regions"
    regions.mkdir(parents=True)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    for name, phase in (("AA_2022", 0.0), ("BB_2022", 2.0)):
        lines = ["from,to,intensity_actual"]
        for i in range(4 * 24):
            a, b = start + timedelta(hours=i), start + timedelta(hours=i + 1)
            lines.append(f"{a:%Y-%m-%dT%H:%M}Z,{b:%Y-%m-%dT%H:%M}Z,{_value(i, phase):.2f}")
        (regions / f"{name}.csv").write_text("\n".join(lines) + "\n")
    lines = ["from,to,intensity_forecast,intensity_actual,index"]
    for i in range(4 * 48):
        a, b = start + timedelta(minutes=30 * i), start + timedelta(minutes=30 * (i + 1))
        actual = _value(i / 2, 1.0)
        lines.append(
            f"{a:%Y-%m-%dT%H:%M}Z,{b:%Y-%m-%dT%H:%M}Z,{_value(i / 2 - 1, 1.0):.1f},{actual:.1f},"
        )
    (root / "benchmark_trace.csv").write_text("\n".join(lines) + "\n")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "robustness.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_every_zone_under_every_model_in_one_table(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    out = tmp_path / "robustness.json"
    done = run("--data", str(tmp_path / "data"), "--jobs", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    cells = data["cells"]
    assert [(c["zone"], c["model"]) for c in cells] == [
        *((z, m) for z in ("AA_2022", "BB_2022") for m in MODELS),
        ("UK", "as-is"),
        *(("UK", m) for m in MODELS),
    ]
    for c in cells:
        for s in ("lowest", "calibrated"):
            assert c[s]["scenarios"] == 3 * (24 if c["zone"] != "UK" else 48)
            assert set(c[s]) >= {"capture_pct", "reduction_pct", "mean_delay_h", "regressions"}
        assert c["pareto"] == (
            c["calibrated"]["capture_pct"] >= c["lowest"]["capture_pct"]
            and c["calibrated"]["mean_delay_h"] <= c["lowest"]["mean_delay_h"]
        )
    summary = data["summary"]
    assert summary["cells"] == 22
    assert summary["pareto_better"] == sum(c["pareto"] for c in cells)
    assert "Pareto-better in" in done.stdout and "AA_2022" in done.stdout
    # seeded: the same command gives the same cells
    again = tmp_path / "again.json"
    assert run("--data", str(tmp_path / "data"), "--jobs", "1", "--out", str(again)).returncode == 0
    assert json.loads(again.read_text())["cells"] == cells


def test_caution_is_passed_only_where_the_policy_has_it(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    done = run(
        "--data",
        str(tmp_path / "data"),
        "--zones",
        "AA_2022",
        "--models",
        "sigma5",
        "--uk",
        "",
        "--caution",
        "0.5",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "r.json"),
    )
    if "caution" in {f.name for f in dataclasses.fields(Policy)}:
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / "r.json").read_text())["caution"] == 0.5
    else:
        assert done.returncode == 2
        assert "--caution needs a Policy with a caution field" in done.stderr
