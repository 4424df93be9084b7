from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ecoasync import Forecast, ForecastDataError, Signal, Slot
from ecoasync.providers import (
    CsvForecastProvider,
    StaticForecastProvider,
    read_trace,
    synthetic_day,
)

T0 = datetime(2026, 3, 18, tzinfo=UTC)
HALF = timedelta(minutes=30)


def test_slot_is_normalised_to_utc_and_validated() -> None:
    plus_two = timezone(timedelta(hours=2))
    slot = Slot(
        datetime(2026, 3, 18, 2, tzinfo=plus_two),
        datetime(2026, 3, 18, 2, 30, tzinfo=plus_two),
        120,
        118,
    )
    assert slot.start == T0
    assert slot.start.tzinfo is UTC
    assert slot.best == 118
    assert slot.duration == HALF
    with pytest.raises(ValueError, match="timezone-aware"):
        Slot(datetime(2026, 3, 18), T0, 1)
    with pytest.raises(ValueError, match="after"):
        Slot(T0, T0, 1)
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite number >= 0"):
            Slot(T0, T0 + HALF, bad)
    with pytest.raises(TypeError, match="number"):
        Slot(T0, T0 + HALF, "120")  # type: ignore[arg-type]


def test_forecast_sorts_reports_gaps_and_refuses_overlaps() -> None:
    a = Slot(T0, T0 + HALF, 1)
    c = Slot(T0 + 2 * HALF, T0 + 3 * HALF, 3)
    forecast = Forecast([c, a])
    assert [s.forecast for s in forecast] == [1, 3]
    assert not forecast.contiguous
    assert forecast.gaps[0].start == T0 + HALF
    assert forecast.at(T0 + timedelta(minutes=40)) is None
    assert forecast.at(T0 + timedelta(minutes=10)) is a
    assert forecast.between(T0 + timedelta(minutes=10), T0 + timedelta(minutes=70)).slots == (a, c)
    with pytest.raises(ValueError, match="overlap"):
        Forecast([a, Slot(T0 + timedelta(minutes=10), T0 + HALF * 2, 2)])


def test_signal_round_trip() -> None:
    assert str(Signal("marginal", "direct")) == "marginal/direct"
    assert Signal.parse("average/lifecycle") == Signal("average", "lifecycle")
    with pytest.raises(ValueError, match="Signal.kind"):
        Signal("median")  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


GOOD = """from,to,intensity_forecast,intensity_actual,index
2026-03-18T00:00Z,2026-03-18T00:30Z,100,98,low
2026-03-18T00:30Z,2026-03-18T01:00Z,120,,moderate
2026-03-18T03:00+02:00,2026-03-18T03:30+02:00,90,91,low
"""


async def test_csv_provider_reads_in_a_worker_thread_and_caches(tmp_path: Path) -> None:
    provider = CsvForecastProvider(write(tmp_path, GOOD), zone="GB")
    forecast = await provider.forecast(T0, T0 + timedelta(hours=2))
    assert [s.forecast for s in forecast] == [100, 120, 90]
    assert forecast[1].actual is None
    assert forecast[2].start == T0 + timedelta(hours=1)
    assert forecast.provider == "csv:trace.csv"
    assert forecast.zone == "GB"
    assert len(await provider.forecast(T0 + timedelta(hours=1), T0 + timedelta(hours=2))) == 1
    (tmp_path / "trace.csv").unlink()
    assert len(await provider.load()) == 3  # kept in memory
    with pytest.raises(ForecastDataError):
        await provider.reload()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("from,to,intensity\n", 1, "missing column(s) intensity_forecast"),
        (
            "from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T00:30Z,abc\n",
            2,
            "could not convert",
        ),
        (
            "from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T00:30Z,1\n2026-03-18T00:30,2026-03-18T01:00Z,1\n",
            3,
            "timezone-aware",
        ),
        (
            "from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T00:30Z,\n",
            2,
            "intensity_forecast is empty",
        ),
        ("from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T00:30Z,-5\n", 2, ">= 0"),
        (
            "from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T00:30Z,5,7,8\n",
            2,
            "fields where the header has 3",
        ),
        ("from,to,intensity_forecast\nyesterday,2026-03-18T00:30Z,5\n", 2, "bad row"),
    ],
)
def test_bad_rows_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ForecastDataError) as info:
        read_trace(path)
    assert f"{path}:{line}" in str(info.value)
    assert message in str(info.value)
    assert info.value.line == line


def test_overlapping_rows_and_missing_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "from,to,intensity_forecast\n2026-03-18T00:00Z,2026-03-18T01:00Z,1\n2026-03-18T00:30Z,2026-03-18T01:00Z,1\n",
    )
    with pytest.raises(ForecastDataError, match="overlap"):
        read_trace(path)
    with pytest.raises(ForecastDataError, match="no such trace file"):
        read_trace(tmp_path / "missing.csv")


async def test_static_provider_and_synthetic_day() -> None:
    day = synthetic_day(T0)
    assert len(day) == 48
    assert day.contiguous
    values = [s.forecast for s in day]
    assert max(values) > 250 > 120 > min(values)
    assert all(s.actual is not None for s in day)
    provider = StaticForecastProvider(day, name="mine")
    window = await provider.forecast(T0 + timedelta(minutes=15), T0 + timedelta(hours=1))
    assert len(window) == 2
    assert window.provider == "mine"
    assert len(synthetic_day(T0, slot=timedelta(minutes=5))) == 288
    with pytest.raises(TypeError, match="Slot objects"):
        StaticForecastProvider([1, 2])  # type: ignore[list-item]


def test_between_shares_the_same_slice_with_its_next_caller() -> None:
    """Sessions planned in one slot ask for the same slots: they get one shared forecast."""
    day = synthetic_day()
    t = day[4].start
    first = day.between(t, t + timedelta(hours=4))
    again = day.between(t + timedelta(minutes=7), t + timedelta(hours=3, minutes=59))
    assert again is first  # same slots [4, 13): the same immutable object
    other = day.between(t + timedelta(hours=1), t + timedelta(hours=5))
    assert other is not first and other[0] == day[6]
    assert list(day.between(t, t + timedelta(hours=4))) == list(first)
    assert day.between(day.start, day.end) is day  # the whole is itself (no self-reference kept)
    assert (
        first.between(t, t + timedelta(hours=1)).between(t, t + timedelta(minutes=1))[0] == day[4]
    )
