"""What a route choice says, as plain values: each route as the choice saw it
(:class:`Candidate`) and the choice itself (:class:`RouteChoice`). :mod:`ecoasync._routing`
makes them; the ``Routed`` event and the records carry them.

Layer: values. Imports values only (``_route``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ._route import Route, RouteStrategy

__all__ = ["Basis", "Candidate", "RouteChoice"]

Basis = Literal["forecast", "actual", "mix", "worst-of-mixes", "mean-of-mixes", "none"]
"""Where a candidate's intensity comes from: its provider's forecast (or measured value), its
zone's EcoLogits annual average (``mix``), or, for a route whose grid is unknown, the worst or
mean of its zones' annual averages."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One route as a choice saw it.

    ``intensity`` is the expected gCO2eq/kWh over the work's window from ``start`` (for a
    session: its planned start on that route), ``signal`` its accounting basis
    (``average/lifecycle``: location-based average; ``marginal/...``: marginal), ``source``
    where the figure comes from (:data:`Basis`). ``water_l_per_kwh`` is on-site WUE plus PUE
    times the grid's water intensity. ``score`` is what the strategy minimised (lower wins).
    ``skipped`` says why a route was not considered (its provider failed, it broke a
    constraint); ``uncertain`` marks an unknown grid or a guessed water figure.
    """

    route: str
    zone: str | None
    intensity: float | None = None
    start: datetime | None = None
    signal: str | None = None
    source: Basis = "none"
    water_l_per_kwh: float | None = None
    latency_s: float | None = None
    latency_source: str = "none"
    score: float | None = None
    uncertain: bool = False
    valid_until: datetime | None = None
    decision: str | None = None
    skipped: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteChoice:
    """The route chosen, and why: every candidate with its figures, which won, how long the
    answer stays valid (``valid_until``: the end of the forecast slot it was read in, ``None``
    for static figures), which routes were skipped and why.

    ``route`` is the winner (its ``target`` is yours to use); ``home`` and
    ``home_intensity`` the baseline (running at once, at home) when known.
    """

    route: Route
    strategy: RouteStrategy
    at: datetime
    start: datetime
    intensity: float | None
    signal: str | None
    home: str | None
    home_intensity: float | None
    valid_until: datetime | None
    candidates: tuple[Candidate, ...]
    reason: str

    @property
    def skipped(self) -> tuple[Candidate, ...]:
        """The candidates that were not considered, with ``skipped`` saying why."""
        return tuple(c for c in self.candidates if c.skipped is not None)

    @property
    def ranked(self) -> tuple[Candidate, ...]:
        """The considered candidates, best first."""
        kept = [c for c in self.candidates if c.skipped is None and c.score is not None]
        return tuple(sorted(kept, key=lambda c: c.score if c.score is not None else math.inf))
