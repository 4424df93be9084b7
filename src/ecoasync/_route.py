"""A route: one place LLM work can run, as a validated value.

A :class:`Route` is one place (a grid zone such as ``"FR"`` or a cloud region such as
``"azure:swedencentral"``, resolved to its zone through :mod:`ecoasync.providers.regions`)
with what a choice needs to know of it: its expected latency (and the latencies measured of
its calls), its residency labels, its water usage effectiveness, where its forecast comes
from, and the user's own ``target`` (a client, a base URL, a deployment) handed back once it
is chosen. The set of routes a choice picks from, with its rules, is
:class:`~ecoasync.Routes` (:mod:`ecoasync._routes`).

Layer: values (no I/O). Imports values only (durations, exceptions, the provider protocol,
the regions table).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._durations import parse_duration
from ._exceptions import PolicyError
from ._provider import ForecastProvider

__all__ = [
    "DEFAULT_LATENCY_WEIGHT",
    "DEFAULT_PUE",
    "DEFAULT_WUE",
    "ROUTE_STRATEGIES",
    "Route",
    "RouteError",
    "RouteStrategy",
    "bounded_number",
    "describe_target",
    "parse_latency",
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


def parse_latency(value: object, what: str) -> timedelta | None:
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


def bounded_number(value: object, what: str, *, low: float, high: float = math.inf) -> float:
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


def _resolve(
    name: str, where: str | None, among: tuple[str, ...]
) -> tuple[str | None, tuple[str, ...]]:
    """The grid zone of ``where`` and those of ``among`` (deduplicated, in order), through the
    regions table; an unknown region fails naming the route and the closest names."""
    from .providers.regions import UnknownRegionError, resolve_zone

    try:
        zone = resolve_zone(where) if where is not None else None
        return zone, tuple(dict.fromkeys(resolve_zone(m) for m in among))
    except UnknownRegionError as exc:
        raise UnknownRegionError(
            f"Route {name!r}: {exc}", region=exc.region, suggestions=exc.suggestions
        ) from None
    except ValueError as exc:
        raise RouteError(f"Route {name!r}: {exc}", field="where", value=where) from None


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
        zone, zones = _resolve(name, where, members)
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
            "latency": parse_latency(latency, f"Route {name!r} latency"),
            "tags": labels,
            "wue": None if wue is None else bounded_number(wue, f"Route {name!r} wue", low=0.0),
            "pue": bounded_number(pue, f"Route {name!r} pue", low=1.0),
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
