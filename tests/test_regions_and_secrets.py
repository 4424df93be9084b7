"""Cloud regions → grid zones; and tokens never leak into logs, events, records or errors."""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rich.traceback
import structlog

from ecoasync import EventBus, ForecastUnavailable, Policy, carbon_session
from ecoasync._records import to_jsonable
from ecoasync.events import Event
from ecoasync.providers import (
    ElectricityMapsProvider,
    FallbackProvider,
    ForecastProvider,
    Retry,
    UnknownRegionError,
    WattTimeProvider,
    zone_for,
)
from ecoasync.providers.regions import CLOUDS, cloud_regions, resolve_zone
from ecoasync.testing import VirtualClock
from tests.grid_server import EM_TOKEN, WT_PASSWORD, WT_USER, GridServer

NOW = datetime(2026, 3, 18, 20, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("region", "zone"),
    [
        ("aws:eu-west-2", "GB"),
        ("aws:eu-west-1", "IE"),
        ("aws:eu-central-1", "DE"),
        ("aws:us-west-1", "US-CAL-CISO"),
        ("aws:us-east-1", "US-MIDA-PJM"),
        ("gcp:europe-west4", "NL"),
        ("gcp:europe-west9", "FR"),
        ("google:us-central1", "US-MIDW-MISO"),
        ("azure:westeurope", "NL"),
        ("azure:West Europe", "NL"),
        ("Azure:uksouth", "GB"),
        ("azure:northeurope", "IE"),
        # US regions: the balancing authority of the utility that serves the site
        ("aws:us-west-2", "US-NW-BPAT"),
        ("gcp:us-east1", "US-CAR-SC"),
        ("gcp:us-west4", "US-NW-NEVP"),
        ("azure:westus2", "US-NW-GCPD"),
        ("azure:westcentralus", "US-NW-WACM"),
        ("aws:mx-central-1", "MX"),
    ],
)
def test_known_regions(region: str, zone: str) -> None:
    assert zone_for(region) == zone
    assert resolve_zone(region) == zone


def test_every_zone_is_written_as_an_electricity_maps_key() -> None:
    for cloud, table in CLOUDS.items():
        for region, zone in table.items():
            assert re.fullmatch(r"[A-Z]{2}(-[A-Z0-9]+)*", zone), (cloud, region, zone)
            assert region == region.lower().strip(), (cloud, region)


def test_coverage_of_major_regions() -> None:
    assert len(CLOUDS["aws"]) >= 30 and len(CLOUDS["gcp"]) >= 35 and len(CLOUDS["azure"]) >= 40
    assert cloud_regions("google") is CLOUDS["gcp"]


def test_unknown_region_lists_close_matches() -> None:
    with pytest.raises(UnknownRegionError, match="did you mean aws:eu-west-2") as caught:
        zone_for("aws:eu-west-22")
    assert "aws:eu-west-2" in caught.value.suggestions
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UnknownRegionError, match="unknown cloud 'oracle'"):
        zone_for("oracle:uk-london-1")
    with pytest.raises(UnknownRegionError, match="written '<cloud>:<region>'"):
        zone_for("eu-west-2")


def test_plain_zones_pass_through() -> None:
    assert resolve_zone(" DE ") == "DE"
    with pytest.raises(ValueError, match="non-empty string"):
        resolve_zone("")


def test_providers_take_cloud_regions() -> None:
    assert ElectricityMapsProvider("azure:francecentral", token="t0k3n-x").zone == "FR"
    with pytest.raises(UnknownRegionError, match="did you mean"):
        ElectricityMapsProvider("gcp:europe-west44", token="t0k3n-x")


# --- secrets ---------------------------------------------------------------------------------

SECRETS = (EM_TOKEN, WT_PASSWORD, "wt-bearer-")


@pytest.fixture
def server() -> Iterator[GridServer]:
    with GridServer() as srv:
        srv.now = NOW
        yield srv


