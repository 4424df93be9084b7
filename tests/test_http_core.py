"""The layers of the HTTP core, each alone: secrets, retry, payload, client, flight, cache, core.

The providers over all of them are tested against a loopback server in test_providers_live.py.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from ecoasync import ForecastTimeout, ForecastUnavailable
from ecoasync.providers import Retry
from ecoasync.providers._http import (
    RELEASE_BATCH,
    HttpCore,
    PayloadError,
    Secret,
    SecretHeader,
    TtlCache,
    _client,
    as_number,
    parse_retry_after,
    secret_from,
)
from ecoasync.providers._http._client import Client
from ecoasync.providers._http._flight import Flights
from ecoasync.providers._http._payload import Response, decode
from ecoasync.providers._http._retry import AttemptFailed, Retrying
from ecoasync.providers._http._secrets import Scrubber, forget_locals

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


# --- secrets --------------------------------------------------------------------------------


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("tok-123456")
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('***')"
    assert secret.reveal() == "tok-123456"
    assert Secret("tok-123456").scrub("a tok-123456 b") == "a *** b"
    assert Secret("abc").scrub("abcdef") == "abcdef"  # too short to scrub words with
    with pytest.raises(ValueError, match="printable ASCII"):
        Secret("tök")
    with pytest.raises(ValueError, match="printable ASCII"):
        secret_from("line\nbreak", ("X",), what="token", owner="P")
    with pytest.raises(ValueError, match="set the environment variable X_TOKEN"):
        secret_from(None, ("X_TOKEN",), what="token", owner="P")


def test_a_secret_header_is_set_as_the_request_goes() -> None:
    auth = SecretHeader("authorization", Secret("s3cret-value"), prefix="Bearer ")
    assert "s3cret" not in repr(auth)
    request = auth(httpx.Request("GET", "http://x/"))
    assert request.headers["authorization"] == "Bearer s3cret-value"


def test_the_scrubber_asks_for_the_secrets_each_time() -> None:
    secrets = [Secret("first-token")]
    scrub = Scrubber(lambda: secrets)
    assert scrub("first-token second-token") == "*** second-token"
    secrets.append(Secret("second-token"))
    assert scrub("first-token second-token") == "*** ***"


def test_forget_locals_empties_the_frames_of_a_chain() -> None:
    def deep(token: str) -> None:
        raise ValueError("failed")

    def outer(token: str) -> None:
        try:
            deep(token)
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc

    try:
        outer("s3cret-value")
    except RuntimeError as caught:
        error = caught
    frames = []
    exc: BaseException | None = error
    while exc is not None:
        tb = exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        exc = exc.__cause__
    assert any(f.f_locals.get("token") == "s3cret-value" for f in frames)
    forget_locals(error)
    assert not any("token" in f.f_locals for f in frames)


# --- retry ----------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120", now=NOW) == 120
    assert parse_retry_after("Wed, 18 Mar 2026 12:01:00 GMT", now=NOW) == 60
    assert parse_retry_after("Wed, 18 Mar 2026 11:00:00 GMT", now=NOW) == 0
    assert parse_retry_after("1e12", now=NOW) == 1e12
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after("inf", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_retry_options_are_checked() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        Retry(backoff=-1)
    with pytest.raises(ValueError, match="max_retry_after"):
        Retry(max_retry_after=True)


def attempts_that(*outcomes: AttemptFailed | str) -> Callable[[], Awaitable[str]]:
    queue = list(outcomes)

    async def attempt() -> str:
        outcome = queue.pop(0)
        if isinstance(outcome, AttemptFailed):
            raise outcome
        return outcome

    return attempt


async def test_retrying_backs_off_then_gives_up_saying_how_often_it_tried() -> None:
    sleeps = Sleeps()
    retrying = Retrying(Retry(attempts=3, backoff=0.5), max_block=60, sleep=sleeps)
    failure = AttemptFailed("HTTP 503", retry=True, status=503)
    assert await retrying(attempts_that(failure, failure, "ok")) == "ok"
    assert 0.25 <= sleeps.delays[0] <= 0.5 and 0.5 <= sleeps.delays[1] <= 1.0
    with pytest.raises(AttemptFailed, match="^HTTP 503 after 3 attempts$") as caught:
        await retrying(attempts_that(failure, failure, failure))
    assert caught.value.status == 503 and retrying.retries == 4
    with pytest.raises(AttemptFailed, match="^refused$"):  # not worth another try
        await retrying(attempts_that(AttemptFailed("refused", retry=False), "ok"))


async def test_a_long_retry_after_stops_requests_for_at_most_max_block() -> None:
    clock, sleeps = Clock(), Sleeps()
    retrying = Retrying(Retry(max_retry_after=60), max_block=900, sleep=sleeps, monotonic=clock)
    asked = AttemptFailed("rate limited (HTTP 429)", retry=True, wait=30, status=429)
    assert await retrying(attempts_that(asked, "ok")) == "ok"
    assert sleeps.delays == [30]  # within max_retry_after: waited
    forever = AttemptFailed("rate limited (HTTP 429)", retry=True, wait=1e12, status=429)
    with pytest.raises(AttemptFailed) as caught:
        await retrying(attempts_that(forever))
    assert caught.value.cause == (
        "rate limited (HTTP 429); Retry-After 1000000000000 s is more than max_retry_after=60 s:"
        " no request for 900 s (capped at the provider's ttl; the server asked for"
        " 1000000000000 s)"
    )
    clock.now += 899
    with pytest.raises(AttemptFailed, match="no request for 1 s more"):
        await retrying(attempts_that("never asked"))
    clock.now += 1
    assert await retrying(attempts_that("ok")) == "ok"


# --- payload --------------------------------------------------------------------------------


def test_only_a_2xx_body_is_data() -> None:
    body = json.dumps({"data": []}).encode()
    assert decode(Response(200, body), now=NOW) == {"data": []}
    with pytest.raises(AttemptFailed, match="HTTP 302 Found: a redirect to http://y/,") as caught:
        decode(Response(302, body, reason="Found", location="http://y/"), now=NOW)
    assert not caught.value.retry
    with pytest.raises(AttemptFailed, match="^HTTP 304 Not Modified: a redirect, not followed"):
        decode(Response(304, b"", reason="Not Modified"), now=NOW)
    with pytest.raises(AttemptFailed, match="^HTTP 101") as caught:
        decode(Response(101, body, reason="Switching Protocols"), now=NOW)
    with pytest.raises(AttemptFailed) as caught:
        decode(Response(503, b"", reason="Service Unavailable"), now=NOW)
    assert caught.value.retry and caught.value.status == 503
    with pytest.raises(AttemptFailed) as caught:
        decode(Response(429, b"", retry_after="7"), now=NOW)
    assert caught.value.retry and caught.value.wait == 7
    with pytest.raises(AttemptFailed, match="credentials were refused"):
        decode(Response(401, b"", reason="Unauthorized"), now=NOW)
    with pytest.raises(AttemptFailed, match="malformed JSON"):
        decode(Response(200, b"<html>"), now=NOW)


def test_an_error_body_is_scrubbed_and_never_shown_whole() -> None:
    echo = json.dumps({"message": "token s3cret-value is not allowed"}).encode()
    response = Response(400, echo, reason="Bad Request")
    assert "s3cret" not in repr(response)
    scrub = Scrubber(lambda: [Secret("s3cret-value")])
    with pytest.raises(AttemptFailed) as caught:
        decode(response, now=NOW, scrub=scrub)
    assert caught.value.cause == "HTTP 400 Bad Request: token *** is not allowed"


def test_a_number_too_large_for_a_float_is_a_payload_error() -> None:
    assert as_number(10**20, "x") == 1e20
    with pytest.raises(PayloadError, match="^x is an integer of 1329 bits, too large"):
        as_number(10**400, "x")
    with pytest.raises(PayloadError, match="^x is float nan, expected a finite number"):
        as_number(float("nan"), "x")


# --- client ---------------------------------------------------------------------------------


def ok_transport(seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(handle)


async def test_the_client_sends_the_secret_header_and_reads_the_body() -> None:
    seen: list[httpx.Request] = []
    client = Client("http://api.test", transport=ok_transport(seen))
    auth = SecretHeader("auth-token", Secret("tok-123456"))
    answer = await client.get("/x", params={"zone": "DE"}, auth=auth)
    assert (answer.status, json.loads(answer.body)) == (200, {"ok": True})
    assert seen[0].headers["auth-token"] == "tok-123456"
    assert seen[0].url == "http://api.test/x?zone=DE"
    assert client.requests == 1
    await client.aclose()


async def test_a_body_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "MAX_BODY_BYTES", 10)
    client = Client("http://api.test", transport=ok_transport())
    with pytest.raises(AttemptFailed, match="larger than 10 bytes"):
        await client.get("/x")
    await client.aclose()


async def test_making_the_client_fails_as_an_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx missing (or a client that cannot be made) is a failed attempt, not a crash."""

    def broken(tls: bool) -> None:
        raise ImportError("No module named 'httpcore'")

    monkeypatch.setattr(_client, "_loaded", lambda tls: True)
    monkeypatch.setattr(_client, "_load", broken)
    client = Client("http://api.test", transport=ok_transport())
    with pytest.raises(AttemptFailed, match="could not make the HTTP client: ImportError") as c:
        await client.get("/x")
    assert not c.value.retry and isinstance(c.value.__cause__, ImportError)


