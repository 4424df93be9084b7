"""The live providers against a real HTTP server on loopback that speaks their APIs."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import ForecastTimeout, ForecastUnavailable, Policy, carbon_session
from ecoasync.events import Completed, ForecastFailed, Planned
from ecoasync.providers import (
    CsvForecastProvider,
    ElectricityMapsProvider,
    FallbackProvider,
    ForecastBy,
    ForecastNowait,
    ForecastProvider,
    HistoryBy,
    HistoryNowait,
    HistoryProvider,
    Retry,
    StaticForecastProvider,
    UKCarbonIntensityProvider,
    WattTimeProvider,
    default_provider,
    synthetic_day,
)
from ecoasync.providers._http import PayloadError
from ecoasync.providers._live import floor_time
from ecoasync.providers._uk import parse_rows
from ecoasync.testing import FailingProvider, VirtualClock, capture_events
from tests.grid_server import EM_TOKEN, WT_PASSWORD, WT_USER, GridServer, uk_value

NOW = datetime(2026, 3, 18, 10, 7, tzinfo=UTC)


class FakeSleep:
    """Records the retry sleeps instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def server() -> Iterator[GridServer]:
    with GridServer() as srv:
        srv.now = NOW
        yield srv


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def uk(server: GridServer, sleep: FakeSleep, **kwargs: Any) -> UKCarbonIntensityProvider:
    options: dict[str, Any] = {
        "base_url": server.url,
        "timeout": 0.25,
        "retry": Retry(attempts=2, backoff=0.5),
        "sleep": sleep,
    }
    options.update(kwargs)
    return UKCarbonIntensityProvider(**options)


# --- the UK provider ------------------------------------------------------------------------


async def concurrent_sessions(policy: Policy, n: int) -> None:
    """``n`` empty sessions under ``policy``, all at once."""

    async def job() -> None:
        async with carbon_session(policy):
            pass

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(job)


async def test_uk_forecast_national(server: GridServer, sleep: FakeSleep) -> None:
    async with uk(server, sleep) as provider:
        forecast = await provider.forecast(NOW, NOW + timedelta(hours=4))
    assert server.requests == ["/intensity/2026-03-18T10:00Z/fw48h"]
    assert forecast.provider == "uk-carbon-intensity"
    assert forecast.zone == "GB"
    assert str(forecast.signal) == "average/direct"
    assert forecast[0].start == datetime(2026, 3, 18, 10, 0, tzinfo=UTC)
    assert forecast[-1].end == datetime(2026, 3, 18, 14, 30, tzinfo=UTC)
    assert [s.forecast for s in forecast] == [uk_value(s.start) for s in forecast]
    assert all(s.duration == timedelta(minutes=30) for s in forecast)


async def test_uk_regional_by_region_and_postcode(server: GridServer, sleep: FakeSleep) -> None:
    async with uk(server, sleep, region=13) as by_id, uk(server, sleep, postcode="rg10 9ab") as pc:
        a = await by_id.forecast(NOW, NOW + timedelta(hours=2))
        b = await pc.forecast(NOW, NOW + timedelta(hours=2))
    assert server.requests == [
        "/regional/intensity/2026-03-18T10:00Z/fw48h/regionid/13",
        "/regional/intensity/2026-03-18T10:00Z/fw48h/postcode/RG10",
    ]
    assert (a.zone, b.zone) == ("GB:region-13", "GB:postcode-RG10")
    assert len(a) == len(b) == 5
    assert all(s.actual is None for s in a)


