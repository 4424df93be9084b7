"""The timing offset that best aligns a forecast with the grid's actuals (the calibration's
first question, see :mod:`ecoasync._calibrate`).

The shift ``k + w`` (``k`` whole slots, ``0 <= w < 1``, up to ``span`` slots either way)
minimises the variance of ``actual[t] - forecast[t + k + w]``, the forecast read linearly
between slots. That variance is a parabola in ``w`` on each interval ``[k, k + 1]``, so each has
a closed form from a few sums of products: the search costs one pass over the data per whole
shift, with C-level inner loops.

Layer: decisions (pure). Imports nothing from ecoasync.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = ["Search", "best_shift", "dot", "search"]

_EPS: Final = 1e-9


def dot(x: Sequence[float], y: Sequence[float]) -> float:
    total: float = sum(map(operator.mul, x, y))
    return total


def best_shift(actual: Sequence[float], padded: Sequence[float], span: int) -> tuple[int, float]:
    """:func:`search`'s shift ``k, w`` (see there)."""
    found = search(actual, padded, span)
    return found.k, found.w


class Search(NamedTuple):
    """What :func:`search` found: the shift ``k + w``, and the variance and the mean of the
    errors ``actual[t] - values[t + shift]`` at that shift and at shift 0, the sum of each
    centred error times the next (``lag``) and the last error; and the actuals' own variance
    (from the same sums)."""

    k: int
    w: float
    variance: float
    on_time_variance: float
    mean: float
    on_time_mean: float
    lag: float
    on_time_lag: float
    last: float
    on_time_last: float
    actual_variance: float


