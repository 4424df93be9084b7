"""Forecast values: slots of grid carbon intensity, in gCO2eq/kWh, on UTC times.

Layer: values. Imports values only (``_checks``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple, overload

from ._checks import is_number

__all__ = ["Forecast", "Gap", "Signal", "Slot", "as_utc"]

SignalKind = Literal["average", "marginal"]
SignalScope = Literal["lifecycle", "direct"]


def as_utc(value: datetime, *, what: str = "time") -> datetime:
    """Return ``value`` converted to UTC; naive datetimes are refused."""
    if value.__class__ is datetime and value.tzinfo is UTC:
        return value  # the common case, kept cheap for the session's hot path
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware, got naive {value.isoformat()}; "
            "use datetime.now(datetime.UTC) or attach a tzinfo"
        )
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Signal:
    """What a carbon-intensity figure measures.

    ``kind`` is ``"average"`` (the grid mix) or ``"marginal"`` (the plant that answers
    extra load); ``scope`` is ``"direct"`` (combustion only) or ``"lifecycle"``.
    Figures of different signals are never added together unmarked.
    """

    kind: SignalKind = "average"
    scope: SignalScope = "direct"

    def __post_init__(self) -> None:
        if self.kind not in ("average", "marginal"):
            raise ValueError(f"Signal.kind must be 'average' or 'marginal', got {self.kind!r}")
        if self.scope not in ("lifecycle", "direct"):
            raise ValueError(f"Signal.scope must be 'lifecycle' or 'direct', got {self.scope!r}")

    def __str__(self) -> str:
        return f"{self.kind}/{self.scope}"

    @classmethod
    def parse(cls, text: str) -> Signal:
        """Parse ``"average/direct"`` (the form ``str()`` gives)."""
        kind, _, scope = text.partition("/")
        return cls(kind or "average", scope or "direct")  # type: ignore[arg-type]


def _check_intensity(value: object, what: str) -> float:
    if not is_number(value):
        raise TypeError(
            f"{what} must be a number in gCO2eq/kWh, got {type(value).__name__}: {value!r}"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0 gCO2eq/kWh, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class Slot:
    """One interval of the grid's carbon intensity, in gCO2eq/kWh.

    ``start`` and ``end`` are timezone-aware (stored in UTC), ``end > start``.
    ``actual`` is the measured value once the interval has closed, where the source has it.
    """

    start: datetime
    end: datetime
    forecast: float
    actual: float | None = None

    def __post_init__(self) -> None:
        start = as_utc(self.start, what="Slot.start")
        end = as_utc(self.end, what="Slot.end")
        if end <= start:
            raise ValueError(
                f"Slot.end must be after Slot.start, got {start.isoformat()} .. {end.isoformat()}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "forecast", _check_intensity(self.forecast, "Slot.forecast"))
        if self.actual is not None:
            object.__setattr__(self, "actual", _check_intensity(self.actual, "Slot.actual"))

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def best(self) -> float:
        """The actual value where known, else the forecast."""
        return self.forecast if self.actual is None else self.actual

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of time between two slots that no slot covers."""

    start: datetime
    end: datetime


class _Columns(NamedTuple):
    """A forecast's slots as parallel columns, for the code that reads every slot (the planner,
    the calibration): times in POSIX seconds, intensities in gCO2eq/kWh.

    ``length`` is the length every slot has, or None when the lengths differ; ``complete``
    whether every slot has an actual.
    """

    starts: tuple[float, ...]
    ends: tuple[float, ...]
    forecasts: tuple[float, ...]
    actuals: tuple[float | None, ...]
    length: timedelta | None
    complete: bool

    @classmethod
    def of(cls, slots: Sequence[Slot]) -> _Columns:
        actuals = tuple([s.actual for s in slots])
        return cls(
            tuple([s.start.timestamp() for s in slots]),
            tuple([s.end.timestamp() for s in slots]),
            tuple([s.forecast for s in slots]),
            actuals,
            _common_length(slots),
            None not in actuals,
        )

    def part(self, lo: int, hi: int, slots: Sequence[Slot]) -> _Columns:
        """The columns of ``slots``, which are this forecast's slots ``[lo:hi]``."""
        # what holds for every slot of the whole holds for those of a slice
        length = self.length if self.length is not None and slots else _common_length(slots)
        actuals = self.actuals[lo:hi]
        return _Columns(
            self.starts[lo:hi],
            self.ends[lo:hi],
            self.forecasts[lo:hi],
            actuals,
            length,
            self.complete or None not in actuals,
        )


