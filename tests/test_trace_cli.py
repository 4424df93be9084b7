"""``ecoasync trace record`` as a real subprocess against the loopback grid server."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecoasync._cli.trace import HEADER, _Progress, resume_point
from ecoasync.providers import CsvForecastProvider, read_trace
from tests.grid_server import EM_TOKEN, GridServer, uk_value

START = datetime(2026, 2, 14, tzinfo=UTC)
END = datetime(2026, 3, 15, tzinfo=UTC)
SLOTS = 29 * 48


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[GridServer]:
    with GridServer() as srv:
        yield srv


def record(server: GridServer, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "ecoasync", "trace", "record", "--provider", "uk"]
    args += ["--from", "2026-02-14", "--to", "2026-03-15", "--out", str(out)]
    args += ["--base-url", server.url, "--timeout", "5", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_records_a_month_in_14_day_chunks(server: GridServer, tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    done = record(server, out)
    assert done.returncode == 0, done.stderr
    assert server.requests == [
        "/intensity/2026-02-14T00:00Z/2026-02-28T00:00Z",
        "/intensity/2026-02-28T00:00Z/2026-03-14T00:00Z",
        "/intensity/2026-03-14T00:00Z/2026-03-15T00:00Z",
    ]
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    assert (
        lines[1]
        == f"2026-02-14T00:00Z,2026-02-14T00:30Z,{uk_value(START):g},{uk_value(START) + 3:g},moderate"
    )
    assert len(lines) == SLOTS + 1
    trace = read_trace(out)
    assert trace.contiguous and trace.start == START and trace.end == END
    assert all(s.actual == s.forecast + 3 for s in trace)
    # not a terminal: plain progress lines on stderr
    assert "trace: up to 2026-02-28T00:00Z, 672 rows (48%)" in done.stderr
    assert f"wrote {SLOTS} rows" in done.stderr


async def test_the_trace_is_what_csv_provider_reads(server: GridServer, tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    assert record(server, out).returncode == 0
    provider = CsvForecastProvider(out)
    history = await provider.history(START, START + timedelta(hours=2))
    assert len(history) == 4 and history[0].actual is not None


def test_resumes_after_the_last_complete_row(server: GridServer, tmp_path: Path) -> None:
    full = tmp_path / "full.csv"
    assert record(server, full).returncode == 0
    part = tmp_path / "part.csv"
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:701]) + lines[701][:20])  # 700 rows and half a line
    server.requests.clear()
    done = record(server, part)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr and "at 2026-02-28T14:00Z" in done.stderr
    assert server.requests[0] == "/intensity/2026-02-28T14:00Z/2026-03-14T14:00Z"
    assert part.read_text() == full.read_text()
    again = record(server, part)
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_a_failure_keeps_what_was_written_and_resumes(server: GridServer, tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    server.script = ["ok", "503"]
    failed = record(server, out, "--attempts", "1")
    assert failed.returncode == 1
    assert "HTTP 503" in failed.stderr and "run the same command again to resume" in failed.stderr
    assert len(out.read_text().splitlines()) == 14 * 48 + 1
    assert record(server, out).returncode == 0
    assert len(read_trace(out)) == SLOTS


def test_bad_arguments(server: GridServer, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    bad = record(server, out, "--chunk-days", "20")
    assert bad.returncode == 2 and "--chunk-days" in bad.stderr
    out.write_text("a,b,c\n1,2,3\n")
    wrong = record(server, out)
    assert wrong.returncode == 2 and "not a trace" in wrong.stderr


def test_electricitymaps_history(server: GridServer, tmp_path: Path) -> None:
    out = tmp_path / "em.csv"
    args = [sys.executable, "-m", "ecoasync", "trace", "record", "--provider", "electricitymaps"]
    args += ["--zone", "aws:eu-central-1", "--from", "2026-02-14", "--to", "2026-02-16"]
    args += ["--out", str(out), "--base-url", server.url + "/v3"]
    env = {"ELECTRICITYMAPS_API_TOKEN": EM_TOKEN, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert "zone=DE" in server.requests[0]
    assert len(read_trace(out)) == 48


def test_resume_point_cuts_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "\n2026-02-14T00:00Z,2026-02-14T00:30Z,100,,\n2026-02-14T00:30Z,2026")
    assert resume_point(path) == datetime(2026, 2, 14, 0, 30, tzinfo=UTC)
    assert path.read_text().endswith(",100,,\n")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    stream = _Tty()
    bar = _Progress("bar", stream, total=100, done=0)
    bar.rich = None  # the plain bar, as without the rich extra
    bar.update(50, START, 10)
    bar.close()
    assert (
        "[###############---------------]  50% up to 2026-02-14T00:00Z, 10 rows"
        in stream.getvalue()
    )