def test_each_event_loop_gets_its_own_client() -> None:
    client = Client("http://api.test", transport=ok_transport())
    made: list[object] = []

    async def use() -> None:
        await client.get("/x")
        made.append(client._clients.get(anyio.lowlevel.current_token().native_token))
        await client.get("/x")  # the same client again, in the same loop
        assert len(client._clients) >= 1

    threads = [threading.Thread(target=anyio.run, args=(use,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(made) == 2 and made[0] is not made[1] and None not in made


# --- flight ---------------------------------------------------------------------------------


async def test_a_flight_shares_its_value_and_its_error_at_once() -> None:
    flights: Flights[str] = Flights()
    calls = [0]
    release = anyio.Event()

    async def call() -> str:
        calls[0] += 1
        await release.wait()
        raise ValueError("a payload that parsed but is not a forecast")

    outcomes: list[str] = []

    async def leader() -> None:
        with pytest.raises(ValueError):
            await flights.lead(flights.here(), "k", call, deadline=None, timed_out=TimeoutError)

    async def waiter() -> None:
        flight = flights.here()["k"]
        await flight.join()
        outcomes.append(repr(flight.error))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await anyio.wait_all_tasks_blocked()
        for _ in range(20):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == [1]
    assert outcomes == ["ValueError('a payload that parsed but is not a forecast')"] * 20
    assert "k" not in flights.here()


async def test_a_flight_gives_up_at_its_deadline() -> None:
    flights: Flights[str] = Flights()

    async def hang() -> str:
        await anyio.sleep_forever()
        raise AssertionError

    began = anyio.current_time()
    with pytest.raises(TimeoutError, match="had 0.05"):
        await flights.lead(
            flights.here(),
            "k",
            hang,
            deadline=began + 0.05,
            timed_out=lambda had: TimeoutError(f"had {had:.2f}"),
        )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio shuffles a turn's tasks
async def test_a_flight_wakes_its_waiters_a_gate_per_turn(anyio_backend: str) -> None:
    flights: Flights[str] = Flights()
    answered = anyio.Event()
    done = [0]
    per_turn: list[int] = []

    async def call() -> str:
        await answered.wait()
        return "v"

    async def waiter() -> None:
        await flights.here()["k"].join()
        done[0] += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: flights.lead(flights.here(), "k", call, deadline=None, timed_out=TimeoutError)
        )
        await anyio.wait_all_tasks_blocked()
        for _ in range(3 * RELEASE_BATCH):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        answered.set()
        while done[0] < 3 * RELEASE_BATCH:
            before = done[0]
            await anyio.lowlevel.checkpoint()
            per_turn.append(done[0] - before)
    assert max(per_turn) <= RELEASE_BATCH
    assert sum(1 for n in per_turn if n) >= 3


async def test_one_requests_herd_does_not_hold_back_another_answer() -> None:
    """Each request paces the waking of its own waiters: a provider whose answer arrives while
    another provider is waking ten thousand waiters wakes its own at once (it waited behind
    them all when the pace was one per event loop: 0.2 ms alone, ~99 ms behind)."""
    herd, other = (
        HttpCore(provider="herd", base_url="http://x"),
        HttpCore(provider="other", base_url="http://x"),
    )
    herd_answer, other_answer = anyio.Event(), anyio.Event()
    turn = [0]
    other_woke_at: list[int] = []

    async def fetch_herd(key: object) -> str:
        await herd_answer.wait()
        return "herd"

    async def fetch_other(key: object) -> str:
        await other_answer.wait()
        return "other"

    async def ask_other() -> None:
        assert await other.cached("k", 60.0, fetch_other) == "other"
        other_woke_at.append(turn[0])

    n = 2_000 if sys.gettrace() is None else 400
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(herd.cached, "k", 60.0, fetch_herd)
        tg.start_soon(other.cached, "k", 60.0, fetch_other)  # the other request's leader
        tg.start_soon(ask_other)  # and a waiter of it
        await anyio.wait_all_tasks_blocked()
        herd_answer.set()
        for _ in range(10):  # the herd is being woken, a gate per turn
            await anyio.lowlevel.checkpoint()
            turn[0] += 1
        other_answer.set()
        answered_at = turn[0]
        while not other_woke_at:
            await anyio.lowlevel.checkpoint()
            turn[0] += 1
    assert other_woke_at[0] - answered_at <= 5  # a few turns, not the herd's n/8


# --- cache ----------------------------------------------------------------------------------


def test_the_cache_keeps_a_value_for_its_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(clock, size=4)
    assert cache.get("a") is None
    cache.put("a", "A", 10)
    assert cache.get("a") == "A"
    clock.now += 10
    assert cache.get("a") is None and len(cache) == 0
    for key in "bcde":
        cache.put(key, key.upper(), 1 if key < "d" else 100)
    clock.now += 5
    cache.put("f", "F", 10)  # full: the stale ones go
    assert len(cache) == 3 and cache.get("d") == "D"
    cache.forget("d")
    assert cache.get("d") is None
    cache.clear()
    assert len(cache) == 0


def test_the_cache_is_shared_safely_by_threads() -> None:
    cache: TtlCache[int] = TtlCache(size=64)

    def hammer(offset: int) -> None:
        for i in range(3_000):
            cache.put((offset, i % 300), i, 0.0 if i % 2 else 60.0)
            cache.get((offset, (i * 7) % 300))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) > 0


# --- the core -------------------------------------------------------------------------------


def core_over(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> HttpCore:
    return HttpCore(
        provider="p", base_url="http://api.test", transport=httpx.MockTransport(handler), **options
    )


async def test_a_parser_that_trips_on_anything_gives_forecast_unavailable() -> None:
    core = core_over(lambda request: httpx.Response(200, json={"n": 10**400}))

    def parse(data: Any) -> float:
        return float(data["n"])  # OverflowError, not a ValueError

    with pytest.raises(ForecastUnavailable) as caught:
        await core.fetch("/x", parse, zone="Z", what="forecast")
    error = caught.value
    assert str(error) == "p: forecast failed: unexpected payload: int too large to convert to float"
    assert (error.provider, error.zone) == ("p", "Z")
    assert isinstance(error.__cause__, OverflowError)


async def test_a_failure_of_any_kind_is_shared_and_remembered() -> None:
    core = core_over(lambda request: httpx.Response(200, json={}))
    calls = [0]

    async def fetch(key: object) -> str:
        calls[0] += 1
        await anyio.sleep(0.01)
        raise KeyError("slots")

    async def ask() -> str:
        with pytest.raises(ForecastUnavailable) as caught:
            await core.cached(("forecast", 1), 60.0, fetch, zone="Z")
        return str(caught.value)

    results: list[str] = []

    async def collect() -> None:
        results.append(await ask())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(collect)
    assert calls == [1]
    assert set(results) == {"p: forecast failed: unexpected payload: KeyError: 'slots'"}
    later = await ask()  # remembered for a few seconds: no new call
    assert later.endswith("(a recent failure, remembered for a few seconds)") and calls == [1]


async def test_a_waiter_with_an_earlier_deadline_leaves_alone() -> None:
    core = core_over(lambda request: httpx.Response(200, json={}))

    async def slow(key: object) -> str:
        await anyio.sleep(0.2)
        return "v"

    now = anyio.current_time()
    got: list[str] = []

    async def patient() -> None:
        got.append(await core.cached("k", 60.0, slow, deadline=now + 5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(patient)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ForecastTimeout, match="no answer by the deadline"):
            await core.cached("k", 60.0, slow, deadline=now + 0.05)
    assert got == ["v"]


def test_each_layer_imports_only_the_layers_below_it() -> None:
    """The HTTP core's layers, bottom up; a layer may import those before it, never after."""
    import ast
    from pathlib import Path

    from ecoasync.providers import _http as package

    order = ["_secrets", "_retry", "_payload", "_client", "_flight", "_cache", "_core"]
    folder = Path(package.__file__).parent
    assert sorted(p.stem for p in folder.glob("_*.py") if p.stem != "__init__") == sorted(order)
    for rank, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        }
        assert imported <= set(order[:rank]), (name, imported - set(order[:rank]))
