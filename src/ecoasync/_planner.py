"""The planner: pure code that picks when work should start. No I/O, no clock, no globals.

The live session, the simulator and the benchmarks all call :func:`plan`.
"""

from __future__ import annotations

import itertools
import operator
import random
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from ._calibrate import MAX_SHIFT, PESSIMISM, calibrate_ahead, remembering
from ._forecast import Forecast, as_utc
from ._ledger import SlotLedger
from ._plan import Decision, Plan
from ._policy import Policy

__all__ = ["Decision", "Plan", "plan", "run_now_plan", "window_mean"]

_EPS = 1e-9
_ZERO = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)


class _Integrator:
    """Time-weighted integrals of a piecewise-constant forecast, by prefix sums."""

    def __init__(
        self,
        starts: Sequence[float],
        ends: Sequence[float],
        values: Sequence[float],
    ) -> None:
        self.starts = starts
        self.ends = ends
        self.values = values
        widths = list(map(operator.sub, ends, starts))
        self._area = list(itertools.accumulate(map(operator.mul, widths, values), initial=0.0))
        self._covered = list(itertools.accumulate(widths, initial=0.0))

    @classmethod
    def of(cls, forecast: Forecast) -> _Integrator:
        columns = forecast._columns()
        return cls(columns.starts, columns.ends, columns.forecasts)

    def means(self, starts: Iterable[float], span: float) -> list[float | None]:
        """The time-weighted mean over the covered part of ``[t, t + span]``, for every ``t`` in
        ``starts``; None where none of it is covered."""
        bounds, ends, values = self.starts, self.ends, self.values
        area, covered = self._area, self._covered
        out: list[float | None] = []
        for a in starts:
            b = a + span
            # the area and the covered time from the first slot's start up to b, then up to a
            i = bisect_right(bounds, b) - 1
            if i < 0:
                area_b = cov_b = 0.0
            else:
                inside = (ends[i] if ends[i] < b else b) - bounds[i]
                area_b, cov_b = area[i] + inside * values[i], covered[i] + inside
            i = bisect_right(bounds, a) - 1
            if i < 0:
                area_a = cov_a = 0.0
            else:
                inside = (ends[i] if ends[i] < a else a) - bounds[i]
                area_a, cov_a = area[i] + inside * values[i], covered[i] + inside
            out.append(None if cov_b - cov_a <= _EPS else (area_b - area_a) / (cov_b - cov_a))
        return out


def window_mean(forecast: Forecast, start: datetime, duration: timedelta) -> float | None:
    """The time-weighted mean forecast over ``[start, start + duration]`` (its covered part)."""
    a = as_utc(start).timestamp()
    return _Integrator.of(forecast).means((a,), max(duration.total_seconds(), _EPS))[0]


def run_now_plan(
    now: datetime,
    policy: Policy,
    *,
    decision: Decision,
    forecast: Forecast | None = None,
    forecast_error: str | None = None,
    provider: str | None = None,
) -> Plan:
    """A plan that starts at ``now`` (used when there is nothing to choose from)."""
    now = as_utc(now, what="now")
    intensity = None
    if forecast:
        slot = forecast.at(now)
        window = policy.expected_duration or (slot.duration if slot else _slot_length(forecast))
        assert window is not None
        if slot is not None and now + window <= slot.end:
            intensity = slot.forecast  # the common case: the work fits in the current slot
        else:
            intensity = window_mean(forecast, now, window)
    else:
        window = policy.expected_duration or timedelta(minutes=30)
    return Plan(
        created_at=now,
        start=now,
        deadline=now + policy.max_delay,
        decision=decision,
        now_intensity=intensity,
        planned_intensity=intensity,
        candidates=1 if intensity is not None else 0,
        slot_start=now,
        jitter=_ZERO,
        window=window,
        # an empty forecast still says who answered (with nothing)
        provider=forecast.provider if forecast is not None else provider,
        zone=forecast.zone if forecast is not None else None,
        signal=forecast.signal if forecast is not None else None,
        forecast_error=forecast_error,
    )


def _slot_length(forecast: Forecast | None) -> timedelta | None:
    if not forecast:
        return None
    length = forecast._columns().length
    if length is not None:
        return length  # the usual case: all slots are as long
    # the most common slot length, so that one odd slot at the edge does not decide
    lengths = Counter([s.end - s.start for s in forecast.slots])
    if len(lengths) == 1:
        return next(iter(lengths))
    return max(lengths, key=lambda d: (lengths[d], -d.total_seconds()))


