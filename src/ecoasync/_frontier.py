"""The carbon-for-delay frontier: one trace replayed under a grid of policies (both
strategies, each ``min_improvement`` and, for ``"calibrated"``, each ``caution``), each point
marked Pareto-efficient in (savings, mean delay) or not. ``ecoasync simulate --frontier``
prints and plots it.

Layer: decisions (pure). Imports values (``_policy``, ``_forecast``) and the replay engine
(``_simulate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._forecast import Forecast
from ._policy import Policy
from ._simulate import DEFAULT_ENERGY_KWH, Progress, Replay, replay_sweep

__all__ = [
    "FRONTIER_CAUTIONS",
    "FRONTIER_MIN_IMPROVEMENTS",
    "FrontierPoint",
    "frontier",
    "frontier_policies",
]

FRONTIER_MIN_IMPROVEMENTS: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
"""The ``min_improvement`` values :func:`frontier` sweeps (fractions: 0.05 = wait only for a
start forecast at least 5 % lower than now)."""

FRONTIER_CAUTIONS: tuple[float, ...] = (0.0, 0.5, 1.0)
"""The ``caution`` values :func:`frontier` sweeps for the calibrated strategy (0 risk-neutral,
1 cautious); the default's is always among them."""


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    """One policy of a :func:`frontier` sweep and its replay."""

    strategy: str
    min_improvement: float
    caution: float | None  # None: the strategy has no risk setting (``lowest``)
    result: Replay
    efficient: bool = False
    """No other point of the sweep emits less with no more mean delay (or as little with
    less): Pareto-efficient in (savings, mean delay)."""
    default: bool = False
    """The library's default policy (with the sweep's ``max_delay``)."""

    @property
    def series(self) -> str:
        """The line this point is drawn on: its strategy, and its caution if it has one."""
        if self.caution is None:
            return self.strategy
        return f"{self.strategy}, caution {self.caution:g}"

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "strategy": self.strategy,
            "min_improvement": self.min_improvement,
            "caution": self.caution,
            "scheduled_g": round(r.scheduled_g, 6),
            "reduction_pct": round(r.reduction_pct, 3),
            "oracle_capture_pct": round(r.oracle_capture_pct, 3),
            "mean_delay_h": round(r.mean_delay_h, 4),
            "median_delay_h": round(r.median_delay_h, 4),
            "regressions": r.regressions,
            "pareto": self.efficient,
            "default": self.default,
        }


def _caution_of(policy: Policy) -> float | None:
    """The policy's risk setting, or None where its strategy does not read it."""
    return policy.caution if policy.strategy == "calibrated" else None


def frontier_policies(
    policy: Policy,
    *,
    min_improvements: Sequence[float] = FRONTIER_MIN_IMPROVEMENTS,
    cautions: Sequence[float] = FRONTIER_CAUTIONS,
) -> list[Policy]:
    """The policies :func:`frontier` replays: ``policy`` (its ``max_delay`` and the rest)
    with each strategy, each ``min_improvement`` and, for ``"calibrated"``, each ``caution``
    (plus the default's); ``lowest`` first. Values are validated by :class:`Policy`."""
    from ._policy import STRATEGIES

    sweep = sorted({*cautions, Policy().caution})
    out = []
    for strategy in sorted(STRATEGIES, key=lambda s: s != "lowest"):
        for m in min_improvements:
            if strategy == "calibrated":
                out += [
                    policy.evolve(strategy=strategy, min_improvement=m, caution=c) for c in sweep
                ]
            else:
                out.append(policy.evolve(strategy=strategy, min_improvement=m))
    return out


def frontier(
    trace: Forecast,
    policy: Policy,
    *,
    min_improvements: Sequence[float] = FRONTIER_MIN_IMPROVEMENTS,
    cautions: Sequence[float] = FRONTIER_CAUTIONS,
    energy_kwh: float = DEFAULT_ENERGY_KWH,
    progress: Progress | None = None,
) -> list[FrontierPoint]:
    """The carbon-for-delay trade-off on ``trace``: a :func:`replay_sweep` over
    :func:`frontier_policies`, each point marked Pareto-efficient or not, and the library's
    default marked. Points come ordered by strategy, caution, then ``min_improvement``.
    """
    policies = frontier_policies(policy, min_improvements=min_improvements, cautions=cautions)
    results = replay_sweep(trace, policies, energy_kwh=energy_kwh, progress=progress)
    base = Policy()
    default = (base.strategy, base.min_improvement, _caution_of(base))
    points = [
        FrontierPoint(p.strategy, p.min_improvement, _caution_of(p), r)
        for p, r in zip(policies, results, strict=True)
    ]
    marked = [
        FrontierPoint(
            pt.strategy,
            pt.min_improvement,
            pt.caution,
            pt.result,
            efficient=not any(_dominates(q.result, pt.result) for q in points),
            default=(pt.strategy, pt.min_improvement, pt.caution) == default,
        )
        for pt in points
    ]
    order = {s: n for n, s in enumerate(dict.fromkeys(pt.strategy for pt in marked))}
    return sorted(
        marked,
        key=lambda pt: (order[pt.strategy], pt.caution or 0.0, pt.min_improvement),
    )


def _dominates(a: Replay, b: Replay) -> bool:
    """``a`` emits no more than ``b`` with no more mean delay, and is better in one."""
    return (
        a.scheduled_g <= b.scheduled_g
        and a.mean_delay_h <= b.mean_delay_h
        and (a.scheduled_g < b.scheduled_g or a.mean_delay_h < b.mean_delay_h)
    )
