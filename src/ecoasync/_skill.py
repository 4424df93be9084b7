"""How much the look-back shows: the statistics that decide whether a calibration's
corrections are used, and how much of the uncertainty charge is kept (see
:mod:`ecoasync._calibrate`). Each is a ratio of an estimate to its noise, so no constant is
fitted to any one grid.

Layer: decisions (pure). Imports nothing of the package.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "LEVEL_EVIDENCE",
    "SHIFT_EVIDENCE",
    "charge_weight",
    "level_evidence",
    "shift_evidence",
]

_EPS: Final = 1e-9

SHIFT_EVIDENCE: Final = 1.0
"""The :func:`shift_evidence` a timing shift needs to be used: more than the one a parameter
fitted to pure noise gets on average (a chi-squared variable with one degree of freedom)."""

LEVEL_EVIDENCE: Final = 1.0
"""The :func:`level_evidence` the errors' persistence (and, without it, their mean) needs to
be used, on the same scale."""


def level_evidence(bias: float, sigma: float, rho: float, samples: int) -> tuple[float, float]:
    """How clearly the look-back's errors persist from one slot to the next, and how clearly
    their mean differs from zero: each as a squared ratio of the estimate to its standard
    error (about a chi-squared variable with one degree of freedom where there is nothing).

    For ``samples`` errors of an AR(1) series with lag-one autocorrelation ``rho`` and standard
    deviation ``sigma``, the estimate of ``rho`` has a variance of about
    ``(1 - rho**2) / samples`` and the mean one of ``sigma**2 * (1 + rho) / (1 - rho) /
    samples``.
    """
    if samples <= 0:
        return 0.0, 0.0
    persists = samples * rho * rho / max(1.0 - rho * rho, _EPS)
    spread = sigma * sigma * (1.0 + rho) / max(1.0 - rho, _EPS) / samples
    if spread <= _EPS * max(1.0, bias * bias):  # errors all equal: a bias, known exactly
        biased = math.inf if bias else 0.0
    else:
        biased = bias * bias / spread
    return persists, biased


def charge_weight(sigma: float, swing: float) -> float:
    """The share of ``Policy.caution``'s charge kept where the forecast's remaining error has
    standard deviation ``sigma`` and the grid's actuals ``swing`` (both on the look-back):
    ``swing / sqrt(swing**2 + sigma**2)``, in ``[0, 1]``.

    Why this share. Read the forecast as the grid plus an independent error: its standard
    deviation is ``sqrt(swing**2 + sigma**2)``, and the ratio is its correlation with the
    actuals, the share of what it shows that is the grid's. The charge makes a cautious plan
    refuse a gain smaller than the error a comparison can make. Where the swing dwarfs the
    error (a weight near one) that refuses only marginal gains and keeps the large real ones:
    it costs little of the savings and buys fewer regressions and less waiting, so the full
    charge stays. Where the error is as large as the swing, every gain on offer is noise-sized
    and a full charge refuses nearly all of them, though their expected value is still
    positive and, over many jobs, the savings add while the errors average out: the charge
    falls toward zero (the risk-neutral expected savings) as the noise's share grows. The
    charge is in standard deviations, so it is scaled by a ratio of standard deviations (the
    correlation), not of variances (its square, which halves the charge where the error is as
    large as the swing and then waits for a gain within the forecast's own noise). No constant
    is fitted: one without an error, ``1/sqrt(2)`` where ``sigma == swing``, zero without a
    swing.
    """
    total = swing * swing + sigma * sigma
    if not total > _EPS:  # (also nan) no error and no swing: nothing to charge or to scale
        return 1.0
    weight = swing / math.sqrt(total)
    return 0.0 if weight < 0.0 else 1.0 if weight > 1.0 else weight


def shift_evidence(on_time: float, shifted: float, rho: float, samples: int) -> float:
    """How clearly a timing shift beats reading the forecast on time, on the look-back.

    ``on_time`` and ``shifted`` are the variances of the errors without and with the shift,
    ``rho`` the shifted errors' lag-one autocorrelation and ``samples`` their number.
    The statistic is the reduction in squared error in units of the error variance, counted
    on the effective number of independent samples of an AR(1) series,
    ``samples * (1 - rho) / (1 + rho)``: about a chi-squared variable with one degree of
    freedom when the shift only fits noise, large when the forecast is really early or late.
    """
    if not shifted > _EPS:  # (also nan: not computed)
        return math.inf if on_time > _EPS else 0.0
    effective = samples * (1.0 - rho) / (1.0 + rho)
    return effective * (on_time - shifted) / shifted