def _common_length(slots: Sequence[Slot]) -> timedelta | None:
    lengths = {s.end - s.start for s in slots}
    return lengths.pop() if len(lengths) == 1 else None


_KEPT: Final = 4
"""How many answers of each kind a forecast keeps (slices, relabelled copies, calibration fits,
planner windows): the sessions planned in one slot ask for a handful of different ones."""


@dataclass(frozen=True, slots=True, init=False)
class Forecast(Sequence[Slot]):
    """Sorted, non-overlapping slots from one source, with the gaps between them reported.

    ``provider`` names the source that answered, ``zone`` the grid zone, ``signal`` what
    the figures measure.

    What is computed from a forecast once (its columns, its slices, the planner's windows, the
    calibration fitted on it) is kept on it and dies with it: the private fields after ``gaps``,
    which take no part in equality, hashing or ``repr``.
    """

    slots: tuple[Slot, ...]
    signal: Signal
    provider: str
    zone: str | None
    gaps: tuple[Gap, ...]
    _starts: tuple[datetime, ...] = field(repr=False, compare=False)
    _cached_columns: _Columns | None = field(repr=False, compare=False)
    _slices: tuple[tuple[int, int, Forecast], ...] = field(repr=False, compare=False)
    """:meth:`between`'s last answers: ``(lo, hi, slice)``."""
    _relabelled: tuple[Forecast, ...] = field(repr=False, compare=False)
    """:meth:`with_source`'s last answers."""
    _actuals_only: Forecast | None = field(repr=False, compare=False)
    """:meth:`_with_actuals`'s answer."""
    _fits: tuple[Any, ...] = field(repr=False, compare=False)
    """The calibrations fitted on this forecast as history (see ``_calibrate.calibrate_ahead``)."""
    _windows: tuple[Any, ...] = field(repr=False, compare=False)
    """The planner's windows on this forecast (see ``_windows.window_of``)."""

    def __init__(
        self,
        slots: Iterable[Slot],
        *,
        signal: Signal | None = None,
        provider: str = "unknown",
        zone: str | None = None,
    ) -> None:
        ordered = sorted(slots, key=lambda s: s.start)
        gaps: list[Gap] = []
        for before, after in itertools.pairwise(ordered):
            if after.start < before.end:
                raise ValueError(
                    f"forecast slots overlap: {before.start.isoformat()}..{before.end.isoformat()} and "
                    f"{after.start.isoformat()}..{after.end.isoformat()}"
                )
            if after.start > before.end:
                gaps.append(Gap(before.end, after.start))
        self._set(
            tuple(ordered),
            signal or Signal(),
            provider,
            zone,
            tuple(gaps),
            tuple(s.start for s in ordered),
            None,
        )

    def _set(
        self,
        slots: tuple[Slot, ...],
        signal: Signal,
        provider: str,
        zone: str | None,
        gaps: tuple[Gap, ...],
        starts: tuple[datetime, ...],
        columns: _Columns | None,
    ) -> None:
        """Set every field (the frozen dataclass refuses ``setattr``), nothing derived yet."""
        put = object.__setattr__
        put(self, "slots", slots)
        put(self, "signal", signal)
        put(self, "provider", provider)
        put(self, "zone", zone)
        put(self, "gaps", gaps)
        put(self, "_starts", starts)
        put(self, "_cached_columns", columns)
        put(self, "_slices", ())
        put(self, "_relabelled", ())
        put(self, "_actuals_only", None)
        put(self, "_fits", ())
        put(self, "_windows", ())

    def _keep(self, name: str, item: object) -> None:
        """Keep ``item`` first among the last :data:`_KEPT` answers in the field ``name``
        (package-internal: how the planner and the calibration keep what they derive)."""
        kept: tuple[object, ...] = getattr(self, name)
        object.__setattr__(self, name, (item, *kept[: _KEPT - 1]))

    def __len__(self) -> int:
        return len(self.slots)

    @overload
    def __getitem__(self, index: int) -> Slot: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Slot, ...]: ...
    def __getitem__(self, index: int | slice) -> Slot | tuple[Slot, ...]:
        return self.slots[index]

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots)

    @property
    def start(self) -> datetime | None:
        return self.slots[0].start if self.slots else None

    @property
    def end(self) -> datetime | None:
        return self.slots[-1].end if self.slots else None

    @property
    def contiguous(self) -> bool:
        return not self.gaps

    def _columns(self) -> _Columns:
        """The slots as columns (package-internal), computed once per forecast.

        Slices (:meth:`between`) of a forecast whose columns exist get theirs by slicing, so
        code that reads one long forecast piece by piece (the simulator) converts each slot's
        times once.
        """
        columns = self._cached_columns
        if columns is None:
            columns = _Columns.of(self.slots)
            object.__setattr__(self, "_cached_columns", columns)
        return columns

    def index_at(self, when: datetime) -> int | None:
        """The index of the slot covering ``when``, or None."""
        i = bisect.bisect_right(self._starts, when) - 1
        if i >= 0 and when < self.slots[i].end:
            return i
        return None

    def at(self, when: datetime) -> Slot | None:
        """The slot covering ``when``, or None."""
        i = self.index_at(when)
        return None if i is None else self.slots[i]

    def between(self, start: datetime, end: datetime) -> Forecast:
        """The slots that overlap ``[start, end)``, as a forecast of the same source.

        Asked for the same slots as one of the last four calls, it returns the same (immutable)
        object: the sessions planned in one slot share one forecast (and one history, when a
        provider cuts both from one forecast), and what the planner keeps on it.
        """
        slots = self.slots
        if slots and start < slots[0].end and end > self._starts[-1]:
            return self  # every slot overlaps (the planner's call on a session's forecast)
        lo = max(bisect.bisect_right(self._starts, start) - 1, 0)
        hi = bisect.bisect_left(self._starts, end)
        if lo < hi and self.slots[lo].end <= start:
            lo += 1
        for known_lo, known_hi, piece in self._slices:
            if known_lo == lo and known_hi == hi:
                return piece
        piece = self._slice(lo, hi)
        if piece is not self:  # (the whole is returned as itself: no cycle to keep)
            self._keep("_slices", (lo, hi, piece))
        return piece

    def _slice(self, lo: int, hi: int) -> Forecast:
        """Slots ``[lo:hi]`` without re-sorting or re-checking them (they already are)."""
        if lo == 0 and hi >= len(self.slots):
            return self
        slots = self.slots[lo:hi]
        gaps: tuple[Gap, ...] = ()
        if self.gaps and slots:
            first, last = slots[0].start, slots[-1].end
            gaps = tuple(g for g in self.gaps if first <= g.start and g.end <= last)
        columns = self._cached_columns
        return self._like(
            slots,
            gaps,
            self._starts[lo:hi],
            None if columns is None else columns.part(lo, hi, slots),
        )

    def _like(
        self,
        slots: tuple[Slot, ...],
        gaps: tuple[Gap, ...],
        starts: tuple[datetime, ...],
        columns: _Columns | None,
        *,
        provider: str | None = None,
        zone: str | None = None,
    ) -> Forecast:
        """A forecast of the same source (or ``provider``, ``zone``) made of these parts, which
        already hold together (sorted slots, their gaps, their starts, their columns or None):
        nothing is checked again."""
        piece = object.__new__(Forecast)
        piece._set(
            slots,
            self.signal,
            self.provider if provider is None else provider,
            self.zone if zone is None else zone,
            gaps,
            starts,
            columns,
        )
        return piece

    def _without_actuals(self) -> Forecast:
        """The same slots with their actuals taken out, same labels (package-internal: what the
        simulator's planner may read ahead). Its columns are this forecast's, without actuals."""
        slots = tuple(s if s.actual is None else Slot(s.start, s.end, s.forecast) for s in self)
        columns = self._cached_columns
        if columns is not None:
            columns = columns._replace(actuals=(None,) * len(slots), complete=not slots)
        return self._like(slots, self.gaps, self._starts, columns)

    def _with_actuals(self) -> Forecast:
        """The slots that have an actual value, same labels (package-internal: a provider's
        history), made once: the sessions that share a history slice share this too."""
        if self._columns().complete:
            return self
        kept = self._actuals_only
        if kept is None:
            kept = Forecast(
                [s for s in self.slots if s.actual is not None],
                signal=self.signal,
                provider=self.provider,
                zone=self.zone,
            )
            object.__setattr__(self, "_actuals_only", kept)
        return kept

    def with_source(self, *, provider: str | None = None, zone: str | None = None) -> Forecast:
        """The same slots, labelled with another provider name or zone.

        Asked for the same labels again, it returns the same (immutable) object, so a provider
        that relabels another's answers (``FallbackProvider``) keeps what the planner shares.
        """
        provider = self.provider if provider is None else provider
        zone = self.zone if zone is None else zone
        if provider == self.provider and zone == self.zone:
            return self
        for known in self._relabelled:
            if known.provider == provider and known.zone == zone:
                return known
        piece = self._like(
            self.slots, self.gaps, self._starts, self._columns(), provider=provider, zone=zone
        )
        self._keep("_relabelled", piece)
        return piece
