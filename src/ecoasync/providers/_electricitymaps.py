"""``ElectricityMapsProvider``: carbon-intensity forecast and history from Electricity Maps (v3).

Layer: providers; imports the HTTP core, the shared provider base and ecoasync's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from .._checks import is_number
from .._clock import current_clock
from .._forecast import Forecast, Signal, Slot, as_utc
from ._http import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HttpCore,
    Retry,
    SecretHeader,
    Sleep,
    as_list,
    as_number,
    as_time,
    field,
    secret_from,
)
from ._live import LiveProvider, floor_time, seconds
from .regions import resolve_zone

if TYPE_CHECKING:
    import httpx

__all__ = ["EM_BASE_URL", "ElectricityMapsProvider"]

EM_BASE_URL: Final = "https://api.electricitymaps.com/v3"
TOKEN_ENV: Final = ("ELECTRICITYMAPS_API_TOKEN", "ELECTRICITYMAPS_TOKEN")
HORIZONS: Final = (6, 24, 48, 72)
GRANULARITIES: Final = {5: "5_minutes", 15: "15_minutes", 60: "hourly"}
RECENT: Final = timedelta(hours=24)
"""How far back ``/carbon-intensity/history`` reaches; older ranges use ``/past-range``."""


def parse_points(payload: Any, key: str, step: timedelta, *, actual: bool) -> list[Slot]:
    """Slots from ``{key: [{carbonIntensity, datetime}, ...]}``; each lasts ``step`` or until the
    next point. Points without a value are skipped."""
    points = []
    for i, item in enumerate(as_list(field(payload, key, ""), key)):
        where = f"{key}[{i}]"
        value = field(item, "carbonIntensity", where)
        if value is None:
            continue
        when = as_time(field(item, "datetime", where), f"{where}.datetime")
        points.append((when, as_number(value, f"{where}.carbonIntensity")))
    points.sort()
    slots = []
    for i, (when, value) in enumerate(points):
        if i and when == points[i - 1][0]:
            continue
        end = when + step
        if i + 1 < len(points) and points[i + 1][0] < end:
            end = points[i + 1][0]
        slots.append(Slot(when, end, value, value if actual else None))
    return slots


class ElectricityMapsProvider(LiveProvider):
    """Carbon intensity from Electricity Maps for a zone, a place or a cloud region.

    Locate by ``zone`` (``"DE"``, ``"US-CAL-CISO"``, or a cloud region such as
    ``"gcp:europe-west4"``) or by ``lat`` and ``lon``. Forecasts (``/carbon-intensity/forecast``,
    a paid tier) come in ``granularity`` 5, 15 or 60-minute slots; the provider asks for the
    smallest horizon (6, 24, 48 or 72 h) that covers the request. Times are kept as the API
    gives them (converted to UTC): the planner measures every delay from *now*, never from the
    first forecast point. History: ``/carbon-intensity/history`` for the last 24 hours (free
    tier), ``/carbon-intensity/past-range`` before that; Electricity Maps keeps no past
    forecasts, so history slots have ``forecast == actual``.

    Signal: average, lifecycle by default (the API's default); ``emission_factor="direct"``
    asks for direct (operational) emissions.

    Args:
        zone: a zone key or ``"<cloud>:<region>"``.
        lat: latitude of a location, instead of a zone (with ``lon``).
        lon: longitude of a location, instead of a zone (with ``lat``).
        token: the API token; default from ``$ELECTRICITYMAPS_API_TOKEN``. Never logged.
        granularity: minutes per slot, 5, 15 or 60 (default 60).
        horizon_hours: force a horizon (6, 24, 48 or 72) instead of choosing one.
        emission_factor: ``"lifecycle"`` (default) or ``"direct"``.
        base_url: the API root (default ``https://api.electricitymaps.com/v3``).
        timeout: seconds one HTTP attempt may take, whole body included (default 10).
        connect_timeout: seconds to connect (default 5).
        ttl: how long an answer is reused (default 15 minutes).
        retry: retry policy (default ``Retry()``).
        sleep: how retries wait (default ``anyio.sleep``).
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the network.
        now: where "now" comes from for choosing the history endpoint (default: the session
            clock).
    """

    def __init__(
        self,
        zone: str | None = None,
        *,
        lat: float | None = None,
        lon: float | None = None,
        token: str | None = None,
        granularity: int = 60,
        horizon_hours: int | None = None,
        emission_factor: Literal["lifecycle", "direct"] = "lifecycle",
        base_url: str = EM_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        ttl: float | timedelta = timedelta(minutes=15),
        retry: Retry | None = None,
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        owner = "ElectricityMapsProvider"
        if (zone is None) == (lat is None or lon is None):
            raise ValueError(
                f"{owner}: pass zone= (e.g. 'DE' or 'aws:eu-central-1') or lat= and lon="
            )
        self._params: dict[str, str]
        if zone is not None:
            self.zone = resolve_zone(zone)
            self._params = {"zone": self.zone}
        else:
            assert lat is not None and lon is not None
            for name, value, limit in (("lat", lat, 90), ("lon", lon, 180)):
                if not is_number(value):
                    raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
                if not math.isfinite(value) or abs(value) > limit:
                    raise ValueError(f"{owner}: {name} must be within ±{limit}, got {value!r}")
            self.zone = f"{lat:.4f},{lon:.4f}"
            self._params = {"lat": f"{lat:.4f}", "lon": f"{lon:.4f}"}
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"{owner}: granularity must be 5, 15 or 60 (minutes), got {granularity!r}"
            )
        if horizon_hours is not None and horizon_hours not in HORIZONS:
            raise ValueError(
                f"{owner}: horizon_hours must be one of {', '.join(map(str, HORIZONS))} or None, "
                f"got {horizon_hours!r}"
            )
        if emission_factor not in ("lifecycle", "direct"):
            raise ValueError(
                f"{owner}: emission_factor must be 'lifecycle' or 'direct', got {emission_factor!r}"
            )
        self._token = secret_from(token, TOKEN_ENV, what="token", owner=owner)
        self.granularity = granularity
        self.step = timedelta(minutes=granularity)
        self.horizon_hours = horizon_hours
        self.emission_factor = emission_factor
        self.name = "electricitymaps"
        self.signal = Signal("average", emission_factor)
        self.ttl = seconds("ttl", ttl)
        self._now = now or (lambda: current_clock().now())
        self._bucket = max(self.step, timedelta(minutes=15))
        self.history_step = timedelta(hours=1)
        self._core = HttpCore(
            provider=self.name,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            sleep=sleep,
            transport=transport,
            max_block=self.ttl,
            secrets=lambda: (self._token,),
        )
        self._auth = SecretHeader("auth-token", self._token)

    def _query(self, **extra: str) -> dict[str, str]:
        return {
            **self._params,
            "emissionFactorType": self.emission_factor,
            "temporalGranularity": GRANULARITIES[self.granularity],
            **extra,
        }

    def _key(self, start: datetime, end: datetime) -> Hashable:
        bucket = floor_time(start, self._bucket)
        horizon = self.horizon_hours
        if horizon is None:
            needed = (end - bucket).total_seconds() / 3600
            horizon = next((h for h in HORIZONS if h >= needed), HORIZONS[-1])
        return ("forecast", horizon, bucket)

    async def _fetch(self, key: Hashable) -> Forecast:
        assert isinstance(key, tuple)
        horizon: int = key[1]
        return await self._core.fetch(
            "/carbon-intensity/forecast",
            lambda data: self._forecast(parse_points(data, "forecast", self.step, actual=False)),
            params=self._query(horizonHours=str(horizon)),
            auth=self._auth,
            zone=self.zone,
            what="forecast",
        )

    def _forecast(self, slots: list[Slot]) -> Forecast:
        return Forecast(slots, signal=self.signal, provider=self.name, zone=self.zone)

    async def _fetch_history(self, start: datetime, end: datetime) -> Forecast:
        """Measured intensity for ``[start, end)`` (``forecast == actual``; see the class doc)."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        slots: dict[datetime, Slot] = {}
        if start >= self._now() - RECENT:
            found = await self._core.fetch(
                "/carbon-intensity/history",
                lambda data: parse_points(data, "history", self.step, actual=True),
                params=self._query(),
                auth=self._auth,
                zone=self.zone,
                what="history",
            )
            slots.update((s.start, s) for s in found)
        else:
            chunk = timedelta(days=10) if self.granularity == 60 else timedelta(days=1)
            at = start
            while at < end:
                upto = min(at + chunk, end)
                found = await self._core.fetch(
                    "/carbon-intensity/past-range",
                    lambda data: parse_points(data, "data", self.step, actual=True),
                    params=self._query(
                        start=f"{at:%Y-%m-%dT%H:%M:%SZ}", end=f"{upto:%Y-%m-%dT%H:%M:%SZ}"
                    ),
                    auth=self._auth,
                    zone=self.zone,
                    what="history",
                )
                slots.update((s.start, s) for s in found)
                at = upto
        return self._forecast([s for s in slots.values() if s.end > start and s.start < end])

    def __repr__(self) -> str:
        return (
            f"ElectricityMapsProvider(zone={self.zone!r}, granularity={self.granularity}, "
            f"emission_factor={self.emission_factor!r}, base_url={self._core.base_url!r})"
        )
