"""Routes: the places LLM work can run, as validated values.

A :class:`Route` is one place (a grid zone such as ``"FR"`` or a cloud region such as
``"azure:swedencentral"``) with what the choice needs to know of it: its expected latency, its
residency labels, its water usage effectiveness, where its forecast comes from, and the
user's own ``target`` (a client, a base URL, a deployment) handed back once it is chosen.
:class:`Routes` is a set of them with the rules a choice follows (strategy, residency, latency
ceiling, share cap, home). No I/O here; the choosing is in :mod:`ecoasync._routing`.
"""

from __future__ import annotations

import difflib
import math
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, overload
from urllib.parse import urlsplit

from ._durations import format_duration, parse_duration
from ._exceptions import PolicyError
from ._provider import ForecastProvider

if TYPE_CHECKING:
    from ._ledger import SlotLedger

__all__ = [
    "DEFAULT_LATENCY_WEIGHT",
    "DEFAULT_PUE",
    "DEFAULT_WUE",
    "ROUTE_STRATEGIES",
    "Route",
    "RouteError",
    "RouteStrategy",
    "Routes",
]

RouteStrategy = Literal["lowest_carbon", "lowest_water", "balanced"]
ROUTE_STRATEGIES: Final[tuple[RouteStrategy, ...]] = ("lowest_carbon", "lowest_water", "balanced")

DEFAULT_PUE: Final = 1.2
"""Power usage effectiveness assumed for a route that gives none (EcoLogits' default)."""
DEFAULT_WUE: Final = 0.569
"""On-site water usage effectiveness (L/kWh) assumed for a route that gives none (EcoLogits'
default for a data centre it knows nothing of); such a route's water figure is marked
uncertain."""
DEFAULT_LATENCY_WEIGHT: Final = 100.0
"""``balanced``: how many gCO2eq/kWh one second of latency is worth (100: a route 100 ms
slower must be 10 gCO2eq/kWh cleaner to win)."""
_PRIOR_WEIGHT: Final = 5
"""The configured latency counts as this many measurements (see :meth:`Route.latency_s`)."""
_WINDOW: Final = 64
"""Measured latencies kept per route (the moving window)."""


class RouteError(PolicyError):
    """Routes that cannot be used as given: a duplicate name, an unknown home, a constraint
    (residency, latency ceiling) that leaves no route. ``field`` names the option."""


def _latency(value: object, what: str) -> timedelta | None:
    """``timedelta``, ``"250ms"``, ``"1.5s"`` or ``"PT1S"``; None passes."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower().endswith("ms"):
        try:
            parsed = timedelta(milliseconds=float(value.strip()[:-2]))
        except ValueError:
            parsed = None
    else:
        try:
            parsed = parse_duration(value, field=what)
        except (TypeError, ValueError):
            parsed = None
    if parsed is None or parsed < timedelta(0):
        raise RouteError(
            f"{what} must be a duration >= 0 such as '250ms', '1.5s' or a timedelta, got {value!r}",
            field=what,
            value=value,
        )
    return parsed


def _number(value: object, what: str, *, low: float, high: float = math.inf) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        bounds = f"in [{low:g}, {high:g}]" if high != math.inf else f">= {low:g}"
        raise RouteError(
            f"{what} must be a finite number {bounds}, got {value!r}", field=what, value=value
        )
    return float(value)


def describe_target(target: object) -> str | None:
    """A safe description of a route's target for logs and events: its type, or a URL's
    scheme and host (never a path, a query or credentials)."""
    if target is None:
        return None
    if isinstance(target, str):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https") and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}"
        return f"str ({len(target)} characters)"
    return type(target).__qualname__


class _Latencies:
    """A route's recent measured latencies (time to first token), thread-safe."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._values: deque[float] = deque(maxlen=_WINDOW)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            with self._lock:
                self._values.append(seconds)

    def snapshot(self) -> list[float]:
        with self._lock:
            return sorted(self._values)


