"""Faults an adversarial trial found in the live providers (issue 17), each against a real
loopback server: nothing hangs, a failure is shared at once, a session's entry is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import structlog

from ecoasync import EventBus, ForecastUnavailable, Policy, carbon_session
from ecoasync.events import Completed, ForecastFailed, Planned
from ecoasync.providers import Retry, UKCarbonIntensityProvider
from ecoasync.testing import VirtualClock, capture_events
from tests.grid_server import GridServer

NOW = datetime(2026, 3, 18, 20, 7, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[GridServer]:
    with GridServer() as srv:
        srv.now = NOW
        yield srv


async def no_sleep(_: float) -> None:
    await anyio.lowlevel.checkpoint()


# --- 1. two event loops, one provider ------------------------------------------------------


@pytest.mark.parametrize("second", ["asyncio", "trio"])
def test_two_event_loops_share_one_provider_without_hanging(
    server: GridServer, second: str
) -> None:
    """The default provider is process-wide: an async app and ``@carbon_aware`` in a worker
    thread share it. A session on the second loop must not join the first loop's request
    (it would be woken from the wrong thread, and hang): it makes its own, within its bound."""
    server.script = ["late"]  # the first loop's request answers after 0.6 s
    server.delay = 0.6
    provider = UKCarbonIntensityProvider(base_url=server.url, timeout=5)
    # no delay, and the forecast is needed on entry ("raise"): one forecast each, on entry
    policy = Policy(provider=provider, forecast_timeout="3s", on_forecast_error="raise")
    outcomes: dict[str, tuple[float, str, float | None]] = {}

    def run(name: str, backend: str) -> None:
        async def session() -> None:
            bus = EventBus()
            records: list[Completed] = []
            bus.subscribe(records.append, Completed)
            began = time.monotonic()
            async with carbon_session(policy, bus=bus):
                pass
            record = records[0].record
            outcomes[name] = (time.monotonic() - began, record.decision, record.baseline_intensity)
            await provider.aclose()  # this loop's client

        anyio.run(session, backend=backend)

    first = threading.Thread(target=run, args=("first", "asyncio"), daemon=True)
    first.start()
    assert server.arrived.wait(5)  # the first loop's request is in flight
    second_thread = threading.Thread(target=run, args=("second", second), daemon=True)
    second_thread.start()
    second_thread.join(6)
    first.join(6)
    assert not second_thread.is_alive(), "a session on the second loop hung"
    assert not first.is_alive()
    waited, decision, intensity = outcomes["second"]
    assert waited < 3.0  # forecast_timeout holds
    assert decision != "forecast-unavailable" and intensity is not None  # it got a forecast
    assert outcomes["first"][1] != "forecast-unavailable"
    assert server.count() == 2  # one request per loop


# --- 7. one bound for the whole entry ------------------------------------------------------


async def test_entering_takes_at_most_forecast_timeout_when_history_hangs(
    server: GridServer,
) -> None:
    """The forecast answers late, then the history request hangs: entering still takes no
    more than ``forecast_timeout`` (history gets what the forecast left, then the plan uses
    the forecast alone)."""
    server.script = ["late", "hang"]
    server.delay = 0.6
    provider = UKCarbonIntensityProvider(base_url=server.url, timeout=30, retry=Retry(attempts=1))
    policy = Policy(max_delay="4h", provider=provider, forecast_timeout="1s")
    with (
        VirtualClock.installed(NOW),
        capture_events(None, Planned) as events,
        structlog.testing.capture_logs() as logs,
    ):
        async with provider:
            began = time.monotonic()
            async with carbon_session(policy):
                entered = time.monotonic() - began
    assert entered < 1.4  # 1 s, and the slack of a busy machine; it was 0.6 + 1 s
    assert [r.split("/")[1] for r in server.requests] == ["intensity", "intensity"]
    assert events.of(Planned)[0].plan.decision != "forecast-unavailable"
    failed = [e for e in logs if e["event"] == "ecoasync.history_failed"]
    assert failed and failed[0]["action"] == "forecast-only"


# --- 8. a failed shared request fails every waiter at once ---------------------------------


@pytest.mark.parametrize(
    ("mode", "cause"),
    [
        ("overlap", "forecast slots overlap"),
        ("huge", "data[0].intensity.forecast is an integer of 1329 bits"),
    ],
)
async def test_a_payload_that_fails_after_parsing_fails_all_waiters_at_once(
    server: GridServer, mode: str, cause: str
) -> None:
    server.mode = mode
    provider = UKCarbonIntensityProvider(base_url=server.url, timeout=5, sleep=no_sleep)
    policy = Policy(max_delay="4h", provider=provider, strategy="lowest")

    async def job() -> None:
        async with carbon_session(policy):
            pass

    began = time.monotonic()
    with VirtualClock.installed(NOW), capture_events(None, ForecastFailed) as events:
        async with provider, anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(job)
    assert time.monotonic() - began < 3.0  # it was 200 requests, one after another
    assert server.count() == 1
    errors = [e.error for e in events.of(ForecastFailed)]
    assert len(errors) == 200
    assert all("unexpected payload" in e and cause in e for e in errors), errors[0]


# --- lower severity: Retry-After without end, redirects -------------------------------------


async def test_a_retry_after_of_a_lifetime_is_capped_at_the_ttl(server: GridServer) -> None:
    server.mode = "429"
    server.retry_after = "1e12"
    provider = UKCarbonIntensityProvider(base_url=server.url, ttl=60, sleep=no_sleep)
    async with provider:
        with pytest.raises(ForecastUnavailable) as caught:
            await provider.forecast(NOW, NOW + timedelta(hours=1))
        assert "Retry-After 1000000000000 s is more than max_retry_after=60 s" in str(caught.value)
        assert "no request for 60 s (capped at the provider's ttl" in str(caught.value)
        server.mode = "ok"
        with pytest.raises(ForecastUnavailable, match=r"no request for (59|60) s more"):
            await provider.forecast(NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert server.count() == 1


async def test_the_body_of_a_redirect_is_not_a_forecast(server: GridServer) -> None:
    server.mode = "302"  # its body is a well-formed forecast
    provider = UKCarbonIntensityProvider(base_url=server.url, sleep=no_sleep)
    async with provider:
        with pytest.raises(ForecastUnavailable) as caught:
            await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert "HTTP 302 Found: a redirect to http://127.0.0.1:" in str(caught.value)
    assert "not followed (set base_url to where it leads)" in caught.value.cause
    assert server.count() == 1  # not retried


async def test_a_client_that_cannot_be_made_is_forecast_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: making the client (importing httpx, building TLS, reading proxy settings) can
    fail too, and leaves as the documented error, not as an ImportError."""
    from ecoasync.providers._http import _client

    def broken(tls: bool) -> None:
        raise ImportError("No module named 'httpcore'")

    monkeypatch.setattr(_client, "_loaded", lambda tls: False)
    monkeypatch.setattr(_client, "_load", broken)
    provider = UKCarbonIntensityProvider(base_url="https://grid.invalid", sleep=no_sleep)
    with pytest.raises(ForecastUnavailable) as caught:
        await provider.forecast(NOW, NOW + timedelta(hours=1))
    error = caught.value
    assert (error.provider, error.zone) == ("uk-carbon-intensity", "GB")
    assert error.cause == "could not make the HTTP client: ImportError: No module named 'httpcore'"
    assert isinstance(error.__cause__, ImportError)