def _bends(integ: _Integrator, span: float, *extra: float) -> list[float]:
    """The starts where a ``span``-long window's mean can bend, and ``extra``, sorted.

    The window mean is piecewise linear in the start time: its minimum over a budget lies at
    either end of it or where the window's start or end crosses a slot boundary (the
    calibrated strategy's uncertainty term is concave in the start, which keeps this true).
    """
    boundaries = {*integ.starts, *integ.ends}
    return sorted({*extra, *boundaries, *[b - span for b in boundaries]})


class _Window(NamedTuple):
    """What the plans made on one forecast window share (see :func:`_window`)."""

    forecast: Forecast
    values: Sequence[float]
    integ: _Integrator
    points: list[float]
    """:func:`_bends`: every start where the window mean can bend."""
    means: list[float | None]
    """The window mean from each of ``points``."""


_WINDOWS: dict[tuple[int, int, int, float], _Window] = {}
_WINDOWS_SIZE: Final = 16


def _window(relevant: Forecast, values: Sequence[float], used: int, span: float) -> _Window:
    """The integrator of the first ``used`` slots of ``relevant`` (with these ``values``: the
    forecast's or the calibration's), the starts where a ``span``-long window's mean can bend
    and the mean from each of them.

    None of it depends on when the plan is made, so the sessions planned on the same shared
    forecast slice in one slot compute it once: the last :data:`_WINDOWS_SIZE` are kept, with
    their objects (an identity match, never a stale one). (A replay, which plans each window
    once, does without: see :func:`plan`.)
    """
    key = (id(relevant), id(values), used, span)
    hit = _WINDOWS.get(key)
    if hit is not None and hit.forecast is relevant and hit.values is values:
        return hit
    columns = relevant._columns()
    integ = _Integrator(columns.starts[:used], columns.ends[:used], values[:used])
    points = _bends(integ, span)
    window = _Window(relevant, values, integ, points, integ.means(points, span))
    if len(_WINDOWS) >= _WINDOWS_SIZE:
        try:  # noqa: SIM105 (as in calibrate_ahead: the oldest goes, unless already gone)
            del _WINDOWS[next(iter(_WINDOWS))]
        except (KeyError, RuntimeError, StopIteration):
            pass
    _WINDOWS[key] = window
    return window


def _jitter(
    integ: _Integrator,
    best: float,
    t_now: float,
    t_deadline: float,
    amount: float,
    rng: random.Random,
) -> timedelta:
    """A random offset of at most ``amount`` seconds that keeps the start in the budget.

    Forward, inside the chosen slot, where there is room. When the chosen slot begins exactly
    at the deadline there is none (the case where naive jitter adds nothing and every job wakes
    at the same instant): the spread then goes backwards, by at most ``amount``, so the work
    still starts in the budget and its window still lies almost wholly in the chosen slot.
    """
    i = bisect_right(integ.starts, best) - 1
    slot_end = integ.ends[i] if i >= 0 and best < integ.ends[i] else best
    forward = min(amount, slot_end - best, t_deadline - best)
    if forward > 0:
        return timedelta(microseconds=int(rng.random() * forward * 1e6))
    backward = min(amount, best - t_now)
    if best >= t_deadline and backward > 0:
        return -timedelta(microseconds=int(rng.random() * backward * 1e6))
    return _ZERO


