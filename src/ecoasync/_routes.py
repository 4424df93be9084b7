"""Routes: the set of places a choice picks from, and the rules it follows.

:class:`Routes` holds :class:`~ecoasync.Route` values (:mod:`ecoasync._route`) with the rules
every choice over them follows (strategy, residency, latency ceiling, share cap, home) and
the live state its sessions share (how many run on each route, for ``max_share``);
:func:`filter_routes` applies the residency filter before any scoring. No I/O here; the
choosing is in :mod:`ecoasync._routing`.

Layer: values (no I/O). Imports values only (durations, the route value).
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, overload

from ._durations import format_duration
from ._route import (
    DEFAULT_LATENCY_WEIGHT,
    DEFAULT_PUE,
    DEFAULT_WUE,
    ROUTE_STRATEGIES,
    Route,
    RouteError,
    RouteStrategy,
    bounded_number,
    describe_target,
    parse_latency,
)

__all__ = [
    # the route value, for the modules that take a route and its set together
    "DEFAULT_LATENCY_WEIGHT",
    "DEFAULT_PUE",
    "DEFAULT_WUE",
    "ROUTE_STRATEGIES",
    "Route",
    "RouteError",
    "RouteStrategy",
    "Routes",
    "check_strategy",
    "describe_target",
    "filter_routes",
    "parse_labels",
]


def parse_labels(value: object, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise RouteError(
            f"{what} must be labels such as ['eu'], got {value!r}", field=what, value=value
        )
    out = frozenset(value)
    if not out or not all(isinstance(v, str) and v for v in out):
        raise RouteError(
            f"{what} must be non-empty labels such as ['eu'], got {value!r}",
            field=what,
            value=value,
        )
    return out


def check_strategy(strategy: object) -> RouteStrategy:
    if strategy not in ROUTE_STRATEGIES:
        raise RouteError(
            f"strategy must be one of {', '.join(map(repr, ROUTE_STRATEGIES))}, got {strategy!r}",
            field="strategy",
            value=strategy,
        )
    return strategy


def filter_routes(
    routes: Sequence[Route], residency: frozenset[str] | None
) -> tuple[tuple[Route, ...], tuple[tuple[Route, str], ...]]:
    """The routes that meet ``residency``, and those that do not with the reason.

    Raises :class:`RouteError` naming the filter when none is left."""
    kept = tuple(r for r in routes if r.meets(residency))
    if residency is None:
        return kept, ()
    dropped = tuple((r, r.why_not(residency)) for r in routes if not r.meets(residency))
    if not kept:
        wanted = ", ".join(sorted(residency))
        reasons = "; ".join(f"{r.name!r}: {why}" for r, why in dropped)
        raise RouteError(
            f"no route meets residency={{{wanted}}}: {reasons}. Tag a route of a known grid with "
            f"one of these labels, or widen residency",
            field="residency",
            value=sorted(residency),
        )
    return kept, dropped


@dataclass(frozen=True, init=False)
class Routes(Sequence[Route]):
    """The routes a session (``Policy(routes=...)``) or :func:`~ecoasync.choose_route` picks from,
    and the rules it follows.

    Args:
        routes: the :class:`Route` values; names must be unique.
        home: where the work runs by default (the baseline: "at once, at home"); the first
            route unless named.
        strategy: ``"lowest_carbon"`` (the default), ``"lowest_water"`` or ``"balanced"``
            (carbon plus ``latency_weight`` gCO2eq/kWh per second of latency).
        residency: labels a route must carry one of (``["eu"]``); a hard filter applied before
            any scoring. A route whose grid is unknown never meets it. A filter that leaves no
            route is refused here, naming it.
        max_latency: a ceiling on a route's latency (measured, else configured); routes with
            no latency figure pass.
        max_share: the largest share (``0.5``) of this set's running sessions one route may
            hold, counting the new one (a route holding ``ceil(max_share * (running + 1))`` is
            full); a full route is passed over for the next best (if all are full, the best is
            taken). ``None``: no cap.
        latency_weight: see ``strategy``; gCO2eq/kWh per second of latency.
        latency_percentile: which percentile of the measured latencies counts (default 0.9).

    A ``Routes`` also keeps the live state its sessions share: how many run on each route (for
    ``max_share``). Herd spreading in time is the session's ledger's (``Policy.ledger``, by
    default :func:`~ecoasync.default_ledger`), keyed by the chosen route's zone, as for sessions
    without routes.
    """

    routes: tuple[Route, ...]
    home: str
    strategy: RouteStrategy
    residency: frozenset[str] | None
    max_latency: timedelta | None
    max_share: float | None
    latency_weight: float
    latency_percentile: float
    _held: dict[str, int] = field(repr=False, compare=False)
    _lock: threading.Lock = field(repr=False, compare=False)

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        home: str | None = None,
        strategy: RouteStrategy = "lowest_carbon",
        residency: Iterable[str] | str | None = None,
        max_latency: timedelta | str | None = None,
        max_share: float | None = None,
        latency_weight: float = DEFAULT_LATENCY_WEIGHT,
        latency_percentile: float = 0.9,
    ) -> None:
        if isinstance(routes, Route):
            routes = [routes]
        given: object = routes
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise RouteError(
                f"routes must be a list of ecoasync.Route values, got {routes!r}",
                field="routes",
                value=routes,
            )
        items = tuple(routes)
        if not items:
            raise RouteError("routes must hold at least one Route", field="routes", value=items)
        for item in items:
            if not isinstance(item, Route):
                raise RouteError(
                    f"routes must be ecoasync.Route values, got {item!r}",
                    field="routes",
                    value=item,
                )
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise RouteError(
                    f"two routes are named {item.name!r}; route names must be unique "
                    "(events and reports key on them)",
                    field="routes",
                    value=item.name,
                )
            seen.add(item.name)
        names = [r.name for r in items]
        if home is None:
            home = names[0]
        elif home not in seen:
            close = difflib.get_close_matches(str(home), names, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise RouteError(
                f"home {home!r} is not one of the routes ({', '.join(names)}){hint}",
                field="home",
                value=home,
            )
        labels = parse_labels(residency, "residency")
        filter_routes(items, labels)  # refuse a filter that leaves nothing, now
        home_route = items[names.index(home)]
        if labels is not None and not home_route.meets(labels):
            raise RouteError(
                f"the home route {home!r} does not meet residency={{{', '.join(sorted(labels))}}} "
                f"({home_route.why_not(labels)}); choose another home",
                field="home",
                value=home,
            )
        share = (
            None if max_share is None else bounded_number(max_share, "max_share", low=0.0, high=1.0)
        )
        if share == 0.0:
            raise RouteError(
                "max_share must be > 0 (a share such as 0.5), or None for no cap",
                field="max_share",
                value=max_share,
            )
        values: dict[str, Any] = {
            "routes": items,
            "home": home,
            "strategy": check_strategy(strategy),
            "residency": labels,
            "max_latency": parse_latency(max_latency, "max_latency"),
            "max_share": share,
            "latency_weight": bounded_number(latency_weight, "latency_weight", low=0.0),
            "latency_percentile": bounded_number(
                latency_percentile, "latency_percentile", low=0.0, high=1.0
            ),
            "_held": {},
            "_lock": threading.Lock(),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @classmethod
    def of(cls, value: Routes | Iterable[Route]) -> Routes:
        """``value`` if it is a ``Routes``, else ``Routes(value)``."""
        return value if isinstance(value, Routes) else cls(value)

    def __len__(self) -> int:
        return len(self.routes)

    @overload
    def __getitem__(self, index: int) -> Route: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Route, ...]: ...
    def __getitem__(self, index: int | slice) -> Route | tuple[Route, ...]:
        return self.routes[index]

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def named(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)

    @property
    def home_route(self) -> Route:
        return self.named(self.home)

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.routes)
        extra = f", residency={sorted(self.residency)}" if self.residency else ""
        if self.max_latency is not None:
            extra += f", max_latency={format_duration(self.max_latency)}"
        if self.max_share is not None:
            extra += f", max_share={self.max_share:g}"
        return f"Routes([{names}], home={self.home!r}, strategy={self.strategy!r}{extra})"

    # --- the live state the sessions of this set share ---

    def loads(self) -> dict[str, int]:
        """Running sessions per route (those holding a place for ``max_share``)."""
        with self._lock:
            return dict(self._held)

    def hold(self, name: str) -> None:
        with self._lock:
            self._held[name] = self._held.get(name, 0) + 1

    def release(self, name: str) -> None:
        with self._lock:
            left = self._held.get(name, 0) - 1
            if left > 0:
                self._held[name] = left
            else:
                self._held.pop(name, None)
