"""Routes and ``choose_route``: the values, their errors, and the choice over real loopback
providers serving different zones (one hangs, one errors)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import ecoasync
from ecoasync import Forecast, Route, RouteError, Routes, Slot
from ecoasync._route import describe_target
from ecoasync._routing import decide, fails_over, grid
from ecoasync.providers import ElectricityMapsProvider, Retry, UnknownRegionError
from ecoasync.testing import FailingProvider, FakeProvider, VirtualClock
from tests.grid_server import EM_TOKEN, GridServer

START = datetime(2026, 3, 18, tzinfo=UTC)


def flat(zone: str, value: float, *, hours: int = 24) -> FakeProvider:
    step = timedelta(minutes=30)
    slots = [Slot(START + i * step, START + (i + 1) * step, value) for i in range(hours * 2)]
    return FakeProvider(Forecast(slots, provider=f"flat-{zone}", zone=zone))


# --- the values -----------------------------------------------------------------------------


def test_a_cloud_region_resolves_to_its_grid_zone() -> None:
    route = Route("sweden", "azure:swedencentral", latency="250ms", tags=["eu"], wue=0.2)
    assert route.zone == "SE-SE3" and route.region == "azure:swedencentral"
    assert route.latency == timedelta(milliseconds=250)
    assert route.grid_known and route.tags == frozenset({"eu"})


def test_an_unknown_region_fails_with_suggestions() -> None:
    with pytest.raises(UnknownRegionError) as info:
        Route("se", "azure:swedencentrl")
    assert "Route 'se'" in str(info.value)
    assert "azure:swedencentral" in info.value.suggestions


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "x"}, "either where"),
        ({"name": "x", "where": "FR", "among": ["DE"]}, "either where"),
        ({"name": "", "where": "FR"}, "name"),
        ({"name": "x", "where": "FR", "tags": "eu"}, "tags=['eu']"),
        ({"name": "x", "where": "FR", "wue": -1}, "wue"),
        ({"name": "x", "where": "FR", "pue": 0.5}, "pue"),
        ({"name": "x", "where": "FR", "latency": "fast"}, "latency"),
        ({"name": "x", "where": "FR", "provider": object()}, "forecast provider"),
        ({"name": "x", "among": ["FR"], "provider": flat("FR", 1)}, "takes no provider"),
        ({"name": "x", "where": "FR", "provider": flat("DE", 1)}, "serves zone 'DE'"),
        ({"name": "x", "among": "FR"}, "among=['FR']"),
    ],
)
def test_bad_routes_are_refused_at_construction(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(RouteError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        Route(**kwargs)


def test_duplicate_names_and_unknown_home_are_refused() -> None:
    with pytest.raises(RouteError, match="two routes are named 'a'"):
        Routes([Route("a", "FR"), Route("a", "DE")])
    with pytest.raises(RouteError, match="did you mean 'france'"):
        Routes([Route("france", "FR"), Route("de", "DE")], home="franse")
    with pytest.raises(RouteError, match="at least one"):
        Routes([])
    with pytest.raises(RouteError, match="max_share"):
        Routes([Route("a", "FR")], max_share=0)


def test_a_residency_filter_that_leaves_nothing_names_the_filter() -> None:
    routes = [
        Route("us", "US-MIDA-PJM", tags=["us"]),
        Route("global", among=["FR", "DE"], tags=["eu"]),
    ]
    with pytest.raises(RouteError) as info:
        Routes(routes, residency=["eu"])
    message = str(info.value)
    assert "residency={eu}" in message and "'us'" in message
    assert "cross-region deployment never meets a residency label" in message
    assert info.value.field == "residency"
    with pytest.raises(RouteError, match="home route 'us' does not meet"):
        Routes([*routes, Route("fr", "FR", tags=["eu"])], residency="eu")


def test_the_target_never_shows_beyond_a_safe_description() -> None:
    secret_url = "https://user:s3cret@eu.example.com:8443/v1?key=s3cret"
    route = Route("eu", "FR", target=secret_url)
    assert "s3cret" not in repr(route)
    assert route.target_description == "https://eu.example.com:8443"
    assert describe_target("deployment-s3cret") == "str (17 characters)"
    assert describe_target(object()) == "object"
    routes = Routes([route])
    assert "s3cret" not in repr(routes)
    from ecoasync._records import to_jsonable

    assert "s3cret" not in json.dumps(to_jsonable(route))


def test_policy_takes_routes_and_refuses_a_provider_beside_them() -> None:
    policy = ecoasync.Policy(routes=[Route("fr", "FR"), Route("de", "DE")], max_delay="2h")
    assert isinstance(policy.routes, Routes) and policy.routes.home == "fr"
    assert policy.evolve(max_delay="1h").routes is policy.routes
    with pytest.raises(ecoasync.PolicyError, match="provider"):
        ecoasync.Policy(routes=[Route("fr", "FR")], provider=flat("FR", 1))
    with pytest.raises(RouteError, match="list of ecoasync.Route"):
        ecoasync.Policy(routes="FR")  # type: ignore[arg-type]


def test_measured_latency_replaces_the_prior_as_it_comes_in() -> None:
    route = Route("x", "FR", latency="1s")
    assert route.latency_s() == (1.0, "configured")
    for _ in range(5):
        route.observe_latency(0.2)
    value, source = route.latency_s()
    assert source == "measured" and value == pytest.approx((5 * 1.0 + 5 * 0.2) / 10)
    for _ in range(95):
        route.observe_latency(0.2)
    assert route.latency_s()[0] == pytest.approx((5 * 1.0 + 64 * 0.2) / 69)  # a window of 64
    fresh = Route("y", "FR")
    assert fresh.latency_s() == (None, "none")
    fresh.observe_latency(0.3)
    assert fresh.latency_s() == (0.3, "measured")


def test_the_failover_rule() -> None:
    class Status(Exception):
        def __init__(self, code: int) -> None:
            self.status_code = code

    class APIConnectionError(Exception):
        pass

    assert fails_over(TimeoutError()) and fails_over(ConnectionResetError())
    assert fails_over(Status(500)) and fails_over(Status(529)) and fails_over(APIConnectionError())
    assert not fails_over(Status(400)) and not fails_over(Status(429))
    assert not fails_over(ValueError("bad request")) and not fails_over(KeyboardInterrupt())


# --- the pure decision ---------------------------------------------------------------------


def test_decide_strategies_ties_and_caps() -> None:
    from ecoasync import Candidate

    cands = [
        Candidate(route="home", zone="DE", intensity=300, water_l_per_kwh=2.0, latency_s=0.1),
        Candidate(route="se", zone="SE-SE3", intensity=30, water_l_per_kwh=7.0, latency_s=0.5),
        Candidate(route="fr", zone="FR", intensity=60, water_l_per_kwh=4.0, latency_s=None),
    ]
    assert decide(cands, "lowest_carbon", home="home")[1].route == "se"
    assert decide(cands, "lowest_water", home="home")[1].route == "home"
    # balanced: 300 + 100*0.1 = 310, 30 + 100*0.5 = 80, 60 + 100*0.5 (unknown = slowest) = 110
    _, winner, reason = decide(cands, "balanced", home="home", latency_weight=100)
    assert winner.route == "se" and "score 80" in reason
    assert decide(cands, "balanced", home="home", latency_weight=1000)[1].route == "home"
    # a tie goes home
    tied = [
        Candidate(route="b", zone="X", intensity=50),
        Candidate(route="home", zone="Y", intensity=50),
    ]
    assert decide(tied, "lowest_carbon", home="home")[1].route == "home"
    # the latency ceiling skips, and says so; leaving nothing is an error naming it
    scored, winner, _ = decide(
        cands, "lowest_carbon", home="home", max_latency=timedelta(seconds=0.3)
    )
    assert winner.route == "fr"  # unknown latency passes the ceiling
    assert "over max_latency" in (next(c for c in scored if c.route == "se").skipped or "")
    with pytest.raises(RouteError, match="max_latency"):
        decide(cands[:2], "lowest_carbon", max_latency=timedelta(seconds=0.05))
    # the share cap passes over a full route for the next best
    _, winner, reason = decide(
        cands, "lowest_carbon", home="home", max_share=0.5, loads={"se": 3, "fr": 1}
    )
    assert winner.route == "fr" and "max_share" in reason
    _, winner, reason = decide(
        cands, "lowest_carbon", max_share=0.2, loads={"se": 1, "fr": 1, "home": 1}
    )
    assert winner.route == "se" and "the best was taken" in reason


# --- choose_route over real loopback providers ---------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[GridServer, GridServer, GridServer]]:
    with GridServer() as good, GridServer() as hanging, GridServer() as failing:
        good.zone_scale = {"SE-SE3": 0.1, "FR": 0.3, "DE": 2.0}
        good.now = START + timedelta(hours=6)  # the API's "now", where its forecasts begin
        hanging.mode = "hang"
        failing.mode = "500"
        yield good, hanging, failing


def em(server: GridServer, zone: str) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(
        zone, token=EM_TOKEN, base_url=server.url + "/v3", timeout=5, retry=Retry(attempts=1)
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_choose_route_skips_a_hanging_and_a_failing_zone_within_the_bound(
    anyio_backend: str, servers: tuple[GridServer, GridServer, GridServer]
) -> None:
    good, hanging, failing = servers
    routes = Routes(
        [
            Route("frankfurt", "aws:eu-central-1", provider=em(good, "DE"), tags=["eu"]),
            Route("stockholm", "aws:eu-north-1", provider=em(good, "SE-SE3"), tags=["eu"]),
            Route("paris", "aws:eu-west-3", provider=em(good, "FR"), tags=["eu"]),
            Route("virginia", "aws:us-east-1", provider=em(hanging, "US-MIDA-PJM"), tags=["us"]),
            Route("oregon", "aws:us-west-2", provider=em(failing, "US-NW-BPAT"), tags=["us"]),
        ]
    )
    with VirtualClock.installed(START + timedelta(hours=6)):
        began = time.perf_counter()
        choice = await ecoasync.choose_route(routes, forecast_timeout=0.5)
        took = time.perf_counter() - began
    assert took < 3.0  # the hanging zone never held the choice past its bound (0.5 s)
    assert choice.route.name == "stockholm" and choice.route.zone == "SE-SE3"
    by = {c.route: c for c in choice.candidates}
    assert by["virginia"].skipped == "provider gave no answer within 0.5 s"
    assert "provider failed" in (by["oregon"].skipped or "")
    assert by["frankfurt"].intensity is not None
    assert by["stockholm"].intensity == pytest.approx(by["frankfurt"].intensity / 20)
    assert by["stockholm"].signal == "average/lifecycle"
    assert choice.home == "frankfurt" and choice.home_intensity == by["frankfurt"].intensity
    assert choice.valid_until == START + timedelta(hours=7)  # the hourly slot it was read in
    assert "'stockholm'" in choice.reason and "skipped 'virginia'" in choice.reason
    assert [c.route for c in choice.ranked] == ["stockholm", "paris", "frankfurt"]
    # one request per zone, and a second choice is answered from the providers' caches
    assert good.count("/v3/carbon-intensity/forecast") == 3
    with VirtualClock.installed(START + timedelta(hours=6)):
        again = await ecoasync.choose_route(routes, residency="eu", forecast_timeout=0.2)
    assert good.count("/v3/carbon-intensity/forecast") == 3
    assert again.route.name == "stockholm"
    # residency filters before scoring: "us" leaves only the broken zones, and says so
    with (
        VirtualClock.installed(START + timedelta(hours=6)),
        pytest.raises(ecoasync.ForecastUnavailable) as info,
    ):
        await ecoasync.choose_route(routes, residency="us", forecast_timeout=0.2)
    assert "'paris': residency" in str(info.value) and "'virginia'" in str(info.value)
    for route in routes:
        assert route.provider is not None
        await route.provider.aclose()  # type: ignore[attr-defined]


async def test_choose_route_falls_back_to_annual_averages_and_prices_unknown_grids(
    clock: VirtualClock,
) -> None:
    routes = [
        Route("de", "DE", provider=FailingProvider()),
        Route("se", "SE-SE3"),  # no provider: EcoLogits' annual average
        Route("global", among=["azure:swedencentral", "azure:eastus"], charge="worst"),
        Route("global-mean", among=["SE-SE3", "US-MIDA-PJM"], charge="mean"),
    ]
    choice = await ecoasync.choose_route(routes)
    by = {c.route: c for c in choice.candidates}
    assert by["de"].skipped is not None and "failed" in by["de"].skipped
    assert by["se"].source == "mix" and by["se"].intensity == pytest.approx(
        grid("SE-SE3").gwp_g_per_kwh
    )
    worst = max(grid("SE-SE3").gwp_g_per_kwh, grid("US-MIDA-PJM").gwp_g_per_kwh)
    assert by["global"].intensity == pytest.approx(worst) and by["global"].uncertain
    assert by["global"].source == "worst-of-mixes"
    assert by["global-mean"].source == "mean-of-mixes"
    assert choice.route.name == "se" and choice.valid_until is None
    # water: on-site WUE + PUE x the grid's water intensity, uncertain without a WUE
    water = await ecoasync.choose_route(
        [Route("a", "DE", wue=0.1), Route("b", "SE-SE3", wue=0.1)], "lowest_water"
    )
    assert water.route.name == "a"
    a = next(c for c in water.candidates if c.route == "a")
    assert a.water_l_per_kwh == pytest.approx(0.1 + 1.2 * grid("DE").wue_l_per_kwh)
    assert not a.uncertain


async def test_choose_route_with_no_scorable_route_raises(clock: VirtualClock) -> None:
    with pytest.raises(ecoasync.ForecastUnavailable, match="no route could be scored"):
        await ecoasync.choose_route([Route("a", "DE", provider=FailingProvider())])
    with pytest.raises(RouteError, match="residency"):
        await ecoasync.choose_route([Route("a", "DE", tags=["de"])], residency=["eu"])


async def test_balanced_uses_measured_latency(clock: VirtualClock) -> None:
    near = Route("near", "DE", provider=flat("DE", 100), latency="50ms")
    far = Route("far", "SE-SE3", provider=flat("SE-SE3", 40), latency="100ms")
    routes = Routes([near, far], strategy="balanced", latency_weight=100)
    assert (await ecoasync.choose_route(routes)).route.name == "far"  # 40 + 10 < 100 + 5
    for _ in range(50):
        far.observe_latency(2.0)  # the far route turned slow: 40 + 100 x ~1.8 > 105
    choice = await ecoasync.choose_route(routes)
    assert choice.route.name == "near"
    assert next(c for c in choice.candidates if c.route == "far").latency_source == "measured"
    assert (await ecoasync.choose_route(routes, "lowest_carbon")).route.name == "far"


def test_choose_route_sync(clock: VirtualClock) -> None:
    choice = ecoasync.choose_route_sync(
        [Route("de", "DE", provider=flat("DE", 300)), Route("fr", "FR", provider=flat("FR", 50))]
    )
    assert choice.route.name == "fr"


async def test_choose_route_sync_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="await ecoasync.choose_route"):
        ecoasync.choose_route_sync([Route("fr", "FR")])
