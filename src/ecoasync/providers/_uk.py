"""``UKCarbonIntensityProvider``: the keyless GB Carbon Intensity API (NESO; CC BY 4.0).

Layer: providers; imports the HTTP core, the shared provider base and ecoasync's values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from .._forecast import Forecast, Signal, Slot, as_utc
from ._csv import parse_trace_time
from ._http import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HttpCore,
    PayloadError,
    Retry,
    Sleep,
    as_list,
    field,
    kind_of,
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
    response, sorted, one per start time; a :class:`PayloadError` naming the first wrong one."""
    data = field(payload, "data", "")
    path = "data"
    if isinstance(data, dict):  # /regional/intensity/.../regionid|postcode/...: data.data[]
        data, path = field(data, "data", "data"), "data.data"
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "regionid" in data[0]:
        data, path = field(data[0], "data", "data[0]"), "data[0].data"  # /regional/regionid/{id}
    rows: dict[datetime, IntensityRow] = {}
    for i, item in enumerate(as_list(data, path)):
        row = _row(item, path, i)
        rows[row.start] = row
    return [rows[k] for k in sorted(rows)]


def _row(item: Any, path: str, i: int) -> IntensityRow:
    """The row of ``item`` (item ``i`` of ``path``). What is wrong, and where, is worked out
    only when something is: a two-day answer is one event-loop step of the session that
    fetched it."""
    name = "from"
    try:
        start = parse_trace_time(item["from"])
        name = "to"
        end = parse_trace_time(item["to"])
        name = ""
        if end <= start:
            raise ValueError
        name = "intensity"
        intensity = item["intensity"]
        name = "intensity.forecast"
        forecast = _number(intensity.get("forecast"))
        name = "intensity.actual"
        actual = _number(intensity.get("actual"))
        index = intensity.get("index")
    except Exception:
        where = f"{path}[{i}]"
        if not name:
            problem = f"{where} ends before it starts ({start:%H:%M}Z..{end:%H:%M}Z)"
        else:
            problem = _problem(item, where, name)
        raise PayloadError(problem) from None
    return IntensityRow(start, end, forecast, actual, index if isinstance(index, str) else None)


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError
    return float(value)  # (an OverflowError for an integer too large for a float)


def _problem(item: object, where: str, name: str) -> str:
    """What is wrong with field ``name`` (``"intensity.forecast"``) of ``item``."""
    parent, _, key = name.rpartition(".")
    holder: object = item
    if parent:
        holder = item.get(parent) if isinstance(item, dict) else None
        where = f"{where}.{parent}"
    if not isinstance(holder, dict):
        return f"{where} is {kind_of(holder)}, expected an object"
    if key not in holder:
        return f"{where}.{key} is missing"
    value = holder[key]
    if parent:
        return f"{where}.{key} is {kind_of(value)}, expected a finite number >= 0"
    return f"{where}.{key} is {kind_of(value)}, expected an ISO 8601 time with an offset"


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
            max_block=self.ttl,
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
        return await self._core.fetch(
            self._path(bucket, "fw48h"),
            lambda payload: self._forecast(parse_rows(payload)),
            zone=self.zone,
            what="forecast",
        )

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
