"""``WattTimeProvider``: the marginal operating emissions rate (MOER) forecast of WattTime v3.

Layer: providers; imports the HTTP core, the shared provider base and ecoasync's values.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from .._forecast import Forecast, Signal, Slot, as_utc
from ._http import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HttpCore,
    HttpStatusUnavailable,
    PayloadError,
    Retry,
    Secret,
    SecretHeader,
    Sleep,
    as_list,
    as_number,
    as_time,
    field,
    secret_from,
)
from ._live import LiveProvider, floor_time, seconds

if TYPE_CHECKING:
    import httpx

__all__ = ["WT_BASE_URL", "WattTimeProvider"]

WT_BASE_URL: Final = "https://api.watttime.org"
HORIZONS: Final = (6, 24, 48, 72)
UNITS: Final = {
    "lbs_co2_per_mwh": 0.45359237,  # 1 lb/MWh = 453.59 g per 1000 kWh
    "g_co2_per_kwh": 1.0,
    "kg_co2_per_mwh": 1.0,
}
_LOGIN: Final = ("login",)


def parse_forecast(payload: Any) -> list[Slot]:
    """Slots in gCO2eq/kWh from ``{data: [{point_time, value}], meta: {units, ...}}``."""
    meta = field(payload, "meta", "")
    units = field(meta, "units", "meta") if isinstance(meta, dict) else None
    if not isinstance(units, str) or units.lower() not in UNITS:
        raise PayloadError(
            f"meta.units is {units!r}; only {', '.join(UNITS)} convert to gCO2eq/kWh "
            "(a percentile signal cannot be used for accounting)"
        )
    factor = UNITS[units.lower()]
    period = meta.get("data_point_period_seconds", 300) if isinstance(meta, dict) else 300
    step = timedelta(seconds=as_number(period, "meta.data_point_period_seconds") or 300)
    points: dict[datetime, float] = {}
    for i, item in enumerate(as_list(field(payload, "data", ""), "data")):
        where = f"data[{i}]"
        value = field(item, "value", where)
        if value is None:
            continue
        when = as_time(field(item, "point_time", where), f"{where}.point_time")
        points[when] = as_number(value, f"{where}.value") * factor
    times = sorted(points)
    slots = []
    for i, when in enumerate(times):
        end = when + step
        if i + 1 < len(times) and times[i + 1] < end:
            end = times[i + 1]
        slots.append(Slot(when, end, round(points[when], 3)))
    return slots


def _token_of(payload: Any) -> Secret:
    """The bearer token of a ``/login`` answer (never a plain string in a frame)."""
    token = field(payload, "token", "")
    if not isinstance(token, str) or not token:
        raise PayloadError("token is not a non-empty string")
    return Secret(token)


class WattTimeProvider(LiveProvider):
    """WattTime's forecast of the marginal signal (``co2_moer``) for a WattTime region.

    Logs in with HTTP Basic (``GET /login``) for a bearer token (valid 30 minutes; renewed
    before it expires, and once more if the API refuses it), then reads
    ``/v3/forecast?region=...&signal_type=co2_moer`` (5-minute points in lbs/MWh, converted to
    gCO2eq/kWh). Signal: marginal, direct. Marginal figures are never mixed with average ones:
    the plan and the record say which signal they carry.

    Args:
        region: a WattTime region (``"CAISO_NORTH"``, ``"PJM_DC"``, ...).
        username: default from ``$WATTTIME_USERNAME``.
        password: default from ``$WATTTIME_PASSWORD``. Never logged.
        signal_type: default ``"co2_moer"``.
        horizon_hours: force a horizon (6, 24, 48 or 72) instead of choosing one.
        base_url: the API root (default ``https://api.watttime.org``).
        timeout: seconds one HTTP attempt may take, whole body included (default 10).
        connect_timeout: seconds to connect (default 5).
        ttl: how long a forecast is reused (default 5 minutes: WattTime updates that often).
        token_lifetime: how long a login token is used (default 25 minutes of its 30).
        retry: retry policy (default ``Retry()``).
        sleep: how retries wait (default ``anyio.sleep``).
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the network.
    """

    def __init__(
        self,
        region: str,
        *,
        username: str | None = None,
        password: str | None = None,
        signal_type: str = "co2_moer",
        horizon_hours: int | None = None,
        base_url: str = WT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        ttl: float | timedelta = timedelta(minutes=5),
        token_lifetime: float | timedelta = timedelta(minutes=25),
        retry: Retry | None = None,
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        owner = "WattTimeProvider"
        if not isinstance(region, str) or not region.strip():
            raise ValueError(
                f"{owner}: region must be a WattTime region such as 'CAISO_NORTH', got {region!r}"
            )
        if horizon_hours is not None and horizon_hours not in HORIZONS:
            raise ValueError(
                f"{owner}: horizon_hours must be one of {', '.join(map(str, HORIZONS))} or None, "
                f"got {horizon_hours!r}"
            )
        user = secret_from(username, ("WATTTIME_USERNAME",), what="username", owner=owner)
        word = secret_from(password, ("WATTTIME_PASSWORD",), what="password", owner=owner)
        self._basic = Secret(base64.b64encode(f"{user.reveal()}:{word.reveal()}".encode()).decode())
        self._password = word
        self._bearer: Secret | None = None
        self.region = region.strip()
        self.zone = self.region
        self.signal_type = signal_type
        self.horizon_hours = horizon_hours
        self.name = "watttime"
        self.signal = Signal("marginal", "direct")
        self.ttl = seconds("ttl", ttl)
        self.token_lifetime = seconds("token_lifetime", token_lifetime)
        self.logins = 0
        self.history_step = timedelta(minutes=5)
        self._core = HttpCore(
            provider=self.name,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            sleep=sleep,
            transport=transport,
            max_block=self.ttl,
            secrets=self._secrets,
        )

    def _secrets(self) -> tuple[Secret, ...]:
        bearer = () if self._bearer is None else (self._bearer,)
        return (self._password, self._basic, *bearer)

    async def _token(self) -> SecretHeader:
        """The bearer token's header, logging in when there is none (or it is old)."""

        async def login(_key: Hashable) -> SecretHeader:
            self.logins += 1
            self._bearer = await self._core.fetch(
                "/login",
                _token_of,
                auth=SecretHeader("authorization", self._basic, prefix="Basic "),
                zone=self.zone,
                what="login",
            )
            return SecretHeader("authorization", self._bearer, prefix="Bearer ")

        return await self._core.cached(_LOGIN, self.token_lifetime, login, zone=self.zone)

    def _key(self, start: datetime, end: datetime) -> Hashable:
        bucket = floor_time(start, timedelta(minutes=5))
        horizon = self.horizon_hours
        if horizon is None:
            needed = (end - bucket).total_seconds() / 3600
            horizon = next((h for h in HORIZONS if h >= needed), HORIZONS[-1])
        return ("forecast", horizon, bucket)

    async def _fetch(self, key: Hashable) -> Forecast:
        assert isinstance(key, tuple)
        horizon: int = key[1]
        for attempt in (1, 2):
            bearer = await self._token()
            try:
                return await self._core.fetch(
                    "/v3/forecast",
                    lambda data: self._forecast(parse_forecast(data)),
                    params={
                        "region": self.region,
                        "signal_type": self.signal_type,
                        "horizon_hours": str(horizon),
                    },
                    auth=bearer,
                    zone=self.zone,
                    what="forecast",
                )
            except HttpStatusUnavailable as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._core.forget(_LOGIN)  # the token expired early: log in again, once
        raise AssertionError("unreachable")  # pragma: no cover

    def _forecast(self, slots: list[Slot]) -> Forecast:
        return Forecast(slots, signal=self.signal, provider=self.name, zone=self.zone)

    async def _fetch_history(self, start: datetime, end: datetime) -> Forecast:
        """Measured MOER for ``[start, end)`` from ``/v3/historical`` (``forecast == actual``)."""
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        bearer = await self._token()
        slots = await self._core.fetch(
            "/v3/historical",
            parse_forecast,
            params={
                "region": self.region,
                "signal_type": self.signal_type,
                "start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
                "end": f"{end:%Y-%m-%dT%H:%M:%SZ}",
            },
            auth=bearer,
            zone=self.zone,
            what="history",
        )
        return self._forecast(
            [
                Slot(s.start, s.end, s.forecast, s.forecast)
                for s in slots
                if s.end > start and s.start < end
            ]
        )

    def __repr__(self) -> str:
        return f"WattTimeProvider(region={self.region!r}, signal_type={self.signal_type!r}, base_url={self._core.base_url!r})"
