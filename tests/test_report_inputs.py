"""What ``ecoasync report`` reads: inputs that overlap (the same file twice, copies, rotated
files) count each record once and say so; records that disagree are refused; files that are
empty or not telemetry get a clear answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ecoasync import CallRecord, SessionRecord
from ecoasync._cli import main
from ecoasync.sinks import JsonlSink
from tests.telemetry_gen import run_workload

Telemetry = tuple[Path, list[SessionRecord]]


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Telemetry:
    path = tmp_path_factory.mktemp("inputs") / "ecoasync.jsonl"
    sink = JsonlSink(path)
    records = run_workload(sink, sessions=12, days=2)
    sink.close()
    return path, records


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    return path


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def report_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    code, out, err = report(capsys, "--json", *args)
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data, err


FIGURES = ("sessions", "calls", "energy_kwh", "emitted_g", "baseline_g", "embodied_g")


def test_the_same_file_twice_counts_once_and_says_so(
    telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    path, records = telemetry
    calls = sum(1 for line in lines_of(path) if line["event"] == "call_recorded")
    once, quiet = report_json(capsys, str(path))
    twice, err = report_json(capsys, str(path), str(path))
    assert once["sessions"] == len(records) == 12
    assert {k: twice[k] for k in FIGURES} == {k: once[k] for k in FIGURES}
    assert twice["data_quality"]["duplicate_sessions"] == 12
    assert twice["data_quality"]["duplicate_calls"] == calls > 0
    assert once["data_quality"]["duplicate_sessions"] == 0 and quiet == ""
    assert err == (
        f"ecoasync report: dropped 12 session record(s) and {calls} call line(s) read more "
        "than once (the same file twice, a copy, or overlapping rotated files): each record "
        "counts once\n"
    )
    assert any(flag.startswith("dropped 12 session record(s)") for flag in twice["flags"])
    code, text, _ = report(capsys, str(path), str(path))
    assert code == 0 and "  ! dropped 12 session record(s)" in text


def test_a_copy_and_overlapping_rotated_files_count_each_record_once(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    path, _ = telemetry
    lines = path.read_text("utf-8").splitlines(keepends=True)
    third = len(lines) // 3
    # rotated by hand, with an overlap: ecoasync.jsonl.1 holds the older two thirds
    (tmp_path / "ecoasync.jsonl.1").write_text("".join(lines[: 2 * third]), "utf-8")
    (tmp_path / "ecoasync.jsonl").write_text("".join(lines[third:]), "utf-8")
    shutil.copy(path, tmp_path / "copy-of-ecoasync.jsonl")
    # as a shell expands `ecoasync report *ecoasync.jsonl*`, in a real process
    paths = sorted(str(p) for p in tmp_path.glob("*ecoasync.jsonl*"))
    done = subprocess.run(
        [sys.executable, "-m", "ecoasync", "report", "--json", *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    once = subprocess.run(
        [sys.executable, "-m", "ecoasync", "report", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    merged, single = json.loads(done.stdout), json.loads(once.stdout)
    assert {k: merged[k] for k in FIGURES} == {k: single[k] for k in FIGURES}
    overlap = [json.loads(line)["event"] for line in lines[third : 2 * third]]
    copied = [json.loads(line)["event"] for line in lines]
    quality = merged["data_quality"]
    assert quality["duplicate_sessions"] == overlap.count("completed") + copied.count("completed")
    assert quality["duplicate_calls"] == (
        overlap.count("call_recorded") + copied.count("call_recorded")
    )
    assert "read more than once" in done.stderr


def test_esg_exports_are_exact_whatever_the_overlap(
    telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    path, records = telemetry
    code, once, _ = report(capsys, str(path), "--esg", "csv")
    code2, twice, err = report(capsys, str(path), str(path), "--esg", "csv")
    assert code == code2 == 0
    assert twice == once
    assert "dropped 12 session record(s)" in err
    row = dict(zip(*[line.split(",") for line in once.splitlines()[:2]], strict=False))
    assert float(row["usage_kgco2eq"]) == pytest.approx(sum(r.emitted_g for r in records) / 1e3)
    code, doc, _ = report(capsys, str(path), str(path), "--esg", "json")
    data = json.loads(doc)
    assert code == 0 and data["duplicate_sessions"] == 12
    assert data["periods"][0]["sessions"] == 12


def test_two_different_records_of_one_session_are_refused(
    telemetry: Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = telemetry
    lines = lines_of(path)
    number, line = next((n, x) for n, x in enumerate(lines, 1) if x["event"] == "completed")
    edited = [dict(x) for x in lines]
    edited[number - 1] = {**line, "record": {**line["record"], "emitted_g": 99.0}}
    other = write(tmp_path / "edited.jsonl", edited)
    code, out, err = report(capsys, str(path), str(other))
    assert code == 2 and out == ""
    assert err.startswith(f"ecoasync report: session {line['session_id']} ")
    assert f"at {path}:{number} and at {other}:{number}" in err
    assert "(they differ in emitted_g)" in err and "remove the wrong record" in err
    assert err.count("\n") == 1
    code, _, err = report(capsys, str(path), str(other), "--esg", "csv")
    assert code == 2 and "two different records" in err


def test_files_written_before_calls_had_an_id_dedupe_by_content(
    telemetry: Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = telemetry
    old = []
    for line in lines_of(path):
        if line["event"] == "call_recorded":
            line["call"].pop("call_id")
        if line["event"] != "completed" or line["session_name"] != "job-1":
            old.append(line)  # job-1's sessions never completed: their calls are incomplete
    older = write(tmp_path / "old.jsonl", old)
    once, _ = report_json(capsys, str(older))
    twice, _ = report_json(capsys, str(older), str(older))
    incomplete = once["data_quality"]["incomplete_session_calls"]
    assert incomplete > 0
    assert twice["data_quality"]["incomplete_session_calls"] == incomplete
    assert twice["data_quality"]["duplicate_calls"] == sum(
        1 for line in old if line["event"] == "call_recorded"
    )
    assert {k: twice[k] for k in FIGURES} == {k: once[k] for k in FIGURES}


def test_llm_eco_tracker_records_have_no_id_and_dedupe_by_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [
        {
            "timestamp": f"2026-03-18T0{n}:00:00Z",
            "energy_kwh": 0.001,
            "baseline_gco2eq": 0.3,
            "actual_gco2eq": 0.2,
            "model": "gpt-4o-mini",
        }
        for n in range(3)
    ]
    first = write(tmp_path / "telemetry.jsonl", jobs)
    second = write(tmp_path / "telemetry.jsonl.1", jobs[1:])  # overlaps two of three
    data, err = report_json(capsys, str(first), str(second))
    assert data["sessions"] == 3 and data["emitted_g"] == pytest.approx(0.6)
    assert data["data_quality"]["duplicate_sessions"] == 2
    assert "dropped 2 session record(s) read more than once" in err


def test_calls_carry_an_id_into_the_telemetry(telemetry: Telemetry) -> None:
    path, _ = telemetry
    ids = [line["call"]["call_id"] for line in lines_of(path) if line["event"] == "call_recorded"]
    assert ids and len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and len(i) == 32 for i in ids)
    fields: dict[str, Any] = {
        "provider": "openai",
        "requested_model": "gpt-4o",
        "effective_model": "gpt-4o",
        "output_tokens": 10,
        "latency_s": 1.0,
        "at": datetime(2026, 3, 18, tzinfo=UTC),
    }
    assert CallRecord(**fields).call_id != CallRecord(**fields).call_id


def test_an_empty_file_says_nothing_about_a_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "ecoasync.jsonl"
    empty.write_text("")
    code, out, err = report(capsys, str(empty))
    assert code == 0 and err == ""
    assert "  no completed sessions in the input" in out and "this range" not in out
    code, out, _ = report(capsys, str(empty), "--since", "2026-03-01")
    assert "  no sessions from 2026-03-01T00:00:00Z on" in out
    code, out, _ = report(capsys, str(empty), "--since", "2026-03-01", "--until", "2026-04-01")
    assert "  no sessions from 2026-03-01T00:00:00Z until 2026-04-01T00:00:00Z" in out


@pytest.mark.parametrize(
    ("fmt", "wanted"),
    [
        ("auto", "a JsonlSink event or an llm-eco-tracker record"),
        ("ecoasync", "a JsonlSink event (--format ecoasync)"),
    ],
)
def test_a_file_that_is_not_telemetry_is_an_error(
    telemetry: Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, wanted: str
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text('hello\n{"a": 1}\n\n[1, 2]\n')
    code, out, err = report(capsys, str(notes), "--format", fmt)
    assert (code, out) == (2, "")
    assert err == f"ecoasync report: {notes}: not telemetry: none of its 3 line(s) is {wanted}\n"
    path, _ = telemetry  # beside good telemetry too: the wrong file is named, nothing is summed
    code, out, err = report(capsys, str(path), str(notes), "--format", fmt)
    assert (code, out) == (2, "") and f"{notes}: not telemetry" in err
