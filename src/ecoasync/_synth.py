"""Synthetic forecasts for traces that only have actuals: a seeded, documented error model.

Most public carbon-intensity data (Electricity Maps' yearly exports, for one) has the grid's
actual intensity and no forecast, so ``ecoasync simulate`` has nothing to plan on. An
:class:`ErrorModel` makes a forecast from the actuals, the way a real forecast goes wrong:

``forecast(t) = actual(t - offset) + bias + tod(t) + e(t)``, floored at 0, where

- **offset** (a duration, positive: the forecast runs *late*): the forecast at ``t`` reads the
  actual at ``t - offset``, linearly between slot starts (held at the first and last value at
  the trace's ends);
- **bias** = ``bias_pct`` % of the series' mean actual, added to every slot;
- **tod(t)** = ``time_of_day_pct`` % of the mean times ``cos(2 pi (h - time_of_day_peak) / 24)``,
  ``h`` the UTC hour of the slot's start: a daily-periodic error of that amplitude (peak to
  zero), largest at ``time_of_day_peak`` o'clock UTC;
- **e(t)**: an AR(1) error, stationary, of standard deviation ``sigma_pct`` % of the mean and
  correlation ``rho`` between errors **one hour** apart. On a trace of slot length ``s`` the
  per-slot coefficient is ``rho ** (s / 1 h)`` (half-hourly: ``sqrt(rho)``), so one model means
  the same on hourly and half-hourly data. ``e(0)`` is drawn from the stationary law.

Percentages are of the mean actual of the whole input series (so 10 % is 10 g on a 100 g
grid and 75 g on a 750 g one). A ``seed`` makes it deterministic (``random.Random(seed)``).

The defaults are the errors of the UK National Grid ESO forecast on the shared benchmark trace
(2026-02-14 .. 2026-03-15, 1,440 half-hours), measured by :func:`measure` with
``ecoasync trace errors benchmark_trace.csv``. :func:`measure` fits the same model to a trace
that has both columns: (1) the offset (searched from -2 h to +2 h, in quarter slots and then in
1/20 slot around the best) whose remainder is smallest once (2) its mean (the bias) and a
least-squares 24-hour sinusoid (the time-of-day error) are taken out; (3) what is left then
gives the standard deviation (sigma) and the lag-one autocorrelation (turned into a one-hour
correlation). UK figures (mean actual 125.36 g): offset 42 min late (1.40 half-hour slots),
bias +1.32 % of the mean, sigma 7.35 %, rho 0.43 one hour apart (0.66 one half-hour apart),
time of day 0.54 % peaking at 21:00 UTC (about what a month of noise alone leaves: the UK
forecast has no daily error pattern to speak of). Synthesizing from the same actuals with
these defaults and measuring again gives them back (seeds 1-3: sigma 7.24-7.27 %, rho
0.41-0.43, bias 0.96-1.40 %, offset 40.5-45 min, time of day 0.29-0.71 %).
See ``UK_ERRORS``.

:func:`synthetic_trace` makes a whole made-up grid (actual and forecast) for tests and
benchmarks: a daily cycle, slow weather and noise, with a forecast that errs as above.

Layer: decisions (pure: no I/O, no clock). Imports values (``_checks``, ``_durations``,
``_exceptions``, ``_forecast``).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ._checks import is_number, is_whole
from ._durations import format_duration, parse_duration
from ._exceptions import PolicyError
from ._forecast import Forecast, Slot

__all__ = ["MAX_OFFSET", "UK_ERRORS", "ErrorModel", "measure", "synthesize", "synthetic_trace"]

MAX_OFFSET: Final = timedelta(hours=24)
"""The largest timing offset a model may have, either way."""

_HOUR: Final = timedelta(hours=1)
_SEARCH: Final = timedelta(hours=2)  # the offsets measure() tries, either way
_SEARCH_STEPS: Final = 20  # per slot


@dataclass(frozen=True, slots=True)
class ErrorModel:
    """How a synthetic forecast differs from the actuals (see the module docstring).

    ``sigma_pct``, ``bias_pct`` and ``time_of_day_pct`` are percentages of the series' mean
    actual; ``rho`` is the correlation of the random error one hour apart; ``offset`` is how
    late the forecast runs (negative: early), a ``timedelta`` or a string like ``"1h"`` or
    ``"-30m"``; ``time_of_day_peak`` is the UTC hour (0 <= h < 24) where the time-of-day error
    is largest; ``seed`` fixes the random error. Every field is checked here: a bad value
    raises :class:`~ecoasync.PolicyError` naming the field.
    """

    sigma_pct: float = 7.35
    rho: float = 0.43
    bias_pct: float = 1.32
    offset: timedelta | str = timedelta(minutes=42)
    time_of_day_pct: float = 0.54
    time_of_day_peak: float = 21.0
    seed: int = 0

    def __post_init__(self) -> None:
        _percent(self.sigma_pct, "sigma_pct", low=0.0, high=100.0, what="the error's spread")
        if not is_number(self.rho) or not 0 <= self.rho < 1:
            raise PolicyError(
                f"rho must be a number with 0 <= rho < 1 (the correlation of the error one hour "
                f"apart; 0 for independent errors), got {self.rho!r}",
                field="rho",
                value=self.rho,
            )
        _percent(self.bias_pct, "bias_pct", low=-100.0, high=100.0, what="the bias")
        _percent(self.time_of_day_pct, "time_of_day_pct", low=0.0, high=100.0, what="the amplitude")
        peak = self.time_of_day_peak
        if not is_number(peak) or not 0 <= peak < 24:
            raise PolicyError(
                f"time_of_day_peak must be an hour of the day, 0 <= h < 24 (UTC), got {peak!r}",
                field="time_of_day_peak",
                value=peak,
            )
        if not is_whole(self.seed):
            raise PolicyError(
                f"seed must be a whole number (it fixes the random error), got {self.seed!r}",
                field="seed",
                value=self.seed,
            )
        try:
            offset = parse_duration(self.offset, field="offset")
        except (TypeError, ValueError) as exc:
            raise PolicyError(
                f"{exc} (positive: the forecast runs late; negative: early)",
                field="offset",
                value=self.offset,
            ) from None
        if abs(offset) > MAX_OFFSET:
            raise PolicyError(
                f"offset must be within {format_duration(MAX_OFFSET)} either way, "
                f"got {format_duration(offset)}",
                field="offset",
                value=self.offset,
            )
        object.__setattr__(self, "offset", offset)

    @property
    def lag(self) -> timedelta:
        """``offset`` as a ``timedelta`` (it is one after construction)."""
        assert isinstance(self.offset, timedelta)
        return self.offset

    def evolve(self, **changes: Any) -> ErrorModel:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["offset"] = format_duration(self.lag)
        out["offset_minutes"] = round(self.lag.total_seconds() / 60, 2)
        return out


def _percent(value: object, name: str, *, low: float, high: float, what: str) -> None:
    if not is_number(value) or not low <= value <= high:
        raise PolicyError(
            f"{name} must be a number from {low:g} to {high:g} ({what}, in % of the series' "
            f"mean actual; e.g. 10 for 10 %), got {value!r}",
            field=name,
            value=value,
        )


UK_ERRORS: Final = ErrorModel()
"""The UK forecast's measured errors (the defaults; see the module docstring)."""


