from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import Forecast, ForecastDataError, Signal, Slot
from ecoasync._forecast import _Columns
from ecoasync._planner import _slot_length
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


# -- columns: the planner's and the calibration's view of a forecast -------------------------

US = timedelta(microseconds=1)


@st.composite
def odd_forecasts(draw: st.DrawFn) -> Forecast:
    """Slots of mixed lengths (down to a microsecond), gaps, actuals on some."""
    lengths = st.sampled_from([US, HALF, HALF, HALF, HALF + US, timedelta(minutes=7)])
    gaps = st.sampled_from([timedelta(0), timedelta(0), timedelta(0), US, timedelta(minutes=40)])
    slots = []
    t = T0
    for _ in range(draw(st.integers(0, 24))):
        t += draw(gaps)
        end = t + draw(lengths)
        value = draw(st.floats(0, 1000))
        slots.append(Slot(t, end, value, draw(st.one_of(st.none(), st.floats(0, 1000)))))
        t = end
    return Forecast(slots)


def most_common_length(forecast: Forecast) -> timedelta | None:
    """The planner's slot length, as it was computed before forecasts cached their columns."""
    lengths = [s.end - s.start for s in forecast]
    if not lengths:
        return None
    return max(set(lengths), key=lambda d: (lengths.count(d), -d.total_seconds()))


def bounds(forecast: Forecast) -> st.SearchStrategy[datetime]:
    first = forecast.start or T0
    last = forecast.end or T0
    return st.integers(-60, int((last - first).total_seconds()) + 60).map(
        lambda s: first + timedelta(seconds=s)
    )


@settings(max_examples=300, deadline=None)
@given(odd_forecasts(), st.booleans(), st.data())
def test_slices_carry_the_columns_of_their_slots(
    forecast: Forecast, warm: bool, data: st.DataObject
) -> None:
    if warm:
        forecast._columns()  # slices of it then slice its columns instead of converting again
    piece = forecast
    for _ in range(3):  # slices of slices
        a, b = sorted((data.draw(bounds(forecast)), data.draw(bounds(forecast))))
        piece = piece.between(a, b + US)
        assert piece._columns() == _Columns.of(piece.slots)
        assert _slot_length(piece) == most_common_length(piece)
    fresh = piece._columns()
    assert fresh.starts == tuple(s.start.timestamp() for s in piece)
    assert fresh.ends == tuple(s.end.timestamp() for s in piece)
    assert fresh.forecasts == tuple(s.forecast for s in piece)
    assert fresh.actuals == tuple(s.actual for s in piece)
    lengths = {s.end - s.start for s in piece}
    assert fresh.length == (lengths.pop() if len(lengths) == 1 else None)
    assert fresh.complete == all(s.actual is not None for s in piece)


@settings(max_examples=200, deadline=None)
@given(odd_forecasts(), st.booleans(), st.sampled_from(["a", "b"]), st.data())
def test_without_actuals_is_the_forecast_built_again_without_them(
    forecast: Forecast, warm: bool, zone: str, data: st.DataObject
) -> None:
    """What the simulator's planner reads ahead: the same slots, labels, gaps and columns as a
    forecast built anew from the slots without their actuals, and slices of it the same too."""
    forecast = forecast.with_source(provider="p", zone=zone)
    if warm:
        forecast._columns()
    blind = forecast._without_actuals()
    fresh = Forecast(
        [Slot(s.start, s.end, s.forecast) for s in forecast],
        signal=forecast.signal,
        provider=forecast.provider,
        zone=forecast.zone,
    )
    assert blind == fresh and repr(blind) == repr(fresh)
    assert blind._starts == fresh._starts
    assert blind._columns() == _Columns.of(fresh.slots)
    assert all(s.actual is None for s in blind)
    a, b = sorted((data.draw(bounds(forecast)), data.draw(bounds(forecast))))
    piece = blind.between(a, b + US)
    assert piece == fresh.between(a, b + US)
    assert piece._columns() == _Columns.of(piece.slots)


@settings(max_examples=100, deadline=None)
@given(odd_forecasts(), st.sampled_from(["p", "q"]), st.sampled_from([None, "GB"]), st.data())
def test_relabelled_copies_are_the_forecast_built_again_and_are_kept(
    forecast: Forecast, provider: str, zone: str | None, data: st.DataObject
) -> None:
    """with_source makes (without checking the slots again) what Forecast() makes of the same
    slots and labels, every field set, and answers the same labels with the same object, so a
    provider that relabels another's answers keeps what the planner shares on them."""
    import dataclasses

    relabelled = forecast.with_source(provider=provider, zone=zone)
    fresh = Forecast(
        forecast.slots,
        signal=forecast.signal,
        provider=provider,
        zone=forecast.zone if zone is None else zone,
    )
    assert relabelled == fresh and repr(relabelled) == repr(fresh)
    for f in dataclasses.fields(Forecast):  # every field is set, derived ones empty
        assert getattr(relabelled, f.name) == getattr(fresh, f.name) or f.name == "_cached_columns"
    assert relabelled._columns() == _Columns.of(fresh.slots)
    assert forecast.with_source(provider=provider, zone=zone) is relabelled
    assert forecast.with_source() is forecast
    a, b = sorted((data.draw(bounds(forecast)), data.draw(bounds(forecast))))
    assert relabelled.between(a, b + US) == fresh.between(a, b + US)


def test_columns_are_computed_once_and_do_not_change_equality() -> None:
    slots = [Slot(T0 + i * HALF, T0 + (i + 1) * HALF, 100 + i, 90 + i) for i in range(6)]
    warm, cold = Forecast(slots), Forecast(slots)
    assert warm._columns() is warm._columns()
    assert warm._columns().length == HALF
    assert warm == cold and hash(warm) == hash(cold)
    assert repr(warm) == repr(cold)
    piece = warm.between(T0 + HALF, T0 + 3 * HALF)
    assert piece._columns() == _Columns(
        starts=((T0 + HALF).timestamp(), (T0 + 2 * HALF).timestamp()),
        ends=((T0 + 2 * HALF).timestamp(), (T0 + 3 * HALF).timestamp()),
        forecasts=(101.0, 102.0),
        actuals=(91.0, 92.0),
        length=HALF,
        complete=True,
    )


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


def test_between_shares_the_same_slice_with_its_next_callers() -> None:
    """Sessions planned in one slot ask for the same slots: they get one shared forecast."""
    day = synthetic_day()
    t = day[4].start
    first = day.between(t, t + timedelta(hours=4))
    again = day.between(t + timedelta(minutes=7), t + timedelta(hours=3, minutes=59))
    assert again is first  # same slots [4, 13): the same immutable object
    other = day.between(t + timedelta(hours=1), t + timedelta(hours=5))
    assert other is not first and other[0] == day[6]
    assert list(day.between(t, t + timedelta(hours=4))) == list(first)
    # a provider cuts each session's forecast and history from one forecast, alternately: the
    # last four slices are kept, so both are shared
    history = day.between(t - timedelta(hours=2), t)
    for _ in range(3):
        assert day.between(t, t + timedelta(hours=4)) is first
        assert day.between(t - timedelta(hours=2), t) is history
    for k in range(5):  # five other slices push the first one out
        day.between(t + timedelta(hours=k), t + timedelta(hours=k + 2))
    assert day.between(t, t + timedelta(hours=4)) is not first
    assert day.start is not None and day.end is not None
    assert day.between(day.start, day.end) is day  # the whole is itself (no self-reference kept)
    assert (
        first.between(t, t + timedelta(hours=1)).between(t, t + timedelta(minutes=1))[0] == day[4]
    )