def plan(
    forecast: Forecast,
    now: datetime,
    policy: Policy,
    *,
    rng: random.Random | None = None,
    history: Forecast | None = None,
    ledger: SlotLedger | None = None,
) -> Plan:
    """Choose when work submitted at ``now`` should start under ``policy``.

    Every start in ``[now, now + max_delay]`` (deadline inclusive) is a candidate; each is
    scored by the time-weighted mean intensity over the work's window (``expected_duration``,
    or one slot). Only the starts where the score can bend are compared: ``now``, the deadline,
    every slot boundary and every time at which the window's end meets a boundary, so the
    result is the exact optimum for any slot length. Ties go to the earliest start. The plan
    waits only when the best start beats now by at least ``min_improvement``.

    ``policy.strategy`` decides what a slot's intensity is. ``"lowest"``: the forecast as it
    is (the published EcoTracker rule). ``"calibrated"``: the forecast corrected by what
    ``history`` (slots closed before ``now``, with actuals) says about its timing, bias and
    current error, and each later start charged one standard deviation of the error the
    comparison with now can still make (see :mod:`ecoasync._calibrate`); without enough
    history it is ``"lowest"``. For ``"calibrated"``, ``now_intensity`` and
    ``planned_intensity`` are the corrected estimates.

    With a ``ledger``, a waiting plan weighs each start that still beats now (and meets
    ``min_improvement``) by how loaded its slot is (see :class:`~ecoasync.SlotLedger`), so
    concurrent plans spread over near-optimal slots instead of all waking in one. ``plan`` only reads the
    ledger; the caller reserves the plan's slot (``ledger.reserve(plan)``).

    With ``rng`` and ``policy.jitter > 0``, a waiting plan's start moves by a random amount of at
    most ``jitter``: later, inside the chosen slot and the budget; or, when the chosen slot begins
    exactly at the deadline, earlier (see :func:`_jitter`). The start never leaves the budget.
    """
    now = as_utc(now, what="now")
    if not forecast:
        return run_now_plan(now, policy, decision="no-forecast", forecast=forecast)
    if policy.max_delay <= _ZERO:
        return run_now_plan(now, policy, decision="no-delay-budget", forecast=forecast)
    deadline = now + policy.max_delay
    slot = _slot_length(forecast)
    window = policy.expected_duration or slot or timedelta(minutes=30)

    calibrating = policy.strategy == "calibrated" and bool(history) and slot is not None
    # the calibration reads the forecast up to MAX_SHIFT past the last window it scores
    reach = deadline + window + (MAX_SHIFT if calibrating else _ZERO)
    relevant = forecast.between(now, reach + _MICROSECOND)
    if not relevant:
        return run_now_plan(now, policy, decision="no-forecast", forecast=forecast)
    columns = relevant._columns()
    t_now = now.timestamp()
    t_deadline = deadline.timestamp()
    span = window.total_seconds()

    # the slots that can matter: through the first one that starts after the last window ends
    used = bisect_right(columns.starts, t_deadline + span) + 1
    calibration = expected = None
    if calibrating and slot is not None:
        calibration, expected = calibrate_ahead(history, now, slot, relevant, used)
    values = columns.forecasts if expected is None else expected
    # the candidates: now, the deadline and the points where the mean bends between them
    if remembering():  # shared with the next sessions on this slice (see _window)
        shared = _window(relevant, values, used, span)
        integ, points = shared.integ, shared.points
        inner = slice(bisect_right(points, t_now), bisect_left(points, t_deadline))
        ends = (t_now, t_deadline) if t_deadline > t_now else (t_now,)
        ordered = [t_now, *points[inner], *ends[1:]]
        # only the means from now and the deadline are this plan's own
        first, *last = integ.means(ends, span)
        means = [first, *shared.means[inner], *last]
    else:  # a replay: this window is planned once
        integ = _Integrator(columns.starts[:used], columns.ends[:used], values[:used])
        points = _bends(integ, span, t_now, t_deadline)
        ordered = points[bisect_left(points, t_now) : bisect_right(points, t_deadline)]
        means = integ.means(ordered, span)
    scored: list[tuple[float, float, float]] = []  # (start, expected intensity, score)
    if calibration is None:  # a start's score is its mean
        scored = [(t, m, m) for t, m in zip(ordered, means, strict=True) if m is not None]
    else:
        margins = calibration.spreads(t_now, ordered)
        for t, m, margin in zip(ordered, means, margins, strict=True):
            if m is not None:
                scored.append((t, m, m + PESSIMISM * margin))
    if not scored:
        return run_now_plan(now, policy, decision="no-forecast", forecast=forecast)

    # now's intensity: the window from now, or (if the forecast starts later) the first score
    first_t, now_score, _ = scored[0]
    best_t, best_mean, best_score = scored[0]
    beats = best_score - _EPS * max(1.0, abs(best_score))  # what a later start must be under
    for t, m, score in scored[1:]:
        if score < beats:
            best_t, best_mean, best_score = t, m, score
            beats = best_score - _EPS * max(1.0, abs(best_score))

    threshold = now_score * (1.0 - policy.min_improvement) + _EPS
    if best_t == first_t or best_score >= now_score - _EPS * max(1.0, now_score):
        decision: Decision = "now-is-best"
        best_t, best_mean = t_now, now_score
    elif best_score > threshold:
        decision = "below-min-improvement"
        best_t, best_mean = t_now, now_score
    else:
        decision = "wait"
        if ledger is not None:
            beats_now = now_score - _EPS * max(1.0, now_score)
            best_t, best_mean = ledger.choose(
                [c for c in scored[1:] if c[2] <= threshold and c[2] < beats_now], best_score
            )

    slot_start = datetime.fromtimestamp(best_t, now.tzinfo)
    start = slot_start
    jitter = _ZERO
    if decision == "wait" and rng is not None and policy.jitter > _ZERO:
        jitter = _jitter(integ, best_t, t_now, t_deadline, policy.jitter.total_seconds(), rng)
        start = slot_start + jitter
    return Plan(
        created_at=now,
        start=start,
        deadline=deadline,
        decision=decision,
        now_intensity=now_score,
        planned_intensity=best_mean,
        candidates=len(scored),
        slot_start=slot_start,
        jitter=jitter,
        window=window,
        provider=forecast.provider,
        zone=forecast.zone,
        signal=forecast.signal,
    )