def _regular(trace: Forecast, what: str) -> tuple[timedelta, list[float]]:
    """The slot length and the actuals of a gap-free trace of equal slots with actuals."""
    slots = trace.slots
    if len(slots) < 2:
        raise ValueError(f"{what} needs at least two slots, got {len(slots)}")
    step = slots[0].duration
    if step > _HOUR * 24 or timedelta(days=1) % step:
        raise ValueError(f"{what}: the slots ({step}) must divide a day")
    actual: list[float] = []
    for i, s in enumerate(slots):
        if s.duration != step or (i and s.start != slots[i - 1].end):
            raise ValueError(
                f"{what} needs equal slots with no gaps: slot {i} ({s.start:%Y-%m-%dT%H:%MZ}) "
                f"lasts {s.duration} or does not follow the one before (fill the gap first)"
            )
        if s.actual is None:
            raise ValueError(f"{what} needs an actual in every slot; slot {i} has none")
        actual.append(s.actual)
    return step, actual


def _read_late(actual: Sequence[float], lag_slots: float) -> list[float]:
    """``actual`` read ``lag_slots`` slots late (linear between slots, held at the ends)."""
    last = len(actual) - 1
    out = []
    for i in range(len(actual)):
        x = min(max(i - lag_slots, 0.0), float(last))
        lo = min(math.floor(x), last - 1)
        w = x - lo
        out.append(actual[lo] * (1 - w) + actual[lo + 1] * w)
    return out


