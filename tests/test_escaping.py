"""Text from telemetry or an API never becomes markup, a terminal escape, a spreadsheet
formula or a CSV row of its own (issue 17)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from ecoasync import EventBus, Policy, carbon_session
from ecoasync._cli.trace import HEADER, Row, resume_point, run_record
from ecoasync._report._load import load
from ecoasync._report._render import render_report
from ecoasync._report._summary import summary
from ecoasync.providers import StaticForecastProvider, read_trace, synthetic_day
from ecoasync.sinks import JsonlSink
from ecoasync.testing import VirtualClock
from tests.telemetry_gen import DAY, charge

HOSTILE_TAGS = ("[/bold]", "[link=file:///etc/passwd]x", "\x1b[31mred\x1b[0m", "a\nb", "\u202eevil")
FORMULAS = ('=HYPERLINK("http://x","y")', "@SUM(1+1)", "+1+cmd|' /C calc'!A0")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Telemetry whose tags and model names are hostile text."""
    path = tmp_path_factory.mktemp("hostile") / "ecoasync.jsonl"
    sink = JsonlSink(path)
    bus = EventBus()
    bus.subscribe(sink)
    provider = StaticForecastProvider(synthetic_day(DAY), name="-provider")

    async def main() -> None:
        with VirtualClock.installed(DAY + timedelta(hours=12)):
            async with carbon_session(Policy(provider=provider), bus=bus, name="\x1b]0;t\x07"):
                for tag in HOSTILE_TAGS:
                    await charge("gpt-4o", 0.001, tags=(tag,))
                for model in FORMULAS:
                    await charge(model, 0.001, known=False)

    anyio.run(main)
    sink.close()
    return path


def ecoasync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoasync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("by", ["tag", "model", "name"])
def test_rich_report_shows_hostile_text_as_text(hostile: Path, by: str) -> None:
    # a tag like "[/bold]" crashed the report with rich's MarkupError
    buffer = io.StringIO()
    render_report(summary(load([hostile]), by=by), buffer, rich=True)
    text = buffer.getvalue()
    assert "\x1b" not in text and "\u202e" not in text
    if by == "tag":
        assert "[/bold]" in text and "[link=file:///etc/passwd]x" in text
        assert "\\x1b[31mred\\x1b[0m" in text and "a\\x0ab" in text


@pytest.mark.parametrize("by", ["tag", "model", "name"])
def test_plain_report_prints_no_control_characters_from_telemetry(hostile: Path, by: str) -> None:
    # plain output printed the tags' raw ESC bytes
    done = ecoasync("report", str(hostile), "--by", by, "--plain")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    if by == "tag":
        assert "\\x1b[31mred\\x1b[0m" in done.stdout and "\\u202eevil" in done.stdout
        assert "a\\x0ab" in done.stdout  # one row, not two


def test_esg_csv_cells_are_never_formulas(hostile: Path) -> None:
    # cells starting with = + - @ were written as they came
    done = ecoasync("report", str(hostile), "--esg", "csv")
    assert done.returncode == 0, done.stderr
    header, row = list(csv.reader(io.StringIO(done.stdout)))
    cells = dict(zip(header, row, strict=True))
    assert cells["unknown_models"].startswith("'")  # the sorted list starts with "+1+cmd..."
    assert cells["emission_factor_sources"].startswith("'-provider/")
    formulas = [c for c in row if c[:1] in ("=", "+", "@") or (c[:1] == "-" and not _number(c))]
    assert formulas == []
    assert json.loads(ecoasync("report", str(hostile), "--esg", "json").stdout)["periods"][0][
        "unknown_models"
    ] == sorted(FORMULAS)  # the JSON keeps the text as it is


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_trace_record_keeps_an_api_field_in_its_row(tmp_path: Path) -> None:
    # an index holding a newline wrote a row of the API's making
    start = datetime(2026, 2, 14, tzinfo=UTC)
    step = timedelta(minutes=30)
    indexes = ["low\n2026-02-14T00:30Z,2026-02-14T01:00Z,1,1,forged", 'mod,"erate"', "high\r"]

    async def fetch(a: datetime, b: datetime) -> list[Row]:
        return [
            Row(start + i * step, start + (i + 1) * step, 100.0 + i, 90.0, index)
            for i, index in enumerate(indexes)
        ]

    async def aclose() -> None:
        return None

    fetch.aclose = aclose  # type: ignore[attr-defined]
    out = tmp_path / "trace.csv"
    code = anyio.run(
        run_record, fetch, out, start, start + 3 * step, timedelta(days=1), "none", io.StringIO()
    )
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 4  # one line a row
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["index"] for r in rows] == [
        "low 2026-02-14T00:30Z,2026-02-14T01:00Z,1,1,forged",
        'mod,"erate"',
        "high ",
    ]
    assert len(read_trace(out)) == 3
    assert resume_point(out) == start + 3 * step


DOLLARS = ("cost $5 run_$x$", r"gpt-$\frac{$", "team $ops$ nightly")


def test_plots_show_dollars_in_names_as_written(tmp_path: Path) -> None:
    """matplotlib reads text between two ``$`` as mathtext: a model or a title with dollars
    must be drawn as written, neither typeset (``$ops$`` in italics) nor failing to draw
    (``$\\frac{$``)."""
    matplotlib = pytest.importorskip("matplotlib")
    from ecoasync._report._plot import literal, render

    out = tmp_path / "models.svg"
    models = [{"model": name, "emitted_g": 1.0 + k} for k, name in enumerate(DOLLARS)]
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text kept as text in the SVG
        panels = render(
            str(out),
            kinds=["models", "daily"],
            models=models,
            daily=[("2026-03-17", 12.0), ("2026-03-18", 20.0)],
            daily_source="$sim$",
            title=DOLLARS[2],
        )
    assert panels == ["daily", "models"]
    svg = out.read_text(encoding="utf-8")
    for name in (*DOLLARS, "2 days, $sim$)"):
        assert name.replace("&", "&amp;").replace("<", "&lt;") in svg, name
    # escaped, no name is mathtext any more (each of these is, or would fail as, unescaped)
    from matplotlib import cbook

    assert [cbook.is_math_text(n) for n in DOLLARS] == [False, True, True]
    assert not any(cbook.is_math_text(literal(n)) for n in DOLLARS)