def _grep(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def test_tokens_never_leak(server: GridServer, caplog: pytest.LogCaptureFixture) -> None:
    async def no_sleep(_: float) -> None:
        return None

    em = ElectricityMapsProvider(
        "aws:eu-west-2", token=EM_TOKEN, base_url=server.url + "/v3", sleep=no_sleep, timeout=0.5
    )
    wt = WattTimeProvider(
        "CAISO_NORTH", username=WT_USER, password=WT_PASSWORD, base_url=server.url, sleep=no_sleep
    )
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    errors: list[str] = []
    records: list[Any] = []
    caplog.set_level(logging.DEBUG)
    scripts = [
        [],  # a good answer
        ["503", "503", "503"],  # retried, then unavailable
        ["429", "429", "429"],
        ["malformed"],
        ["401"],
        ["schema"],
        ["echo"],  # error bodies that repeat the token
    ]
    with structlog.testing.capture_logs() as logs, VirtualClock.installed(NOW) as clock:
        for provider in (em, wt, FallbackProvider([em, wt])):
            for script in scripts:
                server.echo = script == ["echo"]
                server.script = [] if server.echo else list(script)
                clock.advance(timedelta(hours=1))  # a new cache bucket: a new request
                async with carbon_session(
                    Policy(max_delay="2h", provider=provider), bus=bus
                ) as session:
                    pass
                records.append(session.record)
                server.echo = False
                server.mode = "401"
                with pytest.raises(ForecastUnavailable) as caught:
                    later = clock.now() + timedelta(days=9)
                    await provider.forecast(later, later + timedelta(hours=1))
                server.mode = "ok"
                errors.append(repr(caught.value) + str(caught.value) + caught.value.cause)
                cause = caught.value.__cause__
                while cause is not None:
                    errors.append(repr(cause) + str(cause))
                    cause = cause.__cause__
        await em.aclose()
        await wt.aclose()
    assert server.count("/login") >= 1 and len(events) > 20
    dumped = {
        "logs": json.dumps(logs, default=repr),
        "stdlib logs": caplog.text,
        "events": json.dumps([e.to_dict() for e in events], default=repr),
        "records": json.dumps([to_jsonable(r) for r in records], default=repr),
        "errors": "\n".join(errors),
        "reprs": repr(em) + repr(wt) + repr(vars(em)) + repr(vars(wt)),
    }
    for where, text in dumped.items():
        assert _grep(text) == [], f"a secret leaked into {where}"
    # and the tokens really were used, so the grep had something to find
    assert any(h.get("auth-token") == EM_TOKEN for h in server.headers)
    assert any(h.get("authorization", "").startswith("Bearer wt-bearer-") for h in server.headers)


async def test_an_error_body_that_echoes_the_token_is_scrubbed(server: GridServer) -> None:
    provider = ElectricityMapsProvider(
        "DE", token=EM_TOKEN, base_url=server.url + "/v3", retry=Retry(attempts=1)
    )
    server.echo = True  # the server's error message repeats the token it was sent
    async with provider:
        with pytest.raises(
            ForecastUnavailable, match=r"HTTP 400 Bad Request: token \*\*\* is not"
        ) as caught:
            await provider.forecast(NOW, NOW + timedelta(hours=1))
    assert EM_TOKEN not in str(caught.value) and EM_TOKEN not in caught.value.cause


# --- traceback locals (issue 17, 5) ------------------------------------------------------------

B64_CREDENTIALS = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()


def _rendered(exc: BaseException) -> str:
    """``exc`` as a logger that prints traceback locals shows it: rich's traceback (structlog's
    ``ConsoleRenderer`` uses it when rich is installed; its code highlighting left out, which
    is slow and shows no values) and the standard library's."""
    trace = rich.traceback.Traceback.extract(
        type(exc), exc, exc.__traceback__, show_locals=True, locals_max_string=500
    )
    shown = [
        f"{frame.filename}:{frame.lineno} {name} = {node.render(max_width=250)}"
        for stack in trace.stacks
        for frame in stack.frames
        for name, node in (frame.locals or {}).items()
    ]
    shown += [f"{stack.exc_type}: {stack.exc_value}" for stack in trace.stacks]
    stdlib = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "\n".join(shown) + "".join(stdlib.format())


async def _failure(provider: ForecastProvider) -> BaseException:
    """The error a user's code gets from a session whose forecast fails (caught here, in a
    frame that holds no secret, as a user's handler would)."""
    try:
        async with carbon_session(Policy(provider=provider, on_forecast_error="raise")):
            pass
    except ForecastUnavailable as exc:
        return exc
    raise AssertionError("the session did not fail")


@pytest.mark.parametrize("script", ["500", "401", "malformed", "echo", "hang", "refused"])
async def test_no_secret_in_the_locals_of_a_real_failure(server: GridServer, script: str) -> None:
    """With rich installed, ``structlog.get_logger().exception(...)`` prints every frame's
    locals: the frames of the HTTP core (and httpx's, chained below) must hold no credential
    in clear: not the Electricity Maps token, not WattTime's password, its base64 Basic
    credentials or its bearer token."""
    url = "http://127.0.0.1:9" if script == "refused" else server.url  # port 9: nothing listens
    attempts = 1 if script == "hang" else 2
    options: dict[str, Any] = {"retry": Retry(attempts=attempts, backoff=0), "timeout": 0.3}
    em = ElectricityMapsProvider("DE", token=EM_TOKEN, base_url=url + "/v3", **options)
    wt = WattTimeProvider(
        "CAISO_NORTH", username=WT_USER, password=WT_PASSWORD, base_url=url, **options
    )
    rendered = []
    for provider in (em, wt):
        if script != "refused":
            server.mode = "ok"
            await provider.forecast(NOW - timedelta(days=3), NOW - timedelta(days=2))  # log in
        server.echo = script == "echo"
        server.mode = "ok" if server.echo else script
        rendered.append(_rendered(await _failure(provider)))
        server.echo, server.mode = False, "ok"
        await provider.aclose()
    text = "\n".join(rendered)
    assert "Traceback" in text and "self = " in text  # locals were rendered
    if script != "refused":
        assert "wt-bearer-" in "".join(h.get("authorization", "") for h in server.headers)
    for secret in (EM_TOKEN, WT_PASSWORD, B64_CREDENTIALS, "wt-bearer-"):
        assert secret not in text, f"{secret[:6]}... is in a traceback's locals"
