"""``FallbackProvider``: ask providers in order; the first that answers wins."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import anyio

from .._exceptions import ForecastUnavailable
from .._forecast import Forecast, Signal
from .._log import get_logger
from .._provider import ForecastNowait, ForecastProvider, HistoryNowait, HistoryProvider
from ._live import seconds

__all__ = ["FallbackProvider"]

log = get_logger()


def _name(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else type(provider).__name__


class FallbackProvider:
    """Asks each provider in turn; the first non-empty answer wins, labelled with its name.

    ``FallbackProvider([ElectricityMapsProvider("GB"), UKCarbonIntensityProvider()])``. A
    provider that fails, answers nothing, or takes longer than ``timeout`` seconds (default 10)
    is skipped, logged as ``ecoasync.provider_fallback`` and counted in ``fallbacks``. The
    returned forecast's ``provider`` names the one that answered, so the plan and the session's
    record say where the figures came from. When all fail: :class:`~ecoasync.ForecastUnavailable`
    listing every cause; when all answer empty: the last (empty) answer.

    ``history(start, end)`` works the same over the providers that have history.
    """

    def __init__(
        self,
        providers: Sequence[ForecastProvider],
        *,
        timeout: float | timedelta | None = 10.0,
        name: str | None = None,
    ) -> None:
        items = list(providers)
        if not items:
            raise ValueError("FallbackProvider needs at least one provider")
        for item in items:
            if not isinstance(item, ForecastProvider):
                raise TypeError(
                    f"FallbackProvider takes forecast providers (with .name and async .forecast), got {item!r}"
                )
        self.providers: tuple[ForecastProvider, ...] = tuple(items)
        self.timeout = None if timeout is None else seconds("timeout", timeout)
        self.name = name or "fallback(" + ",".join(_name(p) for p in items) + ")"
        zone = getattr(items[0], "zone", None)
        self.zone: str | None = zone if isinstance(zone, str) else None
        self.fallbacks = 0
        """How many times a provider was skipped."""

    @property
    def signal(self) -> Signal | None:
        signal = getattr(self.providers[0], "signal", None)
        return signal if isinstance(signal, Signal) else None

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        return await self._ask(self.providers, "forecast", start, end)

    async def history(self, start: datetime, end: datetime) -> Forecast:
        with_history = [p for p in self.providers if isinstance(p, HistoryProvider)]
        if not with_history:
            raise ForecastUnavailable(
                f"{self.name}: none of its providers has history",
                provider=self.name,
                zone=self.zone,
                cause="no history",
            )
        return await self._ask(with_history, "history", start, end)

    def forecast_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The first provider's in-memory answer; None as soon as one would need I/O."""
        return _first_in_memory(
            (p.forecast_nowait(start, end) if isinstance(p, ForecastNowait) else None, p)
            for p in self.providers
        )

    def history_nowait(self, start: datetime, end: datetime) -> Forecast | None:
        """The first history provider's in-memory answer; None as soon as one would need I/O."""
        return _first_in_memory(
            (p.history_nowait(start, end) if isinstance(p, HistoryNowait) else None, p)
            for p in self.providers
            if isinstance(p, HistoryProvider)
        )

    async def _ask(
        self, providers: Sequence[object], method: str, start: datetime, end: datetime
    ) -> Forecast:
        errors: list[tuple[str, Exception]] = []
        empty: Forecast | None = None
        for provider in providers:
            name = _name(provider)
            try:
                with anyio.fail_after(self.timeout):
                    answer: Forecast = await getattr(provider, method)(start, end)
            except Exception as exc:
                reason = (
                    f"no answer within {self.timeout:g} s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                errors.append((name, exc))
                self._skipped(name, reason, method)
                continue
            if not answer:
                empty = _labelled(answer, provider)
                self._skipped(name, "empty answer", method)
                continue
            return _labelled(answer, provider)
        if empty is not None:
            return empty
        causes = "; ".join(
            f"{n}: {'timed out' if isinstance(e, TimeoutError) else (getattr(e, 'cause', '') or str(e))}"
            for n, e in errors
        )
        raise ForecastUnavailable(
            f"{self.name}: all {len(errors)} providers failed ({causes})",
            provider=self.name,
            zone=self.zone,
            cause=causes,
        ) from errors[-1][1]

    def _skipped(self, name: str, reason: str, method: str) -> None:
        self.fallbacks += 1
        log.warning(
            "ecoasync.provider_fallback", provider=name, method=method, reason=reason, via=self.name
        )

    async def aclose(self) -> None:
        """Close every provider that can be closed."""
        for provider in self.providers:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"FallbackProvider([{', '.join(repr(p) for p in self.providers)}])"


def _labelled(forecast: Forecast, provider: object) -> Forecast:
    """``forecast`` labelled with ``provider``'s name: the same object for the same answer
    (``with_source`` keeps its copies), so what sessions share on it stays shared."""
    return forecast.with_source(provider=_name(provider))


def _first_in_memory(answers: Iterable[tuple[Forecast | None, object]]) -> Forecast | None:
    """The first non-empty in-memory answer, labelled with the provider it is paired with;
    None as soon as one provider has nothing in memory (it would need I/O). ``answers`` is
    lazy: providers after the one that decides are not asked."""
    for found, provider in answers:
        if found is None:
            return None
        if found:
            return _labelled(found, provider)
    return None
