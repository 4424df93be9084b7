"""``CsvForecastProvider``: forecasts (and actuals) from a trace file, for replay and offline use."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

import anyio
import anyio.to_thread

from .._exceptions import ForecastDataError
from .._forecast import Forecast, Signal, Slot, as_utc

__all__ = ["CsvForecastProvider", "parse_trace_time", "read_trace", "with_actuals"]

REQUIRED = ("from", "to", "intensity_forecast")


def parse_trace_time(text: str) -> datetime:
    """Parse ``2026-02-14T00:30Z`` or any ISO 8601 time with an offset; naive times are refused."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return as_utc(parsed, what="time")


def with_actuals(forecast: Forecast) -> Forecast:
    """The slots of ``forecast`` that have an actual value, same labels.

    Made once per forecast and kept on it: the sessions planned in one slot ask about the same
    (shared) slice of a provider's forecast, and get the same object back, so the calibration
    fitted on it is shared too."""
    return forecast._with_actuals()


def read_trace(
    path: str | os.PathLike[str],
    *,
    signal: Signal | None = None,
    name: str | None = None,
    zone: str | None = None,
) -> Forecast:
    """Read a trace CSV (columns ``from,to,intensity_forecast[,intensity_actual]``; others ignored).

    Blocking: call it from a worker thread in async code (the provider does). Raises
    :class:`~ecoasync.ForecastDataError` naming the file and line of the first bad row.
    """
    source = os.fspath(path)
    try:
        handle = open(source, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except FileNotFoundError:
        raise ForecastDataError(f"{source}: no such trace file", source=source) from None
    except OSError as exc:
        raise ForecastDataError(
            f"{source}: cannot read the trace file ({exc.strerror})", source=source
        ) from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ForecastDataError(
                f"{source}:1: missing column(s) {', '.join(missing)}; a trace needs "
                f"from,to,intensity_forecast[,intensity_actual], got {','.join(header) or 'nothing'}",
                source=source,
                line=1,
            )
        reader.fieldnames = header
        slots = []
        for row in reader:
            line = reader.line_num
            try:
                if None in row:
                    raise ValueError(
                        f"{len(header) + len(row[None])} fields where the header has {len(header)}"
                    )
                forecast_text = (row["intensity_forecast"] or "").strip()
                actual_text = (row.get("intensity_actual") or "").strip()
                if not forecast_text:
                    raise ValueError("intensity_forecast is empty")
                slots.append(
                    Slot(
                        parse_trace_time(row["from"] or ""),
                        parse_trace_time(row["to"] or ""),
                        float(forecast_text),
                        float(actual_text) if actual_text else None,
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ForecastDataError(
                    f"{source}:{line}: bad row ({exc})", source=source, line=line
                ) from None
    try:
        return Forecast(
            slots, signal=signal, provider=name or f"csv:{Path(source).name}", zone=zone
        )
    except ValueError as exc:
        raise ForecastDataError(f"{source}: {exc}", source=source) from None


class CsvForecastProvider:
    """Serves forecasts from a trace CSV, read once (in a worker thread) and kept in memory.

    The columns are ``from,to,intensity_forecast[,intensity_actual]`` (the format of
    ``ecoasync trace record`` and the UK Carbon Intensity API); times need a UTC offset or
    ``Z``. Bad rows fail with the file and line number the first time the file is read.
    ``reload()`` reads it again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        zone: str | None = None,
        signal: Signal | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or f"csv:{self.path.name}"
        self.zone = zone
        self.signal = signal or Signal()
        self._forecast: Forecast | None = None
        self._lock = anyio.Lock()

    async def load(self) -> Forecast:
        """Every slot of the file (read on first use)."""
        if self._forecast is not None:
            await anyio.lowlevel.checkpoint()
            return self._forecast
        async with self._lock:
            if self._forecast is None:
                self._forecast = await anyio.to_thread.run_sync(
                    lambda: read_trace(
                        self.path, signal=self.signal, name=self.name, zone=self.zone
                    )
                )
        return self._forecast

    async def reload(self) -> Forecast:
        self._forecast = None
        return await self.load()

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        full = await self.load()
        return full.between(as_utc(start, what="start"), as_utc(end, what="end"))

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The forecast if the file has been read, else None (no I/O)."""
        if self._forecast is None:
            return None
        return self._forecast.between(as_utc(start, what="start"), as_utc(end, what="end"))

    async def history(self, start: datetime, end: datetime) -> Forecast:
        """The slots overlapping ``[start, end)`` that have an actual value."""
        full = await self.load()
        return with_actuals(full.between(as_utc(start, what="start"), as_utc(end, what="end")))

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The history if the file has been read, else None (no I/O)."""
        if self._forecast is None:
            return None
        return with_actuals(
            self._forecast.between(as_utc(start, what="start"), as_utc(end, what="end"))
        )

    def __repr__(self) -> str:
        return f"CsvForecastProvider({str(self.path)!r})"