@settings(max_examples=300, deadline=None)
@given(
    moments=st.lists(
        st.tuples(
            st.datetimes(
                min_value=datetime(1971, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
            ),
            st.sampled_from([timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 1440)]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_floor_time_rounds_down_to_a_multiple_of_the_step(
    moments: list[tuple[datetime, timedelta]],
) -> None:
    """Whatever the order of the calls, each answer is the UTC multiple of the step at or
    before the time."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for when, step in moments + moments[::-1]:
        floor = floor_time(when, step)
        assert floor.tzinfo is UTC
        assert floor <= when < floor + step
        assert (floor - epoch) % step == timedelta(0)


def test_uk_parses_every_documented_shape() -> None:
    row = {
        "from": "2026-03-18T10:00Z",
        "to": "2026-03-18T10:30Z",
        "intensity": {"forecast": 120, "actual": 118, "index": "low"},
    }
    national = parse_rows({"data": [row]})
    regional = parse_rows({"data": {"regionid": 13, "data": [row]}})
    listed = parse_rows({"data": [{"regionid": 13, "data": [row]}]})
    assert national == regional == listed
    assert national[0].actual == 118 and national[0].index == "low"


_TIMES = st.sampled_from(
    [
        "2026-03-18T10:00Z",
        "2026-03-18T10:30Z",
        "2026-03-18T10:30:00+00:00",
        "2026-03-18T16:00+05:30",
        " 2026-03-18T11:00Z",
        "2026-03-18T10:00z",
        "2026-03-18T10:00",
        "yesterday",
        123,
        None,
    ]
)
_NUMBERS = st.sampled_from(
    [None, 0, 120, 120.5, -1, float("nan"), float("inf"), True, "120", 10**400]
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {"from": _TIMES, "to": _TIMES},
            optional={
                "intensity": st.fixed_dictionaries(
                    {},
                    optional={
                        "forecast": _NUMBERS,
                        "actual": _NUMBERS,
                        "index": st.sampled_from(["low", 3]),
                    },
                )
                | st.just("high")
            },
        )
        | st.just([]),
        max_size=6,
    )
)
def test_uk_rows_are_read_or_the_first_wrong_one_is_named(items: list[Any]) -> None:
    """Whatever the rows, parse_rows gives well-formed rows (UTC half-hours, numbers >= 0 or
    None) or a PayloadError that names the first row that is wrong; nothing else escapes."""
    try:
        rows = parse_rows({"data": items})
    except PayloadError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        first_bad = re.match(r"data\[(\d+)\]", error)
        assert first_bad is not None, error
        bad = int(first_bad.group(1))
        parse_rows({"data": items[:bad]})  # the rows before it were fine
        with pytest.raises(PayloadError):
            parse_rows({"data": items[bad : bad + 1]})
        return
    assert [r.start for r in rows] == sorted({r.start for r in rows})
    for row in rows:
        assert row.start.tzinfo is UTC and row.start < row.end
        for value in (row.forecast, row.actual):
            assert value is None or (type(value) is float and 0 <= value < float("inf"))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([], "data[0] is list [], expected an object"),
        ({"to": "2026-03-18T10:30Z"}, "data[0].from is missing"),
        (
            {"from": "yesterday", "to": "2026-03-18T10:30Z"},
            "data[0].from is str 'yesterday', expected an ISO 8601 time with an offset",
        ),
        (
            {"from": "2026-03-18T10:00Z", "to": "2026-03-18T10:00"},
            "data[0].to is str '2026-03-18T10:00', expected an ISO 8601 time with an offset",
        ),
        (
            {"from": "2026-03-18T10:30Z", "to": "2026-03-18T10:00Z"},
            "data[0] ends before it starts (10:30Z..10:00Z)",
        ),
        ({"from": "2026-03-18T10:00Z", "to": "2026-03-18T10:30Z"}, "data[0].intensity is missing"),
        (
            {"from": "2026-03-18T10:00Z", "to": "2026-03-18T10:30Z", "intensity": "high"},
            "data[0].intensity is str 'high', expected an object",
        ),
        (
            {"from": "2026-03-18T10:00Z", "to": "2026-03-18T10:30Z", "intensity": {"actual": -1}},
            "data[0].intensity.actual is int -1, expected a finite number >= 0",
        ),
        (
            {
                "from": "2026-03-18T10:00Z",
                "to": "2026-03-18T10:30Z",
                "intensity": {"forecast": 10**400},
            },
            "data[0].intensity.forecast is an integer of 1329 bits, expected a finite number",
        ),
    ],
)
def test_uk_payload_errors_name_the_value_and_where_it_is(item: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_rows({"data": [item]})
    assert str(caught.value) == message or str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"region": 18}, "region must be a DNO region id from 1 to 17"),
        ({"postcode": "not a postcode"}, "outward code"),
        ({"region": 1, "postcode": "RG10"}, "not both"),
        ({"zone": "gcp:europe-west4"}, "is NL; use ElectricityMapsProvider"),
        ({"base_url": "ftp://x"}, "base_url must be an http"),
        ({"timeout": -1}, "timeout must be a finite number of seconds > 0"),
        ({"ttl": 0}, "ttl must be"),
    ],
)
def test_uk_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UKCarbonIntensityProvider(**options)


def test_uk_accepts_a_gb_cloud_region() -> None:
    assert UKCarbonIntensityProvider(zone="aws:eu-west-2").zone == "GB"


async def test_uk_history_in_14_day_chunks_with_actuals(
    server: GridServer, sleep: FakeSleep
) -> None:
    start, end = NOW - timedelta(days=20), NOW - timedelta(hours=1)
    async with uk(server, sleep) as provider:
        assert isinstance(provider, HistoryProvider)
        history = await provider.history(start, end)
        rows = await provider.intensity_rows(start, end)
    assert server.requests == [
        "/intensity/2026-02-26T10:00Z/2026-03-12T10:00Z",
        "/intensity/2026-03-12T10:00Z/2026-03-18T09:30Z",  # history: whole half-hours, cached
        "/intensity/2026-02-26T10:00Z/2026-03-12T10:00Z",
        "/intensity/2026-03-12T10:00Z/2026-03-18T09:07Z",  # intensity_rows: as asked
    ]
    assert history[0].start <= start < history[0].end
    assert history[-1].start < end <= history[-1].end
    assert history.contiguous
    assert all(s.actual == s.forecast + 3 for s in history)
    assert len(rows) == len(history) and rows[0].index is not None


async def test_history_nowait_answers_from_the_cache_only(
    server: GridServer, sleep: FakeSleep
) -> None:
    """What sessions use first: no request, no await; None until a fetch has filled the cache."""
    start, end = NOW - timedelta(hours=24), NOW
    async with uk(server, sleep) as provider:
        assert provider.history_nowait(start, end) is None
        assert provider.history_nowait(end, start) is None  # an empty span never asks
        fetched = await provider.history(start, end)
        later = start + timedelta(minutes=10)  # same half-hours: the same cache entry
        cached = provider.history_nowait(later, end)
        assert cached is not None and list(cached) == list(fetched.between(later, end))
        assert len(server.requests) == 1


# --- misbehaving servers, through real sessions ---------------------------------------------

FAILURES = {
    "hang": "no complete answer within timeout=0.25 s",
    "slow": "no complete answer within timeout=0.25 s",
    "500": "HTTP 500 Internal Server Error after 2 attempts",
    "503": "HTTP 503 Service Unavailable after 2 attempts",
    "truncated": "RemoteProtocolError",
    "truncated-json": "malformed JSON",
    "malformed": "malformed JSON",
    "schema": "unexpected payload: data.data is missing",
    "401": "credentials were refused",
}


@pytest.mark.parametrize("mode", list(FAILURES))
async def test_session_survives_a_misbehaving_server(
    mode: str, server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = mode
    provider = uk(server, sleep, retry=Retry(attempts=1 if mode in ("hang", "slow") else 2))
    began = time.monotonic()
    with VirtualClock.installed(NOW), capture_events() as events:
        async with provider:
            async with carbon_session(
                Policy(max_delay="4h", provider=provider, forecast_timeout="3s")
            ) as session:
                pass
    assert time.monotonic() - began < 2.0
    assert events.kinds() == ["forecast_failed", "planned", "started", "completed"]
    failed = events.of(ForecastFailed)[0]
    assert failed.provider == "uk-carbon-intensity"
    assert failed.zone == "GB"
    assert FAILURES[mode] in failed.error
    assert failed.action == "run_now"
    plan = events.of(Planned)[0].plan
    assert plan.decision == "forecast-unavailable"
    assert plan.delay == timedelta(0)
    record = events.of(Completed)[0].record
    assert record is session.record
    assert record.decision == "forecast-unavailable"
    assert record.forecast_error is not None and FAILURES[mode] in record.forecast_error
    # never silently zero: the intensity is unknown, and said to be
    assert record.baseline_intensity is None and record.baseline_intensity_source == "none"
    assert record.run_intensity is None and record.run_intensity_source == "none"
    retried = mode in ("500", "503", "truncated")
    assert server.count() == (2 if retried else 1)
    assert len(sleep.delays) == (1 if retried else 0)


async def test_raise_policy_gives_forecast_unavailable_from_the_httpx_error(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "truncated"
    async with uk(server, sleep) as provider:
        with pytest.raises(ForecastUnavailable) as caught:
            async with carbon_session(Policy(provider=provider, on_forecast_error="raise")):
                pass
    error = caught.value
    assert (error.provider, error.zone) == ("uk-carbon-intensity", "GB")
    assert "RemoteProtocolError" in error.cause
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)


async def test_session_ends_within_forecast_timeout_on_a_hung_server(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "hang"
    provider = uk(server, sleep, timeout=30)  # the session's bound is what stops it
    began = time.monotonic()
    with capture_events() as events:
        policy = Policy(provider=provider, max_delay="1h", forecast_timeout="0.3s")
        async with provider, carbon_session(policy):
            pass
    assert time.monotonic() - began < 2.0
    assert "no answer within forecast_timeout=0.3s" in events.of(ForecastFailed)[0].error


async def test_sessions_waiting_on_a_hung_request_share_its_deadline(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "hang"
    provider = uk(server, sleep, timeout=30)
    policy = Policy(provider=provider, max_delay="1h", forecast_timeout="0.3s")
    began = time.monotonic()
    with capture_events(None, ForecastFailed) as events:
        async with provider:
            await concurrent_sessions(policy, 200)
            # one request, and its failure is shared: a session right after fails fast
            async with carbon_session(policy):
                pass
    assert time.monotonic() - began < 2.0
    assert server.count() == 1
    errors = [e.error for e in events.of(ForecastFailed)]
    assert errors[:200] == ["no answer within forecast_timeout=0.3s"] * 200
    assert errors[200] == (
        "uk-carbon-intensity: forecast failed: no answer within 0.3s"
        " (a recent failure, remembered for a few seconds)"
    )


async def test_a_caller_with_an_earlier_deadline_stops_waiting_alone(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "hang"
    outcomes: dict[str, tuple[str, float]] = {}
    async with uk(server, sleep, timeout=30) as provider:
        start = anyio.current_time()

        async def ask(name: str, within: float) -> None:
            with pytest.raises(ForecastTimeout) as caught:
                await provider.forecast_by(NOW, NOW + timedelta(hours=1), start + within)
            exc = caught.value
            assert isinstance(exc, TimeoutError) and isinstance(exc, ForecastUnavailable)
            assert (exc.provider, exc.zone) == ("uk-carbon-intensity", "GB")
            outcomes[name] = (exc.cause, anyio.current_time() - start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "leader", 0.6)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, "impatient", 0.2)  # gives up first, on its own
            tg.start_soon(ask, "patient", 5.0)  # trusts the leader's bound: fails with it
    assert server.count() == 1
    assert outcomes["impatient"][0] == "no answer by the deadline"
    assert outcomes["leader"][0] == outcomes["patient"][0]
    assert re.fullmatch(r"no answer within 0\.[56]\d*s", outcomes["leader"][0])
    assert 0.15 < outcomes["impatient"][1] < 0.5
    assert 0.55 < outcomes["leader"][1] < 1.5 and 0.55 < outcomes["patient"][1] < 1.5


async def test_raise_policy_on_a_hung_server_raises_forecast_timeout(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "hang"
    async with uk(server, sleep, timeout=30) as provider:
        with pytest.raises(ForecastTimeout) as caught:
            async with carbon_session(
                Policy(provider=provider, forecast_timeout="0.2s", on_forecast_error="raise")
            ):
                pass
    assert caught.value.zone == "GB" and "no answer within" in str(caught.value)


async def test_empty_horizon_runs_now_and_says_so(server: GridServer, sleep: FakeSleep) -> None:
    server.mode = "empty"
    with VirtualClock.installed(NOW), capture_events() as events:
        async with uk(server, sleep) as provider:
            async with carbon_session(Policy(max_delay="4h", provider=provider)):
                pass
    assert events.kinds() == ["planned", "started", "completed"]
    plan = events.of(Planned)[0].plan
    assert plan.decision == "no-forecast" and plan.delay == timedelta(0)
    record = events.of(Completed)[0].record
    assert record.baseline_intensity is None and record.baseline_intensity_source == "none"
    assert record.provider == "uk-carbon-intensity"


async def test_horizon_shorter_than_the_delay_budget(server: GridServer, sleep: FakeSleep) -> None:
    server.mode = "short"  # two slots: 10:00-10:30 and 10:30-11:00
    with VirtualClock.installed(NOW) as clock, capture_events() as events:
        async with uk(server, sleep) as provider:
            async with carbon_session(Policy(max_delay="4h", provider=provider, jitter="0m")) as s:
                assert s.intensity is not None and s.intensity > 0
    plan = events.of(Planned)[0].plan
    assert plan.start <= datetime(2026, 3, 18, 11, 0, tzinfo=UTC)  # never past what it knows
    assert clock.now() == plan.start
    record = events.of(Completed)[0].record
    assert record.baseline_intensity == uk_value(datetime(2026, 3, 18, 10, 0, tzinfo=UTC))
    assert record.baseline_intensity_source == "forecast"


async def test_times_in_another_timezone_are_converted(
    server: GridServer, sleep: FakeSleep
) -> None:
    async with uk(server, sleep) as a:
        utc = await a.forecast(NOW, NOW + timedelta(hours=6))
    server.mode = "tz"
    async with uk(server, sleep) as b:
        shifted = await b.forecast(NOW, NOW + timedelta(hours=6))
    assert '+05:30"' in json.dumps(server.requests) or server.count() == 2
    assert shifted.slots == utc.slots
    assert shifted[0].start.tzinfo is UTC


# --- retries, Retry-After, the cache and single-flight --------------------------------------


async def test_503_then_success_is_retried_with_backoff(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.script = ["503", "503"]
    async with uk(server, sleep, retry=Retry(attempts=3, backoff=0.5)) as provider:
        forecast = await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert forecast and server.count() == 3
    assert 0.25 <= sleep.delays[0] <= 0.5 and 0.5 <= sleep.delays[1] <= 1.0


async def test_429_waits_what_retry_after_asks(server: GridServer, sleep: FakeSleep) -> None:
    server.script = ["429"]
    server.retry_after = "7"
    async with uk(server, sleep) as provider:
        assert await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert sleep.delays == [7.0]


async def test_429_with_an_http_date(server: GridServer, sleep: FakeSleep) -> None:
    server.script = ["429"]
    server.retry_after = email.utils.format_datetime(
        datetime.now(UTC) + timedelta(seconds=30), usegmt=True
    )
    async with uk(server, sleep) as provider:
        assert await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert 27 <= sleep.delays[0] <= 30


async def test_429_beyond_the_cap_fails_at_once_and_backs_off(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.mode = "429"
    server.retry_after = "3600"
    async with uk(server, sleep, retry=Retry(max_retry_after=60)) as provider:
        with pytest.raises(
            ForecastUnavailable, match="Retry-After 3600 s is more than max_retry_after=60 s"
        ):
            await provider.forecast(NOW, NOW + timedelta(hours=1))
        server.mode = "ok"
        with pytest.raises(ForecastUnavailable, match="rate limited"):
            await provider.forecast(NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert server.count() == 1 and sleep.delays == []


async def test_ttl_cache_one_request_per_half_hour(server: GridServer, sleep: FakeSleep) -> None:
    async with uk(server, sleep) as provider:
        assert provider.forecast_nowait(NOW, NOW + timedelta(hours=1)) is None
        first = await provider.forecast(NOW, NOW + timedelta(hours=1))
        again = await provider.forecast(NOW + timedelta(minutes=10), NOW + timedelta(hours=2))
        cached = provider.forecast_nowait(NOW, NOW + timedelta(hours=1))
        assert server.count() == 1
        assert cached is not None and cached.slots == first.slots and again
        await provider.forecast(NOW + timedelta(minutes=30), NOW + timedelta(hours=2))
        assert server.count() == 2  # a new half-hour, a new forecast
        clock = [time.monotonic() + 3600]
        provider._core.answers._monotonic = lambda: clock[0]  # the TTL has passed
        assert provider.forecast_nowait(NOW, NOW + timedelta(hours=1)) is None


@pytest.mark.parametrize("strategy", ["lowest", "calibrated"])
async def test_single_flight_1000_sessions_one_request(
    strategy: str, server: GridServer, sleep: FakeSleep
) -> None:
    evening = datetime(2026, 3, 18, 20, 7, tzinfo=UTC)  # the grid cleans up overnight: wait
    server.now = evening
    with VirtualClock.installed(evening), capture_events(None, Completed) as events:
        # a generous timeout: this test is about sharing one request, and a full collection of
        # the test process's heap (~0.2 s) must not turn it into a retry
        async with uk(server, sleep, timeout=10.0) as provider:
            policy = Policy(max_delay="4h", provider=provider, strategy=strategy)  # type: ignore[arg-type]
            await concurrent_sessions(policy, 1000)
    # one forecast request for all; the calibrated strategy also reads the last 72 h of
    # actuals (_calibrate.LOOKBACK), and that too is one request for all
    assert server.requests[0] == "/intensity/2026-03-18T20:00Z/fw48h"
    if strategy == "lowest":
        assert server.count() == 1
    else:
        assert server.requests[1:] == ["/intensity/2026-03-15T20:00Z/2026-03-18T20:30Z"]
    assert len(events) == 1000
    assert {e.record.provider for e in events.of(Completed)} == {"uk-carbon-intensity"}
    assert {e.record.decision for e in events.of(Completed)} == {"wait"}


async def test_waiters_take_over_when_the_leader_is_cancelled(
    server: GridServer, sleep: FakeSleep
) -> None:
    server.script = ["hang"]
    results: list[int] = []
    async with uk(server, sleep, timeout=5) as provider:

        async def leader() -> None:
            with anyio.move_on_after(0.2):
                await provider.forecast(NOW, NOW + timedelta(hours=1))

        async def waiter() -> None:
            results.append(len(await provider.forecast(NOW, NOW + timedelta(hours=1))))

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.wait_all_tasks_blocked()
            for _ in range(20):
                tg.start_soon(waiter)
    assert results == [3] * 20
    assert server.count() == 2


async def test_a_recent_failure_is_remembered_briefly(server: GridServer, sleep: FakeSleep) -> None:
    server.mode = "500"
    async with uk(server, sleep, retry=Retry(attempts=1)) as provider:
        for _ in range(5):
            with pytest.raises(ForecastUnavailable, match="HTTP 500"):
                await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert server.count() == 1


def test_the_client_follows_the_event_loop(server: GridServer, sleep: FakeSleep) -> None:
    provider = uk(server, sleep, ttl=0.001)

    async def use() -> int:
        provider._core.forget(("forecast", datetime(2026, 3, 18, 10, 0, tzinfo=UTC)))
        return len(await provider.forecast(NOW, NOW + timedelta(hours=1)))

    assert anyio.run(use) == 3
    assert anyio.run(use) == 3  # a new loop gets a new client; the old one is not reused
    anyio.run(provider.aclose)
    assert server.count() == 2


# --- Electricity Maps ------------------------------------------------------------------------


def em(
    server: GridServer, sleep: FakeSleep, zone: str = "GB", **kwargs: Any
) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(
        zone, token=EM_TOKEN, base_url=server.url + "/v3", timeout=0.5, sleep=sleep, **kwargs
    )


async def test_em_delay_is_measured_from_now_not_the_first_point(
    server: GridServer, sleep: FakeSleep
) -> None:
    now = datetime(2026, 3, 18, 20, 37, tzinfo=UTC)
    server.now = now  # the API's first point is 20:00, 37 minutes before now
    with VirtualClock.installed(now), capture_events() as events:
        async with em(server, sleep) as provider:
            async with carbon_session(Policy(max_delay="4h", provider=provider, jitter="0m")):
                pass
    plan = events.of(Planned)[0].plan
    assert plan.decision == "wait"
    assert plan.created_at == now
    assert plan.delay == timedelta(hours=4)  # the deadline, from now (not 20:00 + 4 h)
    assert plan.provider == "electricitymaps" and plan.zone == "GB"
    record = events.of(Completed)[0].record
    assert record.signal == "average/lifecycle"
    assert record.delay_s == 4 * 3600


async def test_em_query_options_and_cloud_regions(server: GridServer, sleep: FakeSleep) -> None:
    async with em(server, sleep, "gcp:europe-west4", granularity=15, emission_factor="direct") as p:
        forecast = await p.forecast(NOW, NOW + timedelta(hours=10))
    assert forecast.zone == "NL" and str(forecast.signal) == "average/direct"
    assert forecast[0].duration == timedelta(minutes=15)
    request = server.requests[0]
    for part in (
        "zone=NL",
        "emissionFactorType=direct",
        "temporalGranularity=15_minutes",
        "horizonHours=24",
    ):
        assert part in request
    assert server.headers[0]["auth-token"] == EM_TOKEN


async def test_em_by_location(server: GridServer, sleep: FakeSleep) -> None:
    provider = ElectricityMapsProvider(
        lat=51.5, lon=-0.12, token=EM_TOKEN, base_url=server.url + "/v3"
    )
    async with provider:
        assert await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert "lat=51.5000&lon=-0.1200" in server.requests[0]


async def test_em_history_recent_and_past(server: GridServer, sleep: FakeSleep) -> None:
    async with em(server, sleep, now=lambda: NOW) as provider:
        recent = await provider.history(NOW - timedelta(hours=6), NOW)
        past = await provider.history(NOW - timedelta(days=30), NOW - timedelta(days=15))
    assert server.requests[0].startswith("/v3/carbon-intensity/history?")
    assert all(r.startswith("/v3/carbon-intensity/past-range?") for r in server.requests[1:])
    assert len(server.requests) == 3  # 15 days in 10-day chunks
    assert recent and all(s.actual == s.forecast for s in recent)
    assert len(past) == 15 * 24 + 1  # 10:07 to 10:07 overlaps 361 hours


def test_em_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELECTRICITYMAPS_API_TOKEN", raising=False)
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN", raising=False)
    with pytest.raises(ValueError, match="ELECTRICITYMAPS_API_TOKEN"):
        ElectricityMapsProvider("DE")
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "env-token-123")
    provider = ElectricityMapsProvider("DE")
    assert "env-token-123" not in repr(provider) and "env-token-123" not in repr(vars(provider))
    with pytest.raises(ValueError, match="granularity must be 5, 15 or 60"):
        ElectricityMapsProvider("DE", granularity=30)


# --- WattTime ---------------------------------------------------------------------------------


def wt(server: GridServer, sleep: FakeSleep) -> WattTimeProvider:
    return WattTimeProvider(
        "CAISO_NORTH", username=WT_USER, password=WT_PASSWORD, base_url=server.url, sleep=sleep
    )


async def test_watttime_marginal_forecast_and_token_refresh(
    server: GridServer, sleep: FakeSleep
) -> None:
    async with wt(server, sleep) as provider:
        forecast = await provider.forecast(NOW, NOW + timedelta(hours=2))
        assert str(forecast.signal) == "marginal/direct" and forecast.zone == "CAISO_NORTH"
        assert forecast[0].duration == timedelta(minutes=5)
        first = forecast[0]
        assert first.forecast == pytest.approx(2 * uk_value(first.start) * 0.45359237, abs=1e-3)
        server.wt_tokens.clear()  # the token expires early
        await provider.forecast(NOW + timedelta(minutes=5), NOW + timedelta(hours=2))
        assert provider.logins == 2
        history = await provider.history(NOW - timedelta(hours=1), NOW)
        assert len(history) == 13 and all(s.actual == s.forecast for s in history)
    assert [r.split("?")[0] for r in server.requests] == [
        "/login",
        "/v3/forecast",
        "/v3/forecast",
        "/login",
        "/v3/forecast",
        "/v3/historical",
    ]


async def test_watttime_record_says_marginal(server: GridServer, sleep: FakeSleep) -> None:
    with VirtualClock.installed(NOW), capture_events() as events:
        async with wt(server, sleep) as provider:
            async with carbon_session(Policy(max_delay="1h", provider=provider)):
                pass
    assert events.of(Completed)[0].record.signal == "marginal/direct"


def test_watttime_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTTIME_USERNAME", raising=False)
    monkeypatch.delenv("WATTTIME_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="WATTTIME_USERNAME"):
        WattTimeProvider("CAISO_NORTH")


# --- FallbackProvider ------------------------------------------------------------------------


async def test_fallback_records_who_answered(server: GridServer, sleep: FakeSleep) -> None:
    broken = ElectricityMapsProvider("GB", token="wrong-token", base_url=server.url + "/v3")
    fallback = FallbackProvider([broken, uk(server, sleep)])
    with VirtualClock.installed(NOW), capture_events() as events:
        async with fallback, carbon_session(Policy(max_delay="2h", provider=fallback)):
            pass
    plan = events.of(Planned)[0].plan
    record = events.of(Completed)[0].record
    assert plan.provider == record.provider == "uk-carbon-intensity"
    assert record.signal == "average/direct" and record.zone == "GB"
    assert "forecast_failed" not in events.kinds()
    assert fallback.fallbacks == 2  # the forecast, and the history the planner reads


async def test_fallback_skips_a_hung_provider(server: GridServer, sleep: FakeSleep) -> None:
    fallback = FallbackProvider(
        [FailingProvider(hang=True, name="hung"), uk(server, sleep)], timeout=0.1
    )
    async with fallback:
        forecast = await fallback.forecast(NOW, NOW + timedelta(hours=1))
    assert forecast.provider == "uk-carbon-intensity"


async def test_fallback_all_fail(server: GridServer, sleep: FakeSleep) -> None:
    server.mode = "503"
    fallback = FallbackProvider([FailingProvider(name="first"), uk(server, sleep)])
    async with fallback:
        with pytest.raises(
            ForecastUnavailable,
            match=r"all 2 providers failed \(first: test; uk-carbon-intensity: HTTP 503",
        ) as caught:
            await fallback.forecast(NOW, NOW + timedelta(hours=1))
    assert caught.value.provider == fallback.name


async def test_fallback_nowait_and_history() -> None:
    day = synthetic_day()
    static = StaticForecastProvider(day, name="static-gb")
    fallback = FallbackProvider([static])
    start = datetime(2026, 3, 18, 3, 0, tzinfo=UTC)
    found = fallback.forecast_nowait(start, start + timedelta(hours=1))
    assert found is not None and found.provider == "static-gb"
    history = await fallback.history(start, start + timedelta(hours=2))
    assert len(history) == 4 and history.provider == "static-gb"
    nowait = fallback.history_nowait(start, start + timedelta(hours=2))
    assert nowait is not None and list(nowait) == list(history)
    live = UKCarbonIntensityProvider(base_url="http://127.0.0.1:9")  # nothing cached: None
    assert FallbackProvider([live, static]).history_nowait(start, start) is None
    with pytest.raises(ValueError, match="at least one"):
        FallbackProvider([])


# --- history on the offline providers ---------------------------------------------------------


async def test_static_and_csv_history_keep_slots_with_actuals(tmp_path: Any) -> None:
    day = synthetic_day()
    half = [s if i < 10 else type(s)(s.start, s.end, s.forecast) for i, s in enumerate(day)]
    static = StaticForecastProvider(half)
    start, end = day[0].start, day[20].start
    assert isinstance(static, HistoryProvider)
    history = await static.history(start, end)
    assert len(history) == 10 and all(s.actual is not None for s in history)
    path = tmp_path / "t.csv"
    lines = ["from,to,intensity_forecast,intensity_actual"]
    lines += [
        f"{s.start:%Y-%m-%dT%H:%MZ},{s.end:%Y-%m-%dT%H:%MZ},{s.forecast},{s.actual or ''}"
        for s in half
    ]
    path.write_text("\n".join(lines) + "\n")
    csv = CsvForecastProvider(path)
    assert csv.history_nowait(start, end) is None  # not read yet
    csv_history = await csv.history(start, end)
    assert [s.start for s in csv_history] == [s.start for s in history]
    assert list(csv.history_nowait(start, end) or ()) == list(csv_history)
    assert list(static.history_nowait(start, end) or ()) == list(history)
    # sessions asking for the same slots get the same object (so they share one calibration),
    # also when sessions on two providers take turns
    shared = static.history_nowait(start, end)
    from_csv = csv.history_nowait(start, end)
    for _ in range(3):
        assert static.history_nowait(start, end) is shared
        assert csv.history_nowait(start, end) is from_csv


def test_default_provider_is_shared_uk_national() -> None:
    provider = default_provider()
    assert provider is default_provider()
    assert isinstance(provider, UKCarbonIntensityProvider) and provider.zone == "GB"
    assert isinstance(provider, HistoryProvider)


async def test_no_worker_thread_once_httpx_is_loaded(
    server: GridServer, sleep: FakeSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    # once httpx is loaded (here by a first provider; in an app, often by its LLM SDK), a
    # client is made at once, without starting a thread (a thread start and its GIL
    # hand-offs stall the event loop for milliseconds)
    async with uk(server, sleep) as first:
        await first.forecast(NOW, NOW + timedelta(hours=1))
    threads: list[object] = []

    async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(func)
        return func(*args)

    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    async with uk(server, sleep) as provider:
        assert len(await provider.forecast(NOW, NOW + timedelta(hours=1))) == 3
    assert threads == []


def test_capabilities_are_types_checked_by_mypy_and_at_run_time() -> None:
    """Each provider's optional capabilities, as protocols: mypy checks the assignments below,
    ``isinstance`` checks the same at run time (decided once per class)."""
    live = UKCarbonIntensityProvider()
    static = StaticForecastProvider(synthetic_day())
    fallback = FallbackProvider([live, static])
    by: list[ForecastBy | HistoryBy] = [live, live]
    nowait: list[ForecastNowait | HistoryNowait] = [live, static, fallback]
    history: list[HistoryProvider] = [live, static, fallback]
    for provider in (live, static, fallback):
        assert isinstance(provider, ForecastNowait) and isinstance(provider, HistoryNowait)
        assert isinstance(provider, HistoryProvider)
        assert isinstance(provider, ForecastBy) == (provider is live)
    assert len(by) + len(nowait) + len(history) == 8
    failing = FailingProvider()
    assert not isinstance(failing, ForecastNowait | HistoryProvider | ForecastBy)
    assert isinstance(failing, ForecastProvider)

    class Blocked(StaticForecastProvider):
        forecast_nowait = None  # type: ignore[assignment]  # a subclass that opts out

    assert not isinstance(Blocked(synthetic_day()), ForecastNowait)
