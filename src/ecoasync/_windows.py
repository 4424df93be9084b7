"""Window means of a piecewise-constant forecast: what the planner scores every start by.

:class:`Integrator` gives the time-weighted mean of a forecast over any window by prefix sums;
:func:`bends` the starts where a window's mean can bend (the only ones the planner compares);
:func:`window_of` both for a forecast slice, kept on it for the sessions planned on it.

Layer: decisions (pure). Imports values only (``_forecast``; the calibration's type).
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from ._forecast import Forecast, as_utc

if TYPE_CHECKING:
    from ._calibrate import Calibration

__all__ = ["Integrator", "Window", "bends", "window_mean", "window_of"]

_EPS = 1e-9


class Integrator:
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
    def of(cls, forecast: Forecast) -> Integrator:
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
    return Integrator.of(forecast).means((a,), max(duration.total_seconds(), _EPS))[0]


def bends(integ: Integrator, span: float) -> list[float]:
    """The starts where a ``span``-long window's mean can bend, sorted.

    The window mean is piecewise linear in the start time: its minimum over a budget lies at
    either end of it or where the window's start or end crosses a slot boundary (the
    calibrated strategy's uncertainty term is concave in the start, which keeps this true).
    """
    boundaries = {*integ.starts, *integ.ends}
    return sorted({*boundaries, *[b - span for b in boundaries]})


class Window:
    """What the plans made on one forecast window share (see :func:`window_of`): the integrator
    of its slots, the starts where a window mean can bend, and the means from the last range of
    them a plan asked for."""

    __slots__ = ("_last", "calibration", "integ", "points", "span", "used")

    def __init__(
        self, calibration: Calibration | None, used: int, span: float, integ: Integrator
    ) -> None:
        self.calibration = calibration
        self.used = used
        self.span = span
        self.integ = integ
        self.points = bends(integ, span)
        self._last: tuple[int, int, list[float | None]] = (0, 0, [])

    def means(self, lo: int, hi: int) -> list[float | None]:
        """The window mean from each of ``points[lo:hi]`` (not to be changed: it may be shared).

        The sessions planned in one slot ask for the same range; a replay asks once per window,
        and pays only for the range it reads."""
        known_lo, known_hi, means = self._last  # (one tuple: a thread sees all of it or none)
        if known_lo != lo or known_hi != hi:
            means = self.integ.means(self.points[lo:hi], self.span)
            self._last = (lo, hi, means)
        return means


def window_of(
    relevant: Forecast, calibration: Calibration | None, used: int, span: float
) -> Window:
    """The :class:`Window` of the first ``used`` slots of ``relevant`` for a ``span``-long
    window, their intensities read as they are or, with a ``calibration``, as it expects them.

    None of it depends on when the plan is made, so it is kept on ``relevant`` (its last few):
    the sessions planned on the same shared forecast slice in one slot compute it once.
    """
    for window in relevant._windows:
        if window.calibration is calibration and window.used == used and window.span == span:
            return cast("Window", window)
    columns = relevant._columns()
    starts = columns.starts[:used]
    values = columns.forecasts[:used] if calibration is None else calibration.expected_all(starts)
    window = Window(calibration, used, span, Integrator(starts, columns.ends[:used], values))
    relevant._keep("_windows", window)
    return window
