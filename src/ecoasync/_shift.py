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

import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["best_shift", "dot", "search"]

_EPS: Final = 1e-9


def dot(x: Sequence[float], y: Sequence[float]) -> float:
    total: float = sum(map(operator.mul, x, y))
    return total


def best_shift(actual: Sequence[float], padded: Sequence[float], span: int) -> tuple[int, float]:
    """:func:`search`'s shift ``k, w`` (see there)."""
    k, w, _, _ = search(actual, padded, span)
    return k, w


def search(
    actual: Sequence[float], padded: Sequence[float], span: int
) -> tuple[int, float, float, float]:
    """The shift ``k + w`` (``k`` whole slots, ``0 <= w < 1``) in ``[-span, span]`` that minimises
    the variance of ``actual[t] - values[t + k + w]`` (linear between slots), where ``padded`` is
    ``values`` with ``span`` copies of its first value before it and ``span + 1`` of its last
    after it (of which the first ``len(actual) + 2 * span + 1`` are read).

    The variance is a parabola in ``w`` on each interval ``[k, k + 1]``, so each has a closed
    form; the sums come from prefix sums, and only the cross-products with the actuals need
    one pass per whole shift. Near-ties go to the smaller ``|shift|``, so a forecast that is
    on time keeps a shift of 0.

    Returns ``k, w`` and two variances of ``actual[t] - values[t + shift]``: at that shift and
    at shift 0 (with ``span <= 0`` only shift 0 is tried, and both are ``nan``: not computed).
    """
    if span <= 0:
        return 0, 0.0, math.nan, math.nan
    n = len(actual)
    # (n as a float: a float divided by an int converts it so, and float-only arithmetic
    # takes the interpreter's fast paths; 2.0 * x is 2 * x for the same reason)
    size = float(n)
    if len(padded) > n + 2 * span + 1:
        padded = padded[: n + 2 * span + 1]  # the values any shift reads
    lin = [0.0, *itertools.accumulate(padded)]
    sq_a, sqr, nxt, cross = _shift_sums(actual, padded, span)
    sum_a = sum(actual)
    # the best whole shift first (ties to the smaller |k|, then the smaller k), then the
    # fraction on either side
    variances = [  # one per whole shift (cross is the shortest)
        (sq_a - 2.0 * c + sq_end - sq) / size - ((sum_a - lin_end + lin_start) / size) ** 2
        for c, sq_end, sq, lin_end, lin_start in zip(
            cross, sqr[n:], sqr, lin[n:], lin, strict=False
        )
    ]
    whole = _lowest(variances, span)
    best_var = math.inf
    best = (0, 0.0)
    for j in (whole - 1, whole):  # interval [k, k + 1] with k = j - span
        if not 0 <= j < 2 * span:
            continue
        sum_k, sum_n = lin[j + n] - lin[j], lin[j + 1 + n] - lin[j + 1]
        sq_k, sq_n = sqr[j + n] - sqr[j], sqr[j + 1 + n] - sqr[j + 1]
        lag = nxt[j + n] - nxt[j]
        # r = actual - F_k, d = F_{k+1} - F_k
        mean_r = (sum_a - sum_k) / size
        mean_d = (sum_n - sum_k) / size
        var_r = (sq_a - 2.0 * cross[j] + sq_k) / size - mean_r * mean_r
        var_d = (sq_n - 2.0 * lag + sq_k) / size - mean_d * mean_d
        cov = (cross[j + 1] - cross[j] - lag + sq_k) / size - mean_r * mean_d
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
    return best[0], best[1], best_var, variances[span]


def _lowest(variances: list[float], span: int) -> int:
    """The index of the lowest of ``variances`` (of the whole shifts ``index - span``), ties
    to the smaller ``|shift|`` and then the smaller shift: what ``min(range(2 * span + 1),
    key=lambda j: (variances[j], abs(j - span)))`` gives, without a Python call per shift."""
    if math.isnan(sum(variances)):
        # (only from values so large that their squares overflow) a NaN is neither lower
        # nor higher than anything: where it stands decides, so min() itself goes through them
        return min(range(2 * span + 1), key=lambda j: (variances[j], abs(j - span)))
    order, ranked = _nearest_first(span)
    by_distance = ranked(variances)
    return order[by_distance.index(min(by_distance))]  # the first of the lowest in that order


@functools.lru_cache(maxsize=8)
def _nearest_first(
    span: int,
) -> tuple[tuple[int, ...], Callable[[list[float]], tuple[float, ...]]]:
    """The indices ``0 .. 2 * span`` of the whole shifts ``index - span`` by distance from
    shift 0, the negative one of a pair first, and a getter of a list's items in that order
    (``span >= 1``)."""
    pairs = ((span - d, span + d) for d in range(1, span + 1))
    order = (span, *itertools.chain.from_iterable(pairs))
    return order, operator.itemgetter(*order)


def _shift_sums(
    actual: Sequence[float], padded: Sequence[float], span: int
) -> tuple[float, list[float], list[float], list[float]]:
    """The sums of products :func:`best_shift` reads, from ``actual`` and ``padded`` (cut to
    what any shift reads): of the actuals squared; the prefix sums of ``padded`` squared and
    times its next value; the cross products of the actuals with ``padded`` at each whole
    shift."""
    n = len(actual)
    sqr = [0.0, *itertools.accumulate(map(operator.mul, padded, padded))]
    nxt = [0.0, *itertools.accumulate(map(operator.mul, padded, padded[1:]))]
    cross = [sum(map(operator.mul, actual, padded[j : j + n])) for j in range(2 * span + 1)]
    return dot(actual, actual), sqr, nxt, cross
