"""Forecast calibration against the grid's recent actuals: pure code for the planner.

The ``"calibrated"`` strategy of :class:`~ecoasync.Policy` asks three questions of the last
:data:`LOOKBACK` (three days) of actuals, all answered by least squares on those days alone
(no constant is fitted to any one grid), and uses each answer only where the look-back shows
it beyond noise (its *skill*):

1. **Timing.** Does the forecast run early or late? The shift ``d`` (in slots, up to
   :data:`MAX_SHIFT` either way, linear between slots) that best aligns the forecast with the
   actuals: the grid at slot ``t`` is read from the forecast at ``t + d``. Used only when it
   lowers the look-back's squared error by more than fitting one number to pure noise does
   on average (:func:`~ecoasync._skill.shift_evidence` above :data:`~ecoasync._skill.SHIFT_EVIDENCE`); else the forecast is
   read on time.
2. **Level.** What is the remaining error's mean (bias), spread ``sigma`` and lag-one
   autocorrelation ``rho``? Forecast errors persist from one slot to the next, so the error
   seen in the last closed slot says where the next slots will land: the expected error ``h``
   slots after the last actual is ``bias + (last - bias) * rho ** h`` (an AR(1) model). The
   persistence is used only when ``rho`` is beyond noise, and without it the bias only when
   the mean is (:func:`~ecoasync._skill.level_evidence` above :data:`~ecoasync._skill.LEVEL_EVIDENCE`); with neither, the
   forecast is read at its own level. A look-back that shows no skill at all leaves the
   forecast exactly as it is: the plan is the raw forecast's.
3. **Uncertainty.** How far can the comparison between starting now and starting at ``t`` still
   be wrong? Under the same model the error of that difference has a standard deviation that
   grows with the distance from now (:meth:`Calibration.spread`). The planner waits only for
   a start that still wins when it is charged ``Policy.caution`` times that deviation (by
   default one), so a gain smaller than the error the forecast is making right now does not
   make work wait.
4. **Signal and noise.** How much of what the forecast shows is the grid, and how much its
   error? The actuals' standard deviation on the look-back (``swing``) against the remaining
   error's (``sigma``) answers it (:func:`~ecoasync._skill.charge_weight`): the charge is scaled by the
   correlation of forecast and actual that they imply, ``swing / sqrt(swing**2 +
   sigma**2)``. Where the forecast follows a large swing the full charge stays; where the
   error is as large as the swing, every gain on offer is noise-sized, a full charge refuses
   nearly all of them, and the planner moves toward the risk-neutral expected savings.

Three days rather than one: a shift fitted on one day of a noisy forecast is often noise
(reading between two slots averages two noisy values, which looks like a better fit whatever
the timing), and on grids whose forecast is on time it cost several points of savings; three
days find a real offset as well and a spurious one far less often (``docs/benchmarks.md``).

Everything here is O(history) per call with C-level inner loops. A fit depends on ``now`` only
through which history slots have closed, so it is kept on the history it was fitted on
(:func:`calibrate_ahead`): the sessions planned on one shared history slice fit once.

Layer: decisions (pure). Imports values (``_forecast``), the timing search (``_shift``) and
the skill statistics (``_skill``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple, cast

from ._forecast import Forecast
from ._shift import dot, search
from ._skill import LEVEL_EVIDENCE, SHIFT_EVIDENCE, charge_weight, level_evidence, shift_evidence

__all__ = [
    "LOOKBACK",
    "MAX_SHIFT",
    "MIN_ACTUALS",
    "Calibration",
    "calibrate",
    "calibrate_ahead",
]

LOOKBACK: Final = timedelta(hours=72)
"""How much history the calibration reads: three daily cycles of the grid."""

MAX_SHIFT: Final = timedelta(hours=2)
"""The largest timing offset searched, either way."""

MIN_ACTUALS: Final = 8
"""Fewer closed slots with actuals than this, and the forecast is used as it is."""

_MAX_RHO: Final = 0.99
_EPS: Final = 1e-9


class Calibration(NamedTuple):
    """What the last :data:`LOOKBACK` of actuals says about the forecast (see the module
    docstring). An immutable value; a replay makes one per job.

    ``shift`` is in slots (positive: the grid runs ahead of the forecast); ``bias``,
    ``sigma``, ``swing`` (the actuals' standard deviation on the look-back) and ``last_error``
    are in gCO2eq/kWh; ``origin`` is the start of the first
    history slot used and ``slot`` the slot length, in POSIX seconds; ``values`` the forecast
    on that grid from ``origin`` on (history first, then the forecast), gaps filled linearly.
    """

    shift: float
    bias: float
    sigma: float
    swing: float
    rho: float
    last_error: float
    samples: int
    origin: float
    slot: float
    values: tuple[float, ...]

    @property
    def weight(self) -> float:
        """The share of the uncertainty charge this look-back keeps (:func:`charge_weight`)."""
        return charge_weight(self.sigma, self.swing)

    def _read(self, x: float) -> float:
        """The forecast at fractional grid position ``x`` (clamped at both ends)."""
        values = self.values
        last = len(values) - 1
        if x <= 0:
            return values[0]
        if x >= last:
            return values[last]
        i = int(x)
        w = x - i
        return values[i] * (1.0 - w) + values[i + 1] * w if w else values[i]

    def expected(self, slot_start: float) -> float:
        """The expected actual intensity of the slot starting at ``slot_start`` (POSIX s), never
        below zero."""
        p = (slot_start - self.origin) / self.slot
        ahead = p - (self.samples - 1)  # slots since the last actual (>= 1 in the future)
        decay: float = self.rho ** max(ahead, 0.0)
        value = self._read(p + self.shift) + self.bias + (self.last_error - self.bias) * decay
        return value if value > 0.0 else 0.0  # (an intensity is never below zero)

    def expected_all(self, slot_starts: Sequence[float]) -> list[float]:
        """:meth:`expected` for many slots (the planner's hot path)."""
        values, last = self.values, len(self.values) - 1
        origin, step, shift, rho = self.origin, self.slot, self.shift, self.rho
        bias, excess = self.bias, self.last_error - self.bias
        # the whole numbers as floats: a float compared with or taken from an int converts it
        # so (exactly), and float-only arithmetic takes the interpreter's fast paths
        newest, top = float(self.samples - 1), float(last)
        out = []
        for start in slot_starts:
            p = (start - origin) / step
            x = p + shift
            if x <= 0.0:
                read = values[0]
            elif x >= top:
                read = values[last]
            else:
                i = int(x)
                w = x - i
                read = values[i] * (1.0 - w) + values[i + 1] * w
            ahead = p - newest
            value = read + bias + excess * rho ** (0.0 if ahead < 0.0 else ahead)
            out.append(value if value > 0.0 else 0.0)  # (an intensity is never below zero)
        return out

    def spread(self, now: float, start: float) -> float:
        """The standard deviation of (actual at ``start`` - actual at ``now``) given the model.

        Zero for ``start == now``; grows with the distance, to about ``sigma * sqrt(2)``.
        """
        return self.spreads(now, (start,))[0]

    def spreads(self, now: float, starts: Sequence[float]) -> list[float]:
        """:meth:`spread` for many starts."""
        rho, step = self.rho, self.slot
        rho2 = rho * rho
        innovation = self.sigma * self.sigma * (1.0 - rho2)
        gap = max((now - self.origin) / step - (self.samples - 1), 1.0)
        common = _geometric(rho2, gap)
        flat = rho2 >= 1.0 - _EPS  # _geometric(rho2, h) is h
        below = 1.0 - rho2
        sqrt = math.sqrt
        out = []
        for start in starts:
            if start <= now:
                out.append(0.0)
                continue
            h = (start - now) / step
            geometric = h if flat else (1.0 - rho2**h) / below
            variance = innovation * ((rho**h - 1.0) ** 2 * common + geometric)
            out.append(sqrt(0.0 if variance < 0.0 else variance))
        return out


def _geometric(rho2: float, n: float) -> float:
    """``sum(rho2 ** k for k < n)``, continued to real ``n``."""
    if rho2 >= 1.0 - _EPS:
        return n
    power: float = rho2**n
    return (1.0 - power) / (1.0 - rho2)


def calibrate(
    history: Forecast | None,
    now: datetime,
    slot: timedelta,
    ahead: tuple[Sequence[float], Sequence[float], Sequence[float]],
) -> Calibration | None:
    """Fit a :class:`Calibration` from ``history`` (slots with actuals, closed before ``now``).

    ``ahead`` is the forecast from ``now`` on as ``(starts, ends, values)`` (POSIX seconds and
    gCO2eq/kWh, sorted), as the planner holds it. Uses the last :data:`LOOKBACK` of contiguous
    ``slot``-long history slots with actuals. Returns ``None`` when there is too little (fewer
    than :data:`MIN_ACTUALS`), or the history and the forecast do not share a slot grid: the
    planner then reads the forecast as it is.
    """
    if not history or slot.total_seconds() <= 0:
        return None
    return _fit(history, _tail(history, now, slot, _limit(slot)), slot, ahead)


def _limit(slot: timedelta) -> int:
    """How many closed slots the calibration reads."""
    return max(_slots_in(LOOKBACK, slot), MIN_ACTUALS)


def _fit(
    history: Forecast,
    tail: tuple[int, int],
    slot: timedelta,
    ahead: tuple[Sequence[float], Sequence[float], Sequence[float]],
    regular: bool = False,
) -> Calibration | None:
    """:func:`calibrate` on the history slots ``tail`` (``lo, hi``), as :func:`_tail` found them.
    ``regular``: the caller knows that the slots ``ahead`` follow each other and each last
    exactly ``slot`` (see :func:`_regular`)."""
    step = slot.total_seconds()
    lo, hi = tail
    n = hi - lo
    if n < MIN_ACTUALS:
        return None
    columns = history._columns()
    origin = columns.starts[lo]
    actual = cast("tuple[float, ...]", columns.actuals[lo:hi])  # _tail's slots have actuals
    # the forecast on the same grid: history first, then the forecast slots after it
    values = list(columns.forecasts[lo:hi])
    reach = _slots_in(MAX_SHIFT, slot)  # the largest shift searched, in slots
    max_gap = reach + 1
    starts, ends, upcoming = ahead
    first = (starts[0] - origin) / step if starts else 0.0
    at = round(first)
    if (
        starts
        and abs(first - at) <= 1e-6
        and n - 1 <= at <= n
        and (regular or (list(ends[:-1]) == list(starts[1:]) and _all_last(starts, ends, step)))
    ):
        # the usual case: the forecast continues the history's grid without a gap
        values.extend(upcoming[n - at :])
    else:
        for start, end, value in zip(starts, ends, upcoming, strict=True):
            pos = (start - origin) / step
            k = round(pos)
            if abs(pos - k) > 1e-6 or abs(end - start - step) > 1e-6:
                return None  # not on the history's grid
            if k < len(values):
                continue
            gap = k - len(values) + 1
            if gap > max_gap:
                return None
            if gap > 1:  # fill a gap linearly
                before = values[-1]
                values.extend(before + (value - before) * j / gap for j in range(1, gap))
            values.append(value)
    span = max(reach, 0)
    # the values, read at shifts of up to span slots either way (and one slot more, to
    # interpolate): the first repeated before them, the last after them
    padded = [values[0]] * span + values[: n + span + 1]
    if len(values) < n + span + 1:
        padded += [values[-1]] * (n + span + 1 - len(values))
    found = search(actual, padded, span)
    k, w = found.k, found.w
    if span:  # the errors' statistics come with the search, from its sums
        bias, variance, last = found.mean, found.variance, found.last
        spread = found.actual_variance
        rho = _rho(found.lag, variance, n)
        if (k or w) and shift_evidence(found.on_time_variance, variance, rho, n) < SHIFT_EVIDENCE:
            # the timing correction only where the look-back shows it beyond noise (see
            # shift_evidence): else the forecast is read on time
            k, w = 0, 0.0
            bias, variance, last = found.on_time_mean, found.on_time_variance, found.on_time_last
            rho = _rho(found.on_time_lag, variance, n)
    else:  # (slots longer than MAX_SHIFT: no shift is searched)
        errors, bias, sq, rho = _residuals(actual, padded, span, 0, 0.0)
        variance, last = sq / float(n), errors[-1]
        level = sum(actual) / float(n)
        spread = dot(actual, actual) / float(n) - level * level
    sigma = math.sqrt(variance) if variance > 0.0 else 0.0
    # the level correction only where it is beyond noise too (see level_evidence): the
    # errors' persistence, and without it their mean
    persists, biased = level_evidence(bias, sigma, rho, n)
    if persists < LEVEL_EVIDENCE:
        rho = 0.0  # the last error says nothing about the next ones
        if biased < LEVEL_EVIDENCE:
            bias = 0.0  # nor their mean: the forecast is read at its own level
        last = bias
    swing = math.sqrt(spread) if spread > 0.0 else 0.0
    return Calibration(k + w, bias, sigma, swing, rho, last, n, origin, step, tuple(values))


def _rho(lag: float, variance: float, samples: int) -> float:
    """The lag-one autocorrelation from the sum of each centred error times the next and the
    errors' variance, clamped to ``[0, _MAX_RHO]``."""
    sq = variance * samples
    rho = lag / sq if sq > _EPS else 0.0
    # min(max(rho, 0.0), _MAX_RHO) without the calls (the same for -0.0 and NaN)
    return 0.0 if rho < 0.0 else _MAX_RHO if rho > _MAX_RHO else rho


def _residuals(
    actual: Sequence[float], padded: list[float], span: int, k: int, w: float
) -> tuple[list[float], float, float, float]:
    """The errors of the forecast read at shift ``k + w`` (see :func:`_fit`), their mean, the
    sum of their squared deviations from it and their lag-one autocorrelation (clamped to
    ``[0, _MAX_RHO]``)."""
    n = len(actual)
    here = padded[span + k : span + k + n]
    if w:
        # actual - (x * (1 - w) + y * w), with C-level loops
        after = padded[span + k + 1 : span + k + 1 + n]
        read = map(operator.add, map((1.0 - w).__mul__, here), map(w.__mul__, after))
        errors = list(map(operator.sub, actual, read))
    else:
        errors = list(map(operator.sub, actual, here))
    size = float(n)  # (what a float divided by n converts it to: float-only is faster)
    total = sum(errors)
    bias = total / size
    squares = dot(errors, errors)
    sq = squares - total * bias
    if sq > 1e-6 * squares:
        # each centred error times the next, from the raw sums (_dot stops at the shorter)
        lag = sum(map(operator.mul, errors, itertools.islice(errors, 1, None)))
        lag -= bias * (2.0 * total - errors[0] - errors[-1])
        lag += (size - 1.0) * bias * bias
    else:  # the errors are nearly all equal: centre them first, for precision
        centred = [e - bias for e in errors]
        sq = dot(centred, centred)
        lag = dot(centred, centred[1:])
    rho = lag / sq if sq > _EPS else 0.0
    # min(max(rho, 0.0), _MAX_RHO) without the calls (the same for -0.0 and NaN)
    rho = 0.0 if rho < 0.0 else _MAX_RHO if rho > _MAX_RHO else rho
    return errors, bias, sq, rho


def _slots_in(duration: timedelta, slot: timedelta) -> int:
    """How many whole ``slot``-long slots ``duration`` holds."""
    return int(duration / slot)


_EXACT: Final = 2.0**33
"""POSIX times (s) below this in magnitude (until the year 2242) are exact to 2**-21 s."""


def _regular(forecast: Forecast, slot: timedelta) -> bool:
    """Whether the slots of ``forecast`` follow each other without a gap and each lasts exactly
    ``slot``, known from the forecast as a whole: then their POSIX times pass :func:`_fit`'s
    checks (each end equals the next start, each slot lasts ``slot`` to a microsecond: the
    conversion errs by at most 2**-21 s a time below :data:`_EXACT`) without being read."""
    columns = forecast._columns()
    return (
        columns.length == slot
        and not forecast.gaps
        and bool(columns.starts)
        and columns.starts[0] > -_EXACT
        and columns.ends[-1] < _EXACT
    )


def _all_last(starts: Sequence[float], ends: Sequence[float], step: float) -> bool:
    """Whether every slot ``[start, end)`` lasts ``step`` seconds (to a microsecond)."""
    for start, end in zip(starts, ends, strict=False):  # noqa: SIM110 (a generator costs more)
        if not abs(end - start - step) <= 1e-6:
            return False
    return True


class _Fit(NamedTuple):
    """A calibration kept on the history it was fitted on (see :func:`calibrate_ahead`)."""

    ahead: Forecast
    slot: timedelta
    tail: tuple[int, int]
    calibration: Calibration | None


def calibrate_ahead(
    history: Forecast | None, now: datetime, slot: timedelta, ahead: Forecast
) -> Calibration | None:
    """:func:`calibrate` for the forecast ``ahead`` of ``now``.

    A calibration depends on ``now`` only through which history slots have closed, so the
    answer is kept on ``history`` (its last few, each with the ``ahead`` it was made for): the
    sessions planned on the same (shared) history and forecast slices between two closed slots
    fit once, and the fit dies with the history.
    """
    if not history or slot.total_seconds() <= 0:
        return None
    lo, hi = tail = _tail(history, now, slot, _limit(slot))
    if hi - lo < MIN_ACTUALS:
        return None  # too little history to fit (a source without actuals, say)
    for fit in history._fits:
        if fit.ahead is ahead and fit.tail == tail and fit.slot == slot:
            return cast("Calibration | None", fit.calibration)
    columns = ahead._columns()
    calibration = _fit(
        history,
        tail,
        slot,
        (columns.starts, columns.ends, columns.forecasts),
        _regular(ahead, slot),
    )
    history._keep("_fits", _Fit(ahead, slot, tail, calibration))
    return calibration


def _tail(history: Forecast, now: datetime, slot: timedelta, limit: int) -> tuple[int, int]:
    """The last run of contiguous, ``slot``-long slots with actuals that closed by ``now``, at
    most ``limit`` long: its bounds ``lo, hi`` in ``history``."""
    slots = history.slots
    columns = history._columns()
    actuals = columns.actuals
    hi = len(slots)
    if hi and slots[hi - 1].end > now:
        # the slots' ends increase: those that closed by now come first (found on the POSIX
        # times, then checked on the datetimes, which the conversion may round)
        hi = bisect.bisect_right(columns.ends, now.timestamp())
        while hi < len(slots) and slots[hi].end <= now:
            hi += 1
        while hi and slots[hi - 1].end > now:
            hi -= 1
    if hi and actuals[hi - 1] is None:  # the newest closed slots may not have actuals yet
        if actuals.count(None) == len(actuals):
            return 0, 0  # none has (a source without actuals)
        while hi and actuals[hi - 1] is None:
            hi -= 1
    lo = max(hi - limit, 0)
    if (
        not history.gaps
        and columns.length == slot
        and (columns.complete or None not in actuals[lo:hi])
    ):
        return lo, hi  # the usual case, known from the forecast as a whole
    start = hi  # else walk back to the first break
    while start > lo:
        s = slots[start - 1]
        if (
            s.actual is None
            or s.end - s.start != slot
            or (start < hi and s.end != slots[start].start)
        ):
            break
        start -= 1
    return start, hi