def search(actual: Sequence[float], padded: Sequence[float], span: int) -> Search:
    """The shift ``k + w`` (``k`` whole slots, ``0 <= w < 1``) in ``[-span, span]`` that minimises
    the variance of ``actual[t] - values[t + k + w]`` (linear between slots), where ``padded`` is
    ``values`` with ``span`` copies of its first value before it and ``span + 1`` of its last
    after it (of which the first ``len(actual) + 2 * span + 1`` are read).

    The variance is a parabola in ``w`` on each interval ``[k, k + 1]``, so each has a closed
    form; the sums come from prefix sums, and only the cross-products with the actuals need
    one pass per whole shift. Near-ties go to the smaller ``|shift|``, so a forecast that is
    on time keeps a shift of 0.

    The whole shift is the lowest one reached walking downhill from 0 (ties to the smaller
    ``|shift|``, then the smaller shift); a deeper minimum beyond a rise is not looked for (a
    real offset lowers the error all the way to it; noise makes scattered dips), which also
    spares most shifts' cross products.

    With ``span <= 0`` only shift 0 is tried, and the statistics are ``nan`` (not computed).
    """
    if span <= 0:
        return Search(0, 0.0, *[math.nan] * 9)
    n = len(actual)
    # (n as a float: a float divided by an int converts it so, and float-only arithmetic
    # takes the interpreter's fast paths; 2.0 * x is 2 * x for the same reason)
    size = float(n)
    if len(padded) > n + 2 * span + 1:
        padded = padded[: n + 2 * span + 1]  # the values any shift reads
    sq_a, lin, sqr, nxt, cross = _shift_sums(actual, padded, span)
    sum_a = sum(actual)

    # the best whole shift first (ties to the smaller |k|, then the smaller k), then the
    # fraction on either side
    def product(j: int) -> float:
        """The cross product of the actuals with the values whole shift ``j`` reads (once)."""
        c = cross[j]
        if c is None:
            c = cross[j] = sum(map(operator.mul, actual, padded[j : j + n]))
        return c

    def variance(j: int) -> float:
        return (sq_a - 2.0 * product(j) + sqr[j]) / size - ((sum_a - lin[j]) / size) ** 2

    on_time = variance(span)
    whole, here = span, on_time
    below, above = variance(span - 1), variance(span + 1)
    step = -1 if below <= above else 1
    if min(below, above) < here:
        while 0 <= whole + step <= 2 * span:
            nearer = variance(whole + step)
            if not nearer < here:
                break
            whole, here = whole + step, nearer
    best_var = math.inf
    best = (0, 0.0)
    for j in (whole - 1, whole):  # interval [k, k + 1] with k = j - span
        if not 0 <= j < 2 * span:
            continue
        sum_k, sum_n = lin[j], lin[j + 1]
        sq_k, sq_n = sqr[j], sqr[j + 1]
        lag = nxt[j]
        # r = actual - F_k, d = F_{k+1} - F_k
        mean_r = (sum_a - sum_k) / size
        mean_d = (sum_n - sum_k) / size
        var_r = (sq_a - 2.0 * product(j) + sq_k) / size - mean_r * mean_r
        var_d = (sq_n - 2.0 * lag + sq_k) / size - mean_d * mean_d
        cov = (product(j + 1) - product(j) - lag + sq_k) / size - mean_r * mean_d
        if var_d > _EPS * (1.0 + abs(sq_k) / size):
            # min(max(x, 0.0), 1.0) without the calls (the same for -0.0 and NaN)
            w = cov / var_d
            w = 0.0 if w < 0.0 else 1.0 if w > 1.0 else w
        else:
            w = 0.0
        var = var_r - 2.0 * w * cov + w * w * var_d
        k = j - span
        tol = 1e-9 * (1.0 + abs(var_r))
        if var < best_var - tol or (
            abs(var - best_var) <= tol and abs(k + w) < abs(best[0] + best[1])
        ):
            best_var, best = var, (k, w)
    if best[1] >= 1.0:  # the end of one interval is the start of the next
        best = (best[0] + 1, 0.0)
    k, w = best
    j = span + k
    read = lin[j] if not w else (1.0 - w) * lin[j] + w * lin[j + 1]
    mean, on_time_mean = (sum_a - read) / size, (sum_a - lin[span]) / size
    neighbours: list[float] = []  # the sum of each actual times the next, once

    def lag_sum(j: int, w: float, mean: float) -> tuple[float, float]:
        """The sum of each centred error times the next, and the last error, at the shift
        whose reads start at ``padded[j]``: from the sums above, a pass for the rest."""
        a, p, keep = actual, padded, 1.0 - w
        first = a[0] - (keep * p[j] + w * p[j + 1])
        last = a[n - 1] - (keep * p[j + n - 1] + w * p[j + n])
        if j == 0:  # (the earliest shift: the sums below would read before padded)
            errors = [x - (keep * y + w * z) for x, y, z in zip(a, p, p[1:], strict=False)]
            centred = [e - mean for e in errors]
            return dot(centred, centred[1:]), last
        if not neighbours:
            neighbours.append(dot(a, a[1:]))
        # sum(e[t] * e[t + 1]) with e = a - r, r[t] = keep * p[j + t] + w * p[j + t + 1]
        ar = keep * (product(j + 1) - a[n - 1] * p[j + n])
        ra = keep * (product(j - 1) - a[0] * p[j - 1])
        rr = nxt[j] - p[j + n - 1] * p[j + n]
        if w:
            ar += w * (product(j + 2) - a[n - 1] * p[j + n + 1])
            ra += w * (product(j) - a[0] * p[j])
            later = nxt[j + 1] - p[j + n] * p[j + n + 1]
            apart = dot(p[j : j + n - 1], p[j + 2 : j + n + 1])
            rr = keep * keep * rr + keep * w * (apart + sqr[j] - p[j] * p[j]) + w * w * later
        products = neighbours[0] - ar - ra + rr
        total = size * mean
        return products - mean * (2.0 * total - first - last) + (size - 1.0) * mean * mean, last

    shifted_lag, last = lag_sum(j, w, mean)
    on_time_lag, on_time_last = (
        lag_sum(span, 0.0, on_time_mean) if (k or w) else (shifted_lag, last)
    )
    level = sum_a / size
    return Search(
        k,
        w,
        best_var,
        on_time,
        mean,
        on_time_mean,
        shifted_lag,
        on_time_lag,
        last,
        on_time_last,
        sq_a / size - level * level,
    )


def _shift_sums(
    actual: Sequence[float], padded: Sequence[float], span: int
) -> tuple[float, list[float], list[float], list[float], list[float | None]]:
    """The sums of products :func:`search` reads, from ``actual`` and ``padded`` (cut to what
    any shift reads): of the actuals squared; for each whole shift ``j`` (and one more), the
    sums over the ``len(actual)`` values of ``padded`` that it reads (from ``padded[j]`` on):
    of the values, of their squares and (up to ``2 * span - 1``) of each times the next; the
    cross products of the actuals with those values.

    Each window's sums come from the one before it (one value leaves, one enters): one pass
    over the data per kind of sum, and a few operations per shift."""
    n = len(actual)
    mul, sub = operator.mul, operator.sub
    width = 2 * span + 1
    head, tail = padded[:width], padded[n : n + width]
    lin = list(itertools.accumulate(map(sub, tail, head), initial=sum(padded[:n])))
    first = padded[:n]
    sqr = list(
        itertools.accumulate(
            map(sub, map(mul, tail, tail), map(mul, head, head)), initial=dot(first, first)
        )
    )
    nxt = list(
        itertools.accumulate(
            map(sub, map(mul, tail, padded[n + 1 : n + width]), map(mul, head, padded[1:width])),
            initial=dot(first, padded[1 : n + 1]),
        )
    )
    cross: list[float | None] = [None] * (width + 1)  # (and one more, for search's lag)
    return dot(actual, actual), lin, sqr, nxt, cross