def _hour(trace: Forecast, i: int) -> float:
    start = trace.slots[i].start
    return start.hour + start.minute / 60 + start.second / 3600


def synthesize(trace: Forecast, model: ErrorModel = UK_ERRORS) -> Forecast:
    """``trace`` with its forecast replaced by one made from its actuals under ``model``.

    ``trace`` needs equal slots (hourly, half-hourly, ...) with no gaps and an actual in each;
    its own forecast is ignored. Raises ``ValueError`` saying what is missing otherwise. The
    result has the same slots, actuals, provider and zone. Deterministic for ``model.seed``.
    """
    step, actual = _regular(trace, "a trace to add a forecast to")
    mean = statistics.fmean(actual)
    late = _read_late(actual, model.lag / step)
    phi = model.rho ** (step / _HOUR)
    sd = model.sigma_pct / 100 * mean
    rng = random.Random(model.seed)
    bias = model.bias_pct / 100 * mean
    amp = model.time_of_day_pct / 100 * mean
    innovation = sd * math.sqrt(1 - phi * phi)
    err = rng.gauss(0.0, sd)
    slots = []
    for i, s in enumerate(trace.slots):
        if i:
            err = phi * err + rng.gauss(0.0, innovation)
        tod = amp * math.cos(2 * math.pi * (_hour(trace, i) - model.time_of_day_peak) / 24)
        value = max(late[i] + bias + tod + err, 0.0)
        slots.append(Slot(s.start, s.end, value, s.actual))
    return Forecast(slots, signal=trace.signal, provider=trace.provider, zone=trace.zone)


def measure(trace: Forecast) -> ErrorModel:
    """The :class:`ErrorModel` that fits ``trace``'s forecast against its actuals.

    The steps are in the module docstring. ``trace`` needs equal slots with no gaps, a forecast
    and an actual in each, and at least two days. The result's ``seed`` is 0. Raises
    ``ValueError`` otherwise.
    """
    step, actual = _regular(trace, "measuring a forecast's errors")
    if len(actual) * step < timedelta(days=2):
        raise ValueError("measuring a forecast's errors needs at least two days of slots")
    forecast = [s.forecast for s in trace.slots]
    mean = statistics.fmean(actual)
    reach = int(_SEARCH / step)
    skip = reach + 1  # compare only where every candidate reads inside the trace
    angles = [2 * math.pi * _hour(trace, i) / 24 for i in range(skip, len(actual) - skip)]
    daily = _Daily(angles)

    def fitted(lag: float) -> tuple[float, float, float, float, list[float]]:
        late = _read_late(actual, lag)
        rest = [f - a for f, a in zip(forecast[skip:-skip], late[skip:-skip], strict=True)]
        bias = statistics.fmean(rest)
        centred = [r - bias for r in rest]
        c, s, explained = daily.fit(centred)
        return math.fsum(r * r for r in centred) - explained, bias, c, s, centred

    # the offset whose remainder, once the bias and the daily sinusoid are fitted, is smallest:
    # in quarter slots first, then in 1/20 slot around the best
    coarse = [k / 4 for k in range(-reach * 4, reach * 4 + 1)]
    best = min(coarse, key=lambda d: (fitted(d)[0], abs(d)))
    fine = [
        best + k / _SEARCH_STEPS for k in range(-5, 6) if abs(best + k / _SEARCH_STEPS) <= reach
    ]
    lag = min(fine, key=lambda d: (fitted(d)[0], abs(d)))
    _, bias, c, s, centred = fitted(lag)
    amp = math.hypot(c, s)
    peak = (math.degrees(math.atan2(s, c)) / 15) % 24
    noise = [r - c * math.cos(x) - s * math.sin(x) for r, x in zip(centred, angles, strict=True)]
    sd = statistics.pstdev(noise)
    level = statistics.fmean(noise)
    noise = [n - level for n in noise]
    var = math.fsum(n * n for n in noise)
    r1 = math.fsum(a * b for a, b in itertools.pairwise(noise)) / var if var > 0 else 0.0
    rho = max(r1, 0.0) ** (_HOUR / step)
    return ErrorModel(
        sigma_pct=100 * sd / mean,
        rho=min(rho, 0.999),
        bias_pct=100 * bias / mean,
        offset=timedelta(seconds=round(lag * step.total_seconds())),
        time_of_day_pct=100 * amp / mean,
        time_of_day_peak=peak if peak < 24 else 0.0,
    )


