"""``Policy``: what a session may do, validated once, at construction.

Layer: values. Imports values only (durations, exceptions, the provider and ledger protocols).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Never, cast

from ._checks import is_number
from ._durations import format_duration, parse_duration
from ._exceptions import PolicyError
from ._ledger import Ledger
from ._provider import ForecastProvider

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._routes import Route, Routes

__all__ = ["STRATEGIES", "OnForecastError", "Policy", "Strategy"]

OnForecastError = Literal["run_now", "raise"]
Strategy = Literal["calibrated", "lowest"]
STRATEGIES: tuple[Strategy, ...] = ("calibrated", "lowest")
"""The planning strategies ``Policy.strategy`` accepts; the first is the default."""

_DAY = timedelta(days=1)
_MAX_DELAY_LIMIT = timedelta(days=14)


def _error(field: str, value: object, allowed: str) -> PolicyError:
    return PolicyError(f"Policy.{field} must be {allowed}, got {value!r}", field=field, value=value)


def _duration(
    name: str, value: object, *, allow_none: bool = False, upper: timedelta
) -> timedelta | None:
    if value is None and allow_none:
        return None
    try:
        parsed = parse_duration(value, field=f"Policy.{name}")
    except (TypeError, ValueError) as exc:
        raise PolicyError(str(exc), field=name, value=value) from None
    if parsed < timedelta(0):
        raise _error(name, value, ">= 0 (a duration such as '90m')")
    if parsed > upper:
        raise _error(name, value, f"at most {format_duration(upper)}")
    return parsed


def _number(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    if value is None and allow_none:
        return None
    lo = "(" if low_open else "["
    hi = ")" if high_open or high == math.inf else "]"
    allowed = f"a finite number in {lo}{low:g}, {high:g}{hi}"
    if not is_number(value):
        raise _error(name, value, allowed + f" (got type {type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise _error(name, value, allowed)
    if (
        number < low
        or (low_open and number == low)
        or number > high
        or (high_open and number == high)
    ):
        raise _error(name, value, allowed)
    return number


def _fallbacks(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _error(
            "model_fallbacks",
            value,
            "a mapping of model id to cheaper model id, e.g. {'gpt-4.1': 'gpt-4.1-mini'}",
        )
    table: dict[str, str] = {}
    for key, target in value.items():
        if (
            not isinstance(key, str)
            or not key.strip()
            or not isinstance(target, str)
            or not target.strip()
        ):
            raise PolicyError(
                f"Policy.model_fallbacks entries must map non-empty model ids to non-empty model ids, "
                f"got {key!r}: {target!r}",
                field="model_fallbacks",
                value=value,
            )
        if key == target:
            raise PolicyError(
                f"Policy.model_fallbacks maps {key!r} to itself; remove the entry",
                field="model_fallbacks",
                value=value,
            )
        table[key] = target
    for start in table:
        seen = [start]
        current = start
        while current in table:
            current = table[current]
            if current in seen:
                cycle = " -> ".join([*seen[seen.index(current) :], current])
                raise PolicyError(
                    f"Policy.model_fallbacks has a cycle: {cycle}; every chain must end in a model "
                    "that has no fallback",
                    field="model_fallbacks",
                    value=value,
                )
            seen.append(current)
    return MappingProxyType(table)


@dataclass(frozen=True, init=False)
class Policy:
    """What a carbon-aware session may do. Frozen; every field is validated at construction.

    Args:
        max_delay: how long the work may wait for a greener slot (``timedelta`` or ``"90m"``,
            ``"4h"``, ``"1h30m"``, ``"PT4H"``). ``0`` (the default; also ``"0"``) never waits
            but still measures; other plain numbers are refused (hours or seconds?).
        provider: where forecasts come from. ``None`` uses the keyless UK Carbon Intensity API.
        jitter: at most this much random spread added inside the chosen slot, so that many jobs
            do not all wake at the same instant. Never leaves the slot or the delay budget.
        min_improvement: wait only when the best slot beats now by at least this fraction
            (``0.1`` = 10 % lower forecast); in ``[0, 1)``.
        dirty_threshold: gCO2eq/kWh at or above which calls are downgraded through
            ``model_fallbacks``; ``None`` never downgrades.
        model_fallbacks: ``{"gpt-4.1": "gpt-4.1-mini", ...}``; chains are followed, cycles refused.
        budget_g: gCO2eq the session may emit; the call after the one that crosses it is refused.
        on_forecast_error: ``"run_now"`` (default: run at once, say so in the events) or
            ``"raise"`` (raise :class:`~ecoasync.ForecastUnavailable` from the session).
        expected_duration: how long the work runs, to choose the greenest *window*; ``None``
            means one forecast slot.
        forecast_timeout: the longest a session waits for its forecast (default 30 s) before
            following ``on_forecast_error``.
        strategy: how the planner reads the forecast. ``"calibrated"`` (the default) corrects
            the forecast by the error it has shown against the grid's recent actuals (its timing
            offset, its bias, and the current error, which persists), and waits only for a
            start whose gain is larger than the error it can still make; without actuals it
            behaves like ``"lowest"``. ``"lowest"`` is the published EcoTracker rule: the lowest
            forecast within the budget. See ``docs/benchmarks.md`` for the evidence.
        caution: the calibrated strategy's risk attitude, in standard deviations (``>= 0``):
            a later start is charged ``caution`` times the standard deviation of the error its
            comparison with now can still make, scaled by the correlation of forecast and
            actual the look-back implies (the grid's swing against the forecast's error: near
            one where the forecast follows a large swing, toward zero where the error dwarfs
            the swing, so a noise-sized gain is weighed nearer its expected value; see
            ``docs/benchmarks.md``). ``0`` is risk-neutral: it maximises the expected
            savings, and waits for any expected gain. ``1`` (the default) waits only for a
            gain larger than that weighted standard deviation: a little less saved
            for less waiting and fewer jobs that end up emitting more than running at once
            would have. Higher is more cautious still. Unused by ``"lowest"``. Measured
            across 13 grids in ``docs/benchmarks.md`` ("The default's risk attitude").
        routes: where the work may run (:class:`~ecoasync.Route` values, or
            :class:`~ecoasync.Routes` with a strategy and constraints): the session then
            chooses the pair (route, start) with the lowest expected intensity, each route
            planned on its own provider's forecast; ``provider`` is not used. See
            ``docs/guides/routing.md``.
        ledger: where waiting sessions claim their slot, so that many jobs planned together
            spread over the near-optimal slots instead of all waking in the greenest one: a
            :class:`~ecoasync.Ledger` (a Redis or Postgres one is shared by every process), or
            ``None`` for the process's in-process :func:`~ecoasync.default_ledger`.

    Raises:
        PolicyError: a value is not allowed; the message names the field, the value and what
            is allowed. Unknown keywords are refused with the closest field names.
    """

    max_delay: timedelta
    provider: ForecastProvider | None = field(hash=False)
    jitter: timedelta
    min_improvement: float
    dirty_threshold: float | None
    model_fallbacks: Mapping[str, str] = field(hash=False)
    budget_g: float | None
    on_forecast_error: OnForecastError
    expected_duration: timedelta | None
    forecast_timeout: timedelta
    strategy: Strategy
    caution: float
    routes: Routes | None = field(hash=False)
    ledger: Ledger | None = field(hash=False)

    def __init__(
        self,
        *,
        max_delay: timedelta | str | Literal[0] = timedelta(0),
        provider: ForecastProvider | None = None,
        jitter: timedelta | str = timedelta(minutes=5),
        min_improvement: float = 0.0,
        dirty_threshold: float | None = None,
        model_fallbacks: Mapping[str, str] | None = None,
        budget_g: float | None = None,
        on_forecast_error: OnForecastError = "run_now",
        expected_duration: timedelta | str | None = None,
        forecast_timeout: timedelta | str = timedelta(seconds=30),
        strategy: Strategy = "calibrated",
        caution: float = 1.0,
        routes: Routes | Iterable[Route] | None = None,
        ledger: Ledger | None = None,
        **unknown: Never,
    ) -> None:
        if unknown:
            raise _unknown_fields(unknown)
        if provider is not None and not isinstance(provider, ForecastProvider):
            raise _error(
                "provider",
                provider,
                "a forecast provider (with .name and async .forecast(start, end)) or None",
            )
        if ledger is not None and not isinstance(ledger, Ledger):
            raise _error(
                "ledger",
                ledger,
                "a slot ledger (with .name, .bucket and async .claim, .release and .loads), "
                "e.g. ecoasync.SlotLedger(), or None",
            )
        if on_forecast_error not in ("run_now", "raise"):
            raise _error("on_forecast_error", on_forecast_error, "'run_now' or 'raise'")
        if strategy not in STRATEGIES:
            raise _error("strategy", strategy, "one of " + ", ".join(map(repr, STRATEGIES)))
        if routes is not None:  # where and when, chosen together
            from ._routes import Routes

            if provider is not None:
                raise _error(
                    "provider", provider, "None with routes (give each Route its provider)"
                )
            routes = Routes.of(routes)
        values: dict[str, Any] = {
            "max_delay": _duration("max_delay", max_delay, upper=_MAX_DELAY_LIMIT),
            "provider": provider,
            "jitter": _duration("jitter", jitter, upper=_DAY),
            "min_improvement": _number(
                "min_improvement", min_improvement, low=0.0, high=1.0, high_open=True
            ),
            "dirty_threshold": _number(
                "dirty_threshold", dirty_threshold, low=0.0, allow_none=True
            ),
            "model_fallbacks": _fallbacks({} if model_fallbacks is None else model_fallbacks),
            "budget_g": _number("budget_g", budget_g, low=0.0, low_open=True, allow_none=True),
            "on_forecast_error": on_forecast_error,
            "strategy": strategy,
            "caution": _number("caution", caution, low=0.0),
            "ledger": ledger,
            "expected_duration": _duration(
                "expected_duration", expected_duration, allow_none=True, upper=_DAY
            ),
            "forecast_timeout": _duration(
                "forecast_timeout", forecast_timeout, upper=timedelta(minutes=10)
            ),
            "routes": routes,
        }
        if values["expected_duration"] is not None and values["expected_duration"] <= timedelta(0):
            raise _error(
                "expected_duration",
                expected_duration,
                "a positive duration such as '30m', or None for one slot",
            )
        if values["forecast_timeout"] <= timedelta(0):
            raise _error("forecast_timeout", forecast_timeout, "a positive duration such as '30s'")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> Policy:
        """Build a policy from a mapping (a config file, CLI options); unknown keys are refused."""
        return cls(**cast("dict[str, Any]", dict(values)))

    def evolve(self, **changes: Any) -> Policy:
        """A copy with some fields changed, validated like a new policy."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(current)
        if unknown:
            raise _unknown_fields(dict.fromkeys(unknown))
        current["model_fallbacks"] = dict(current["model_fallbacks"])
        current.update(changes)
        return Policy(**current)

    def fallback_for(self, model: str) -> str | None:
        """The end of ``model``'s fallback chain, also for dated ids; ``None`` if it has none.

        ``gpt-4o-2024-08-06`` falls back like ``gpt-4o`` when only ``gpt-4o`` is listed.
        """
        table = self.model_fallbacks
        key = model if model in table else _undated(model, table)
        if key is None:
            return None
        current = table[key]
        while current in table:
            current = table[current]
        return current


_DATED = re.compile(r"[-@](\d{4}(-?\d{2}){0,2}|latest)$")


def undated(model: str) -> str | None:
    """``model`` without its date or ``-latest`` suffix, or None if it has neither.

    ``gpt-4o-2024-08-06`` → ``gpt-4o``, ``gpt-4-0613`` → ``gpt-4``,
    ``claude-3-5-sonnet-20241022`` and ``claude-3-5-sonnet-latest`` → ``claude-3-5-sonnet``;
    ``gpt-4o-mini`` has none. (The fallback table and the energy model's look-up both read it.)
    """
    match = _DATED.search(model)
    return None if match is None else model[: match.start()]


def _undated(model: str, table: Mapping[str, str]) -> str | None:
    """The key of ``table`` that ``model`` is a dated (or ``-latest``) version of."""
    base = undated(model)
    return base if base is not None and base in table else None


def _unknown_fields(unknown: Mapping[str, object]) -> PolicyError:
    known = [f.name for f in fields(Policy)]
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return PolicyError(
        f"Policy has no field {name!r} (given {unknown[name]!r}){hint} Allowed: {', '.join(known)}",
        field=name,
        value=unknown[name],
    )
