"""``UKCarbonIntensityProvider``: the keyless GB Carbon Intensity API (NESO; CC BY 4.0)."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from .._forecast import Forecast, Signal, Slot, as_utc
from ._http import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HttpCore,
    PayloadError,
    Retry,
    Sleep,
    as_list,
    as_number,
    as_time,
    field,
)
from ._live import LiveProvider, floor_time, seconds
from .regions import resolve_zone

if TYPE_CHECKING:
    import httpx

__all__ = ["UK_BASE_URL", "IntensityRow", "UKCarbonIntensityProvider"]

UK_BASE_URL: Final = "https://api.carbonintensity.org.uk"
SLOT: Final = timedelta(minutes=30)
MAX_RANGE: Final = timedelta(days=14)
"""The longest range the API serves in one request."""
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)(?:\s*[0-9][A-Z]{2})?$")


def _api_time(when: datetime) -> str:
    return f"{as_utc(when):%Y-%m-%dT%H:%MZ}"


@dataclass(frozen=True, slots=True)
class IntensityRow:
    """One half-hour as the API gives it, with its ``index`` ("low", "moderate", ...)."""

    start: datetime
    end: datetime
    forecast: float | None
    actual: float | None
    index: str | None

    def slot(self) -> Slot | None:
        value = self.forecast if self.forecast is not None else self.actual
        if value is None:
            return None
        return Slot(self.start, self.end, value, self.actual)


def parse_rows(payload: Any) -> list[IntensityRow]:
    """The rows of a national (``data[]``) or regional (``data.data[]`` / ``data[0].data[]``)
    response, sorted, one per start time."""
    data = field(payload, "data", "")
    path = "data"
    if isinstance(data, dict):  # /regional/intensity/.../regionid|postcode/...: data.data[]
        data, path = field(data, "data", "data"), "data.data"
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "regionid" in data[0]:
        data, path = field(data[0], "data", "data[0]"), "data[0].data"  # /regional/regionid/{id}
    rows: dict[datetime, IntensityRow] = {}
    for i, item in enumerate(as_list(data, path)):
        row = _plain_row(item)
        if row is None:  # something is off: read it again, saying where
            row = _checked_row(item, f"{path}[{i}]")
        rows[row.start] = row
    return [rows[k] for k in sorted(rows)]


def _plain_row(item: object) -> IntensityRow | None:
    """The row of ``item`` if it is well formed in the usual way (times in UTC, numbers or
    nulls), else None: a response of two days is read in a third of the time it takes
    :func:`_checked_row` to build the paths its messages name."""
    if type(item) is not dict:
        return None
    start, end, intensity = item.get("from"), item.get("to"), item.get("intensity")
    if type(start) is not str or type(end) is not str or type(intensity) is not dict:
        return None
    try:
        start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    if start.tzinfo is not UTC or end.tzinfo is not UTC or end <= start:
        return None
    forecast, actual, index = (
        intensity.get("forecast"),
        intensity.get("actual"),
        intensity.get("index"),
    )
    for number in (forecast, actual):
        if number is not None and (type(number) not in (int, float) or not 0 <= number < math.inf):
            return None
    return IntensityRow(
        start,
        end,
        None if forecast is None else float(forecast),
        None if actual is None else float(actual),
        index if isinstance(index, str) else None,
    )


def _checked_row(item: object, where: str) -> IntensityRow:
    """The row of ``item``, or a :class:`PayloadError` naming what is wrong and where."""
    start = as_time(field(item, "from", where), f"{where}.from")
    end = as_time(field(item, "to", where), f"{where}.to")
    if end <= start:
        raise PayloadError(f"{where} ends before it starts ({start:%H:%M}Z..{end:%H:%M}Z)")
    intensity = field(item, "intensity", where)
    if not isinstance(intensity, dict):
        raise PayloadError(f"{where}.intensity is not an object")
    forecast = intensity.get("forecast")
    actual = intensity.get("actual")
    index = intensity.get("index")
    return IntensityRow(
        start,
        end,
        None if forecast is None else as_number(forecast, f"{where}.intensity.forecast"),
        None if actual is None else as_number(actual, f"{where}.intensity.actual"),
        index if isinstance(index, str) else None,
    )


class UKCarbonIntensityProvider(LiveProvider):
    """Forecasts (and actuals) of Great Britain's grid from ``api.carbonintensity.org.uk``.

    National by default (zone ``GB``; actual values where a half-hour has closed), or one of
    the 17 DNO regions by ``region=`` id (1-17) or by ``postcode=`` (outward code such as
    ``"RG10"``; a full postcode is cut to its outward code). Regional rows have no actuals.
    30-minute slots, up to 48 hours ahead. Signal: average, direct (operational) emissions.
    No key needed.

    Args:
        region: DNO region id, 1-17 (see the API's documentation for the list).
        postcode: an outward postcode (``"RG10"``, ``"SW1A"``).
        zone: a zone or cloud region that must resolve to ``GB`` (``"aws:eu-west-2"``), for
            configurations that name every provider's location the same way.
        base_url: the API root (default ``https://api.carbonintensity.org.uk``), for proxies,
            mirrors and tests.
        timeout: seconds one HTTP attempt may take, whole body included (default 10).
        connect_timeout: seconds to connect (default 5).
        ttl: how long an answer is reused (default 30 minutes: the API updates half-hourly).
        retry: retry policy (default ``Retry()``: 3 attempts, backoff from 0.5 s, 429 waits
            ``Retry-After`` up to 60 s).
        sleep: how retries wait (default ``anyio.sleep``; tests pass a fake).
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the network.
    """

    def __init__(
        self,
        *,
        region: int | None = None,
        postcode: str | None = None,
        zone: str | None = None,
        base_url: str = UK_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        ttl: float | timedelta = timedelta(minutes=30),
        retry: Retry | None = None,
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if region is not None and postcode is not None:
            raise ValueError("pass region= or postcode=, not both")
        if zone is not None:
            resolved = resolve_zone(zone)
            if resolved != "GB":
                raise ValueError(
                    f"the UK Carbon Intensity API covers Great Britain only, but zone {zone!r} is "
                    f"{resolved}; use ElectricityMapsProvider(zone={zone!r}) for it"
                )
        self.region: int | None = None
        self.postcode: str | None = None
        if region is not None:
            if isinstance(region, bool) or not isinstance(region, int) or not 1 <= region <= 17:
                raise ValueError(f"region must be a DNO region id from 1 to 17, got {region!r}")
            self.region = region
            self.zone = f"GB:region-{region}"
            self._suffix = f"/regionid/{region}"
        elif postcode is not None:
            match = (
                _POSTCODE.match(str(postcode).strip().upper())
                if isinstance(postcode, str)
                else None
            )
            if match is None:
                raise ValueError(
                    f"postcode must be a UK outward code such as 'RG10' or 'SW1A', got {postcode!r}"
                )
            self.postcode = match.group(1)
            self.zone = f"GB:postcode-{self.postcode}"
            self._suffix = f"/postcode/{self.postcode}"
        else:
            self.zone = "GB"
            self._suffix = ""
        self.name = "uk-carbon-intensity"
        self.signal = Signal("average", "direct")
        self.ttl = seconds("ttl", ttl)
        self._core = HttpCore(
            provider=self.name,
            base_url=base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            sleep=sleep,
            transport=transport,
        )

    @property
    def regional(self) -> bool:
        return bool(self._suffix)

    def _path(self, start: datetime, span: str) -> str:
        if self.regional:
            return f"/regional/intensity/{_api_time(start)}/{span}{self._suffix}"
        return f"/intensity/{_api_time(start)}/{span}"

    def _key(self, start: datetime, end: datetime) -> Hashable:
        return ("forecast", floor_time(start, SLOT))

    async def _fetch(self, key: Hashable) -> Forecast:
        assert isinstance(key, tuple)
        bucket: datetime = key[1]
        rows = await self._core.fetch(
            self._path(bucket, "fw48h"), parse_rows, zone=self.zone, what="forecast"
        )
        return self._forecast(rows)

    def _forecast(self, rows: list[IntensityRow]) -> Forecast:
        slots = [slot for row in rows if (slot := row.slot()) is not None]
        return Forecast(slots, signal=self.signal, provider=self.name, zone=self.zone)

    async def intensity_rows(self, start: datetime, end: datetime) -> list[IntensityRow]:
        """The API's rows for the half-hours starting in ``[start, end)``, with their index.

        Ranges longer than 14 days are fetched in 14-day requests (the API's limit).
        """
        start, end = as_utc(start, what="start"), as_utc(end, what="end")
        out: dict[datetime, IntensityRow] = {}
        chunk_start = floor_time(start, SLOT)
        while chunk_start < end:
            chunk_end = min(chunk_start + MAX_RANGE, end)
            path = self._path(chunk_start, _api_time(chunk_end))
            for row in await self._core.fetch(path, parse_rows, zone=self.zone, what="history"):
                if start < row.end and row.start < end and chunk_start <= row.start < chunk_end:
                    out[row.start] = row
            chunk_start = chunk_end
        return [out[k] for k in sorted(out)]

    async def _fetch_history(self, start: datetime, end: datetime) -> Forecast:
        """The half-hours overlapping ``[start, end)`` with forecast and (national) actual values."""
        rows = await self.intensity_rows(start, end)
        return self._forecast(rows)

    def __repr__(self) -> str:
        return f"UKCarbonIntensityProvider(zone={self.zone!r}, base_url={self._core.base_url!r})"