class _Daily:
    """Least squares of ``values ~ c cos(angle) + s sin(angle)`` for fixed angles."""

    def __init__(self, angles: Sequence[float]) -> None:
        self.cos = [math.cos(x) for x in angles]
        self.sin = [math.sin(x) for x in angles]
        cc = math.fsum(v * v for v in self.cos)
        ss = math.fsum(v * v for v in self.sin)
        cs = math.fsum(a * b for a, b in zip(self.cos, self.sin, strict=True))
        self.gram = (cc, ss, cs, cc * ss - cs * cs)

    def fit(self, values: Sequence[float]) -> tuple[float, float, float]:
        """``c``, ``s`` and the sum of squares the sinusoid explains."""
        cc, ss, cs, det = self.gram
        if det <= 1e-12:
            return 0.0, 0.0, 0.0
        vc = math.fsum(v * w for v, w in zip(values, self.cos, strict=True))
        vs = math.fsum(v * w for v, w in zip(values, self.sin, strict=True))
        c, s = (vc * ss - vs * cs) / det, (vs * cc - vc * cs) / det
        return c, s, c * vc + s * vs


def synthetic_trace(
    days: int,
    *,
    start: datetime | None = None,
    slot: timedelta = timedelta(minutes=30),
    seed: int = 0,
    error: float = 12.0,
    persistence: float = 0.75,
    lag_slots: float = 0.0,
) -> Forecast:
    """A made-up grid with forecast and actual, for tests, benchmarks and overfitting checks.

    The actual is a daily cycle (cleaner at night and midday) plus slow weather (a random walk
    pulled back to its mean) and noise; the forecast is the actual read ``lag_slots`` late
    plus an autocorrelated error of standard deviation ``error`` and lag-one correlation
    ``persistence``. Deterministic for a ``seed``. Starts at ``start`` (default midnight UTC,
    2025-01-01) and covers ``days`` days plus half a day, so the last day's look-ahead fits.
    """
    rng = random.Random(seed)
    begin = start or datetime(2025, 1, 1, tzinfo=UTC)
    per_day = timedelta(days=1) / slot
    count = int((days + 0.5) * per_day)
    weather = 0.0
    actual: list[float] = []
    for i in range(count + 8):
        hour = (i / per_day % 1.0) * 24
        cycle = 40 * math.cos((hour - 18) / 24 * 2 * math.pi) - 20 * math.cos(
            (hour - 13) / 12 * math.pi
        )
        weather = 0.98 * weather + rng.gauss(0, 6)
        actual.append(max(20.0, 160 + cycle + weather + rng.gauss(0, 3)))
    slots = []
    err = 0.0
    for i in range(count):
        err = persistence * err + rng.gauss(0, error * math.sqrt(1 - persistence**2))
        x = i - lag_slots
        lo = min(max(math.floor(x), 0), len(actual) - 2)
        w = min(max(x - lo, 0.0), 1.0)
        seen = actual[lo] * (1 - w) + actual[lo + 1] * w
        s = begin + i * slot
        slots.append(Slot(s, s + slot, round(max(seen + err, 1.0), 1), round(actual[i], 1)))
    return Forecast(slots, provider="synthetic", zone="synthetic")
