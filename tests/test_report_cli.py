from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from ecoasync import EventBus, Policy, SessionRecord, carbon_session
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.sinks import JsonlSink
from ecoasync.testing import VirtualClock
from tests.telemetry_gen import DAY, charge, run_workload


def ecoasync(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoasync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def report_json(*args: str) -> dict[str, Any]:
    done = ecoasync("report", "--json", *args)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SessionRecord]]:
    path = tmp_path_factory.mktemp("telemetry") / "ecoasync.jsonl"
    sink = JsonlSink(path)
    records = run_workload(sink, sessions=80, days=4, unknown_every=17)
    sink.close()
    return path, records


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def test_report_json_numbers(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    path, records = telemetry
    data = report_json(str(path))
    assert data["sessions"] == 80 == len(records)
    assert data["calls"] == sum(r.calls for r in records)
    assert data["energy_kwh"] == approx(sum(r.energy_kwh for r in records))
    assert data["energy_kwh_min"] == approx(sum(r.energy_kwh_min for r in records))
    assert data["energy_kwh_max"] == approx(sum(r.energy_kwh_max for r in records))
    assert data["emitted_g"] == approx(sum(r.emitted_g for r in records))
    assert data["baseline_g"] == approx(sum(r.baseline_g for r in records))
    assert data["avoided_g"] == approx(sum(r.saved_g for r in records))
    assert data["avoided_g"] > 0  # waiting for the clean night pays on the synthetic grid
    assert data["embodied_g"] == approx(sum(r.embodied_g for r in records))
    assert data["mean_delay_s"] == approx(sum(r.delay_s for r in records) / 80)
    assert data["budget_trips"] == sum(r.budget_tripped for r in records) > 0
    assert data["downgrades"] == 0
    assert data["signals"] == ["average/direct"] and data["mixed_signals"] is False
    assert data["equivalences"]["emitted"]["car_km"] == approx(
        data["emitted_g"] / (393.0 / 1.609344)
    )
    assert all(c["source"] for c in data["equivalences"]["constants"])
    assert data["data_quality"]["unknown_models"] == ["mystery-model"]
    assert data["data_quality"]["skipped_lines"] == 0


@pytest.mark.parametrize("by", ["model", "day", "tag", "provider", "zone", "name", "status"])
def test_report_breakdowns_add_up(telemetry: tuple[Path, list[SessionRecord]], by: str) -> None:
    path, records = telemetry
    data = report_json(str(path), "--by", by)
    rows = data[f"by_{by}"]
    assert data["by"] == by and rows
    assert sum(r["emitted_g"] for r in rows) == approx(data["emitted_g"])
    assert sum(r["calls"] for r in rows) == data["calls"]
    if by == "model":
        names = {r["model"] for r in rows}
        assert names <= {"gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-latest", "mystery-model"}
        assert next(r for r in rows if r["model"] == "mystery-model")["known"] is False
    if by == "day":
        days = [r["day"] for r in rows]
        assert days == sorted(days) and len(days) >= 3
        expected: dict[str, float] = {}
        for rec in records:
            day = (rec.started_at or rec.submitted_at).strftime("%Y-%m-%d")
            expected[day] = expected.get(day, 0.0) + rec.emitted_g
        assert {r["day"]: pytest.approx(r["emitted_g"]) for r in rows} == expected
    if by == "tag":
        assert {r["tag"] for r in rows} == {"writer", "critic", "planner"}
    if by in ("provider", "zone"):
        assert [r[by] for r in rows] == (["synthetic"] if by == "provider" else ["GB"])
        assert rows[0]["sessions"] == 80
        assert rows[0]["avoided_g"] == approx(data["avoided_g"])


@pytest.mark.parametrize(
    ("by", "labels"),
    [("route", ["eu-north", "us-east", "(none)"]), ("queue", ["celery", "(in-process)"])],
)
def test_report_by_route_and_queue(
    telemetry: tuple[Path, list[SessionRecord]], tmp_path: Path, by: str, labels: list[str]
) -> None:
    """Routed and queued sessions group by where they ran and which queue held their wait."""
    source, _ = telemetry
    path = tmp_path / "routed.jsonl"
    expected: dict[str, float] = {}
    lines = []
    for n, line in enumerate(source.read_text().splitlines()):
        event = json.loads(line)
        if event.get("event") == "completed":
            label = labels[n % len(labels)]
            field = {"route": "route", "queue": "queue"}[by]
            event["record"][field] = None if label.startswith("(") else label
            expected[label] = expected.get(label, 0.0) + event["record"]["emitted_g"]
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    data = report_json(str(path), "--by", by)
    rows = data[f"by_{by}"]
    assert {r[by]: pytest.approx(r["emitted_g"]) for r in rows} == expected
    assert sum(r["sessions"] for r in rows) == data["sessions"] == 80
    text = ecoasync("report", "--plain", str(path), "--by", by)
    assert text.returncode == 0, text.stderr
    assert all(label in text.stdout for label in expected)


def test_report_since_until(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    path, records = telemetry
    since, until = DAY + timedelta(days=1), DAY + timedelta(days=2, hours=12)
    data = report_json(str(path), "--since", "2026-03-17", "--until", "2026-03-18T12:00Z")
    chosen = [r for r in records if since <= (r.started_at or r.submitted_at) < until]
    assert 0 < data["sessions"] == len(chosen) < 80
    assert data["emitted_g"] == approx(sum(r.emitted_g for r in chosen))
    bad = ecoasync("report", str(path), "--since", "yesterday")
    assert bad.returncode == 2 and "2026-03-01" in bad.stderr


def test_report_plain_text_when_piped(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    path, records = telemetry
    done = ecoasync("report", str(path), "--by", "model")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no terminal codes in a pipe
    assert "Sessions" in out and "80" in out
    assert f"{sum(r.emitted_g for r in records):,.3f} g CO2eq" in out
    assert "By model" in out and "mystery-model (unknown: 0 energy)" in out
    assert "US EPA" in out  # the equivalences' source is stated


def test_report_skips_malformed_lines(
    telemetry: tuple[Path, list[SessionRecord]], tmp_path: Path
) -> None:
    path, records = telemetry
    lines = path.read_text("utf-8").splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        "".join(lines[:5])
        + "not json\n"
        + "".join(lines[5:])
        + '{"schema":1,"event":"completed","rec',
        "utf-8",
    )
    done = ecoasync("report", "--json", str(broken))
    assert done.returncode == 0
    assert f"skipped 2 malformed line(s); the first at {broken}:6" in done.stderr
    data = json.loads(done.stdout)
    assert data["sessions"] == 80
    assert data["emitted_g"] == approx(sum(r.emitted_g for r in records))
    assert data["data_quality"]["first_bad_line"] == f"{broken}:6"


def test_report_missing_file_is_exit_2(tmp_path: Path) -> None:
    done = ecoasync("report", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert "nope.jsonl: no such file" in done.stderr
    default = ecoasync("report", cwd=tmp_path)  # ./ecoasync.jsonl by default
    assert default.returncode == 2
    assert "ecoasync.jsonl: no such file" in default.stderr and "JsonlSink" in default.stderr


def test_report_reads_the_default_path(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    path, _ = telemetry
    done = ecoasync("report", "--json", cwd=path.parent)
    assert done.returncode == 0 and json.loads(done.stdout)["sessions"] == 80


def test_esg_export(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    path, records = telemetry
    done = ecoasync(
        "report",
        str(path),
        "--esg",
        "json",
        "--period",
        "2026-Q1",
        "--period",
        "2026-03",
        "--period",
        "2026",
        "--period",
        "2026-Q2",
    )
    assert done.returncode == 0, done.stderr
    periods = json.loads(done.stdout)["periods"]
    assert [p["period"] for p in periods] == ["2026-Q1", "2026-03", "2026", "2026-Q2"]
    q1 = periods[0]
    usage = sum(r.emitted_g for r in records)
    embodied = sum(r.embodied_g for r in records)
    assert q1["start"] == "2026-01-01T00:00:00Z" and q1["end"] == "2026-04-01T00:00:00Z"
    assert q1["usage_kgco2eq"] == approx(usage / 1e3)
    assert q1["usage_tco2eq"] == approx(usage / 1e6)
    assert q1["embodied_kgco2eq"] == approx(embodied / 1e3)
    assert q1["total_tco2eq"] == approx((usage + embodied) / 1e6)
    assert (q1["ghg_protocol_scope"], q1["ghg_protocol_category"]) == (3, 1)
    assert q1["ghg_protocol_category_name"] == "Purchased goods and services"
    assert "EcoLogits" in q1["method"]
    assert q1["emission_factor_sources"] == [
        {"provider": "synthetic", "zone": "GB", "signal": "average/direct", "sessions": 80}
    ]
    assert q1["unknown_models"] == ["mystery-model"]
    assert q1["forecast_only_sessions"] == 0
    assert periods[1]["usage_kgco2eq"] == approx(q1["usage_kgco2eq"])
    assert periods[3]["sessions"] == 0 and periods[3]["usage_tco2eq"] == 0

    csv_out = ecoasync("report", str(path), "--esg", "csv", "--period", "2026-Q1")
    assert csv_out.returncode == 0
    header, row = csv_out.stdout.splitlines()[:2]
    assert header.startswith("period,start,end,ghg_protocol_scope,ghg_protocol_category")
    assert row.startswith(
        "2026-Q1,2026-01-01T00:00:00Z,2026-04-01T00:00:00Z,3,1,Purchased goods and services,80,"
    )
    default = ecoasync("report", str(path), "--esg", "csv")  # each quarter in the data
    assert [line.split(",")[0] for line in default.stdout.splitlines()[1:]] == ["2026-Q1"]
    bad = ecoasync("report", str(path), "--esg", "csv", "--period", "2026-Q5")
    assert bad.returncode == 2 and "2026-Q1" in bad.stderr


def test_mixed_signals_are_flagged(
    telemetry: tuple[Path, list[SessionRecord]], tmp_path: Path
) -> None:
    path, _ = telemetry
    mixed = tmp_path / "mixed.jsonl"
    out = []
    for n, line in enumerate(path.read_text("utf-8").splitlines()):
        data = json.loads(line)
        if data["event"] == "completed" and n % 2:
            data["record"]["signal"] = "marginal/direct"
        out.append(json.dumps(data))
    mixed.write_text("\n".join(out) + "\n", "utf-8")
    data = report_json(str(mixed))
    assert data["mixed_signals"] is True
    assert set(data["by_signal"]) == {"average", "marginal"}
    assert sum(v["emitted_g"] for v in data["by_signal"].values()) == approx(data["emitted_g"])
    assert any("not comparable" in f for f in data["flags"])
    text = ecoasync("report", str(mixed)).stdout
    assert "Per signal (average and marginal figures do not add up)" in text


def test_nested_sessions_are_not_counted_twice(tmp_path: Path) -> None:
    path = tmp_path / "nested.jsonl"
    sink = JsonlSink(path)
    bus = EventBus()
    bus.subscribe(sink)
    provider = StaticForecastProvider(synthetic_day(DAY))

    async def main() -> None:
        with VirtualClock.installed(DAY + timedelta(hours=12)):
            async with carbon_session(Policy(provider=provider), bus=bus, name="parent"):
                await charge("gpt-4o", 0.002)
                async with carbon_session(name="child"):
                    await charge("gpt-4o-mini", 0.001)

    anyio.run(main)
    sink.close()
    data = report_json(str(path))
    assert data["sessions"] == 1 and data["nested_sessions"] == 1
    assert data["calls"] == 2
    assert data["energy_kwh"] == approx(0.003)


# --- llm-eco-tracker import ---

PEER_RECORDS: Sequence[dict[str, Any]] = (
    {
        "timestamp": "2026-03-17T02:00:00+00:00",
        "energy_kwh": 0.004,
        "baseline_gco2eq": 1.2,
        "actual_gco2eq": 0.8,
        "saved_gco2eq": 0.4,
        "schedule_plan": {
            "baseline_interval": None,
            "selected_interval": None,
            "baseline_intensity_gco2eq_per_kwh": 300.0,
            "optimal_intensity_gco2eq_per_kwh": 200.0,
            "raw_delay_seconds": 3600.0,
            "execution_delay_seconds": 3600.0,
            "latest_execution_delay_seconds": 0.0,
        },
        "forecast_provider": "uk_carbon_intensity",
        "llm_provider": "openai",
        "model": "gpt-4o-mini",
        "model_usage": [
            {
                "requested_model": "gpt-4o-mini",
                "effective_model": "gpt-4o-mini",
                "call_count": 3,
                "downgraded": False,
            }
        ],
    },
    {
        "timestamp": "2026-03-18T10:00:00+00:00",
        "energy_kwh": 0.002,
        "baseline_gco2eq": 0.5,
        "actual_gco2eq": 0.5,
        "saved_gco2eq": 0.0,
        "llm_provider": "openai",
        "model_usage": [
            {
                "requested_model": "gpt-4o",
                "effective_model": "gpt-4o-mini",
                "call_count": 2,
                "downgraded": True,
            },
            {
                "requested_model": "gpt-4o",
                "effective_model": "gpt-4o",
                "call_count": 1,
                "downgraded": False,
            },
        ],
        "metadata": {
            "max_session_gco2eq": 0.4,
            "actual_gco2eq_so_far": 0.5,
            "carbon_budget_exceeded": True,
            "termination_reason": "carbon_budget_exceeded",
        },
    },
)


def _check_peer(data: dict[str, Any]) -> None:
    assert data["sessions"] == 2
    assert data["calls"] == 6
    assert data["energy_kwh"] == approx(0.006)
    assert data["emitted_g"] == approx(1.3)
    assert data["baseline_g"] == approx(1.7)
    assert data["avoided_g"] == approx(0.4)
    assert data["downgrades"] == 2
    assert data["budget_trips"] == 1
    assert data["mean_delay_s"] == approx(1800.0)
    quality = data["data_quality"]
    assert quality["imported_sessions"] == 2 and quality["forecast_only_sessions"] == 2


def test_import_llm_eco_tracker_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "eco_telemetry.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PEER_RECORDS) + "{bad\n", "utf-8")
    data = report_json("--format", "llm-eco-tracker", str(path), "--by", "model")
    _check_peer(data)
    assert data["data_quality"]["skipped_lines"] == 1
    models = {r["model"]: r for r in data["by_model"]}
    assert models["gpt-4o-mini"]["calls"] == 3
    assert models["(mixed) gpt-4o + gpt-4o-mini"]["emitted_g"] == approx(0.5)
    _check_peer(report_json(str(path)))  # detected without --format


def test_import_llm_eco_tracker_logger_lines(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    lines = ["INFO:llm_eco_tracker.execution:Session complete. Total energy: 0.004000 kWh\n"]
    lines += [
        f"2026-03-18 10:00:00,000 INFO llm_eco_tracker.telemetry.sinks Telemetry record: {json.dumps(r)}\n"
        for r in PEER_RECORDS
    ]
    path.write_text("".join(lines), "utf-8")
    data = report_json("--format", "llm-eco-tracker", str(path))
    _check_peer(data)
    assert data["data_quality"]["skipped_lines"] == 0


# --- plots ---


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_plot_telemetry_png(telemetry: tuple[Path, list[SessionRecord]], tmp_path: Path) -> None:
    path, _ = telemetry
    out = tmp_path / "report.png"
    trace = tmp_path / "trace.csv"
    rows = ["from,to,intensity_forecast,intensity_actual"]
    rows.extend(
        f"{slot.start:%Y-%m-%dT%H:%MZ},{slot.end:%Y-%m-%dT%H:%MZ},{slot.forecast},{slot.actual}"
        for slot in synthetic_day(DAY, days=5)
    )
    trace.write_text("\n".join(rows) + "\n", "utf-8")
    done = ecoasync("plot", str(path), "-o", str(out), "--trace", str(trace), "--day", "2026-03-17")
    assert done.returncode == 0, done.stderr
    assert "timeline, daily, models" in done.stdout
    assert out.stat().st_size > 20_000
    width, height = png_size(out)
    assert width >= 1000 and height >= 800


def test_plot_simulation_json_svg_and_png(tmp_path: Path) -> None:
    sim = {
        "scenarios": 1392,
        "days": 29,
        "baseline_g": 88.6,
        "scheduled_g": 79.8,
        "oracle_g": 77.1,
        "reduction_pct": 9.9,
        "oracle_capture_pct": 76.9,
        "mean_delay_h": 2.05,
        "median_delay_h": 1.5,
        "regressions": 268,
        "daily": [
            {
                "day": f"2026-02-{d:02d}",
                "baseline_g": 3.0 + d % 3,
                "scheduled_g": 2.7 + (d % 3) * 0.8,
            }
            for d in range(1, 29)
        ]
        + [{"date": "2026-03-01", "reduction_pct": 12.5}],
    }
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(sim), "utf-8")
    svg = tmp_path / "daily.svg"
    done = ecoasync("plot", str(path), "-o", str(svg))
    assert done.returncode == 0, done.stderr
    assert "(daily)" in done.stdout
    assert svg.read_text("utf-8").lstrip().startswith("<?xml") and svg.stat().st_size > 10_000
    png = tmp_path / "daily.png"
    assert ecoasync("plot", str(path), "-o", str(png)).returncode == 0
    assert png_size(png)[0] >= 1000
    (tmp_path / "empty.json").write_text(json.dumps({"reduction_pct": 1.0, "daily": []}), "utf-8")
    empty = ecoasync("plot", str(tmp_path / "empty.json"), "-o", str(png))
    assert empty.returncode == 2 and "without daily figures" in empty.stderr


def test_plot_errors(tmp_path: Path) -> None:
    assert ecoasync("plot", "-o", str(tmp_path / "x.jpg")).returncode == 2
    missing = ecoasync("plot", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "empty.jsonl").write_text("", "utf-8")
    nothing = ecoasync("plot", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "x.png"))
    assert nothing.returncode == 1 and "nothing to plot" in nothing.stderr


def test_rich_rendering_in_a_terminal(telemetry: tuple[Path, list[SessionRecord]]) -> None:
    import io

    from ecoasync._report._load import load
    from ecoasync._report._render import render_report
    from ecoasync._report._summary import summary

    path, _ = telemetry
    buffer = io.StringIO()
    render_report(summary(load([path]), by="day"), buffer, rich=True)
    text = buffer.getvalue()
    assert ("Summary" in text and "By day" in text and "━" in text) or "─" in text


def test_since_accepts_dates_and_times() -> None:
    from ecoasync._cli.report import parse_when

    assert parse_when("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01T12:30+01:00") == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