@dataclass(frozen=True, slots=True, init=False)
class Route:
    """One place LLM work can run.

    ``Route("sweden", "azure:swedencentral", latency="300ms", tags=["eu"], target=client)``.

    Args:
        name: a short, unique name for events and reports.
        where: a grid zone (``"FR"``, ``"US-CAL-CISO"``) or a cloud region written
            ``"<cloud>:<region>"`` (``"azure:swedencentral"``, ``"aws:eu-north-1"``), resolved
            through :mod:`ecoasync.providers.regions`; an unknown region fails with the closest
            names.
        among: instead of ``where``, for a deployment whose serving region the provider chooses
            (Azure OpenAI Global or DataZone, Bedrock cross-region profiles): the zones or regions
            it may be served from. Its grid is unknown: it never meets a residency label, its
            carbon is marked uncertain and taken as the ``charge`` (``"worst"``, the default, or
            ``"mean"``) of those zones' EcoLogits annual averages.
        latency: the expected time to first token (``"250ms"``, a ``timedelta``): the prior
            that measured latencies replace as they come in.
        tags: labels such as residency (``"eu"``); :class:`Routes` ``residency=`` filters on them.
        wue: on-site water usage effectiveness of the data centre, L/kWh (``None``: EcoLogits'
            default of 0.569, marked uncertain).
        pue: power usage effectiveness (default 1.2), for the grid's share of the water.
        provider: the forecast provider of this route's zone (e.g.
            ``ElectricityMapsProvider(zone="SE-SE3")``); ``None`` uses EcoLogits' annual average
            of the zone (a static figure: no time to shift into).
        target: whatever your code needs to send work there; never put in events, records or
            reprs (they show :func:`describe_target`).
    """

    name: str
    zone: str | None
    region: str | None
    among: tuple[str, ...]
    charge: Literal["worst", "mean"]
    latency: timedelta | None
    tags: frozenset[str]
    wue: float | None
    pue: float
    provider: ForecastProvider | None = field(repr=False, compare=False)
    target: Any = field(repr=False, compare=False)
    _latencies: _Latencies = field(repr=False, compare=False)

    def __init__(
        self,
        name: str,
        where: str | None = None,
        *,
        among: Iterable[str] = (),
        charge: Literal["worst", "mean"] = "worst",
        latency: timedelta | str | None = None,
        tags: Iterable[str] = (),
        wue: float | None = None,
        pue: float = DEFAULT_PUE,
        provider: ForecastProvider | None = None,
        target: Any = None,
    ) -> None:
        from .providers.regions import UnknownRegionError, resolve_zone

        if not isinstance(name, str) or not name.strip():
            raise RouteError(
                f"Route.name must be a non-empty string, got {name!r}", field="name", value=name
            )
        if isinstance(among, str):
            raise RouteError(
                f"Route {name!r}: among must be a list of zones or regions, got the string "
                f"{among!r}; write among=[{among!r}]",
                field="among",
                value=among,
            )
        members = tuple(among)
        if (where is None) == (not members):
            raise RouteError(
                f"Route {name!r} needs either where (a zone such as 'FR' or a region such as "
                "'azure:swedencentral') or among (the zones a cross-region deployment may use), "
                "not both and not neither",
                field="where",
                value=where,
            )
        if charge not in ("worst", "mean"):
            raise RouteError(
                f"Route {name!r}: charge must be 'worst' or 'mean', got {charge!r}",
                field="charge",
                value=charge,
            )
        try:
            zone = resolve_zone(where) if where is not None else None
            zones = tuple(dict.fromkeys(resolve_zone(m) for m in members))
        except UnknownRegionError as exc:
            raise UnknownRegionError(
                f"Route {name!r}: {exc}", region=exc.region, suggestions=exc.suggestions
            ) from None
        except ValueError as exc:
            raise RouteError(f"Route {name!r}: {exc}", field="where", value=where) from None
        if isinstance(tags, str):
            raise RouteError(
                f"Route {name!r}: tags must be a list of labels, got the string {tags!r}; "
                f"write tags=[{tags!r}]",
                field="tags",
                value=tags,
            )
        labels = frozenset(tags)
        for tag in labels:
            if not isinstance(tag, str) or not tag:
                raise RouteError(
                    f"Route {name!r}: tags must be non-empty strings, got {tag!r}",
                    field="tags",
                    value=tags,
                )
        if provider is not None:
            if not isinstance(provider, ForecastProvider):
                raise RouteError(
                    f"Route {name!r}: provider must be a forecast provider (with .name and async "
                    f".forecast(start, end)), got {provider!r}",
                    field="provider",
                    value=provider,
                )
            if zone is None:
                raise RouteError(
                    f"Route {name!r}: a cross-region route (among=...) is charged at its zones' "
                    "annual averages and takes no provider; give each region its own Route",
                    field="provider",
                    value=provider,
                )
            said = getattr(provider, "zone", None)
            if isinstance(said, str) and said and said != zone:
                raise RouteError(
                    f"Route {name!r} is in zone {zone!r} but its provider {provider.name!r} "
                    f"serves zone {said!r}; give it a provider for {zone!r}",
                    field="provider",
                    value=provider,
                )
        values: dict[str, Any] = {
            "name": name.strip(),
            "zone": zone,
            "region": where if where is not None and ":" in where else None,
            "among": zones,
            "charge": charge,
            "latency": _latency(latency, f"Route {name!r} latency"),
            "tags": labels,
            "wue": None if wue is None else _number(wue, f"Route {name!r} wue", low=0.0),
            "pue": _number(pue, f"Route {name!r} pue", low=1.0),
            "provider": provider,
            "target": target,
            "_latencies": _Latencies(),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def grid_known(self) -> bool:
        """Whether the route's grid is known (False for a cross-region deployment)."""
        return self.zone is not None

    @property
    def target_description(self) -> str | None:
        """A safe description of ``target`` (its type, or a URL's scheme and host)."""
        return describe_target(self.target)

    def observe_latency(self, seconds: float) -> None:
        """Feed one measured time to first token (the instrumentation does this per call)."""
        self._latencies.add(seconds)

    def latency_s(self, percentile: float = 0.9) -> tuple[float | None, str]:
        """The latency ``balanced`` uses, in seconds, and where it comes from.

        The ``percentile`` of the last 64 measured times to first token, blended with the
        configured ``latency`` (the prior, worth five measurements): with ``n`` measurements the
        estimate is ``(5 * prior + n * measured) / (5 + n)``. Without a prior it is the measured
        figure alone; without either, ``(None, "none")``.
        """
        values = self._latencies.snapshot()
        prior = None if self.latency is None else self.latency.total_seconds()
        if not values:
            return (prior, "configured") if prior is not None else (None, "none")
        k = min(int(percentile * len(values)), len(values) - 1)
        measured = values[k]
        if prior is None:
            return measured, "measured"
        n = len(values)
        return (_PRIOR_WEIGHT * prior + n * measured) / (_PRIOR_WEIGHT + n), "measured"

    def meets(self, residency: frozenset[str] | None) -> bool:
        """Whether the route may serve work under ``residency`` (any of its labels)."""
        if residency is None:
            return True
        return self.grid_known and bool(self.tags & residency)

    def why_not(self, residency: frozenset[str]) -> str:
        if not self.grid_known:
            return "its grid is unknown (a cross-region deployment never meets a residency label)"
        labels = ", ".join(sorted(self.tags)) or "none"
        return f"its labels ({labels}) are not in residency {{{', '.join(sorted(residency))}}}"


def _labels(value: object, what: str) -> frozenset[str] | None:
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
    ``max_share``) and a slot ledger per zone (herd spreading, as for sessions without routes).
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
    _ledgers: dict[str, SlotLedger] = field(repr=False, compare=False)
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
        labels = _labels(residency, "residency")
        filter_routes(items, labels)  # refuse a filter that leaves nothing, now
        home_route = items[names.index(home)]
        if labels is not None and not home_route.meets(labels):
            raise RouteError(
                f"the home route {home!r} does not meet residency={{{', '.join(sorted(labels))}}} "
                f"({home_route.why_not(labels)}); choose another home",
                field="home",
                value=home,
            )
        share = None if max_share is None else _number(max_share, "max_share", low=0.0, high=1.0)
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
            "max_latency": _latency(max_latency, "max_latency"),
            "max_share": share,
            "latency_weight": _number(latency_weight, "latency_weight", low=0.0),
            "latency_percentile": _number(
                latency_percentile, "latency_percentile", low=0.0, high=1.0
            ),
            "_held": {},
            "_ledgers": {},
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

    def ledger(self, zone: str) -> SlotLedger:
        """The slot ledger of one zone (made on first use)."""
        with self._lock:
            ledger = self._ledgers.get(zone)
            if ledger is None:
                from ._ledger import SlotLedger

                ledger = self._ledgers[zone] = SlotLedger()
            return ledger

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
