"""Replay a trace: what would carbon-aware scheduling have saved, and how long would work wait?

Pure code (no I/O, no clock) shared by ``ecoasync simulate`` and the benchmarks. For every slot
of every complete UTC day whose whole look-ahead lies inside the trace, one job (of
``energy_kwh``) is submitted at the slot's start, and three strategies are compared, each
charged the *actual* intensity of the slot it starts in:

- **immediate**: run at once (the baseline);
- **planned**: :func:`ecoasync.plan` on the forecast, exactly as ``carbon_session`` calls it
  (no jitter), given the trace's closed slots with their actuals as ``history``;
- **oracle**: the lowest *actual* start within the budget (deadline inclusive, earliest on
  ties): the most any strategy could have saved.

The planner is given the forecast with the actuals taken out, so it cannot see the future.

Layer: decisions (pure). Imports values and the planner; never a provider, the bus or the
session.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ._calibrate import LOOKBACK, MAX_SHIFT
from ._checks import is_whole
from ._exceptions import SimulationError
from ._forecast import Forecast
from ._ledger import Claim, SlotLedger
from ._planner import _slot_length, assess, plan
from ._policy import Policy

__all__ = [
    "DEFAULT_ENERGY_KWH",
    "DayFigures",
    "HerdResult",
    "Replay",
    "SimulationError",
    "replay",
    "replay_herd",
    "replay_sweep",
    "scenario_days",
]

DEFAULT_ENERGY_KWH = 0.0005
"""Energy per simulated job: about one LLM answer of a few hundred tokens."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One UTC day of a replay (gCO2eq)."""

    date: str
    scenarios: int
    baseline_g: float
    scheduled_g: float
    oracle_g: float

    @property
    def reduction_pct(self) -> float:
        return _pct(self.baseline_g - self.scheduled_g, self.baseline_g)

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "baseline_g": round(self.baseline_g, 6),
            "scheduled_g": round(self.scheduled_g, 6),
            "oracle_g": round(self.oracle_g, 6),
            "reduction_pct": round(self.reduction_pct, 3),
        }


@dataclass(frozen=True, slots=True)
class Replay:
    """The figures of one replay (emissions in gCO2eq, delays in hours)."""

    scenarios: int
    days: int
    baseline_g: float
    scheduled_g: float
    oracle_g: float
    mean_delay_h: float
    median_delay_h: float
    regressions: int
    daily: tuple[DayFigures, ...]
    strategy: str = ""
    delays_h: tuple[float, ...] = field(default=(), repr=False)

    @property
    def reduction_pct(self) -> float:
        """How much lower the planned emissions are than running at once."""
        return _pct(self.baseline_g - self.scheduled_g, self.baseline_g)

    @property
    def oracle_capture_pct(self) -> float:
        """The share of the oracle's savings the planner achieved."""
        possible = self.baseline_g - self.oracle_g
        if possible <= 1e-12:
            return 100.0
        return 100.0 * (self.baseline_g - self.scheduled_g) / possible

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys ``ecoasync simulate --json`` prints."""
        return {
            "scenarios": self.scenarios,
            "days": self.days,
            "baseline_g": round(self.baseline_g, 6),
            "scheduled_g": round(self.scheduled_g, 6),
            "oracle_g": round(self.oracle_g, 6),
            "reduction_pct": round(self.reduction_pct, 3),
            "oracle_capture_pct": round(self.oracle_capture_pct, 3),
            "mean_delay_h": round(self.mean_delay_h, 4),
            "median_delay_h": round(self.median_delay_h, 4),
            "regressions": self.regressions,
            "daily": [d.to_json() for d in self.daily],
        }


@dataclass(frozen=True, slots=True)
class HerdResult:
    """``jobs_per_slot`` jobs submitted at every slot: jitter alone vs the slot ledger."""

    jobs_per_slot: int
    jobs: int
    baseline_g: float
    jitter_g: float
    ledger_g: float
    jitter_peak: int
    ledger_peak: int
    jitter_busy_slots: int
    ledger_busy_slots: int

    @property
    def carbon_kept_pct(self) -> float:
        """The share of jitter-alone savings the ledger keeps while it spreads the load."""
        saved = self.baseline_g - self.jitter_g
        if saved <= 1e-12:
            return 100.0
        return 100.0 * (self.baseline_g - self.ledger_g) / saved

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs_per_slot": self.jobs_per_slot,
            "jobs": self.jobs,
            "baseline_g": round(self.baseline_g, 6),
            "jitter": {
                "scheduled_g": round(self.jitter_g, 6),
                "peak_jobs_per_slot": self.jitter_peak,
                "busy_slots": self.jitter_busy_slots,
            },
            "ledger": {
                "scheduled_g": round(self.ledger_g, 6),
                "peak_jobs_per_slot": self.ledger_peak,
                "busy_slots": self.ledger_busy_slots,
            },
            "carbon_kept_pct": round(self.carbon_kept_pct, 2),
        }


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Prepared:
    trace: Forecast
    blind: Forecast  # the trace without actuals: what the planner may read ahead
    slot: timedelta
    actual: list[float]
    scenarios: list[int]  # indices of the submission slots
    days: list[date]
    ahead: int  # slots in the budget after the submission slot (deadline inclusive)
    # when the trace has no gaps and every slot lasts `slot`: how many slots a session's
    # forecast and its history hold, from or before its submission slot (see _inputs)
    seen: tuple[int, int] | None


def _prepare(trace: Forecast, policy: Policy) -> _Prepared:
    if not trace:
        raise SimulationError(
            "the trace is empty; it needs rows of from,to,intensity_forecast,intensity_actual"
        )
    slot = _slot_length(trace)
    assert slot is not None
    if policy.expected_duration is not None and policy.expected_duration != slot:
        raise SimulationError(
            f"the simulator runs one-slot jobs; got expected_duration={policy.expected_duration} "
            f"on a trace of {slot} slots (leave expected_duration unset)"
        )
    if timedelta(days=1) % slot:
        raise SimulationError(f"the trace's slots ({slot}) do not divide a day")
    slots = trace.slots
    ahead = int(policy.max_delay / slot)
    # run[i]: how many slots from slot i on are usable (one slot long, with an actual), each
    # starting where the one before it ends
    run = [0] * (len(slots) + 1)
    for i in range(len(slots) - 1, -1, -1):
        s = slots[i]
        if s.actual is not None and s.end - s.start == slot:
            run[i] = run[i + 1] + 1 if i + 1 < len(slots) and slots[i + 1].start == s.end else 1

    per_day = int(timedelta(days=1) / slot)
    first = slots[0].start
    day = datetime(first.year, first.month, first.day, tzinfo=UTC)
    if day < first:
        day += timedelta(days=1)
    scenarios: list[int] = []
    days: list[date] = []
    while day + timedelta(days=1) <= slots[-1].end:
        # the day's slots and the look-ahead of its last submission must all be in the trace
        at = trace.index_at(day)
        if at is not None and slots[at].start == day and run[at] >= per_day + ahead:
            scenarios.extend(range(at, at + per_day))
            days.append(day.date())
        day += timedelta(days=1)
    if not scenarios:
        raise SimulationError(
            f"no complete UTC day with actuals and a {policy.max_delay} look-ahead in the trace "
            f"({first:%Y-%m-%dT%H:%MZ} .. {slots[-1].end:%Y-%m-%dT%H:%MZ}); a trace needs at least "
            "one whole day of slots with intensity_actual, plus the delay budget after it"
        )
    # every scenario reads slices of these two: convert their slots' times once, here
    columns = trace._columns()
    blind = trace._without_actuals()
    actual = [s.actual if s.actual is not None else s.forecast for s in slots]
    seen = None
    if columns.length == slot and not trace.gaps:
        # slot k starts k slots after slot 0: the spans _inputs reads hold the slots they
        # reach into, their lengths in slots rounded up
        seen = (-(-_reach(policy, slot) // slot), -(-LOOKBACK // slot))
    return _Prepared(trace, blind, slot, actual, scenarios, days, ahead, seen)


def _reach(policy: Policy, slot: timedelta) -> timedelta:
    """How far past its submission a session's forecast reaches (what :func:`plan` reads)."""
    return policy.max_delay + (policy.expected_duration or slot) + MAX_SHIFT


def scenario_days(trace: Forecast, max_delay: timedelta | str = "4h") -> list[date]:
    """The UTC days a replay with this delay budget submits jobs on."""
    return _prepare(trace, Policy(max_delay=max_delay)).days


def _oracle(actual: Sequence[float], i: int, ahead: int) -> int:
    """The earliest slot with the lowest actual in ``[i, i + ahead]``."""
    best = i
    for j in range(i + 1, i + ahead + 1):
        if actual[j] < actual[best]:
            best = j
    return best


def _inputs(prep: _Prepared, i: int, policy: Policy) -> tuple[Forecast, Forecast | None, datetime]:
    """What a live session submitted at slot ``i`` would hold: the forecast from now on, and
    the slots closed before now with their actuals (``policy`` is the one ``prep`` was made
    for, or differs only in what the slices do not depend on, its jitter)."""
    slots = prep.trace.slots
    now = slots[i].start
    calibrated = policy.strategy == "calibrated"
    if prep.seen is not None:
        # the slots between() would find, by index: slot k starts k - i slots after now
        ahead, behind = prep.seen
        forecast = prep.blind._slice(i, min(i + ahead, len(slots)))
        history = prep.trace._slice(max(i - behind, 0), i) if calibrated else None
    else:
        forecast = prep.blind.between(now, now + _reach(policy, prep.slot))
        history = prep.trace.between(now - LOOKBACK, now) if calibrated else None
    return forecast, history, now


def _ran_in(prep: _Prepared, i: int, waited: timedelta) -> int:
    """The index of the slot a job submitted at slot ``i``'s start runs in, having ``waited``."""
    return i + waited // prep.slot


def replay(
    trace: Forecast,
    policy: Policy,
    *,
    energy_kwh: float = DEFAULT_ENERGY_KWH,
    progress: Progress | None = None,
) -> Replay:
    """Replay ``trace`` under ``policy`` (its ``max_delay``, ``strategy``, ``min_improvement``).

    Raises :class:`SimulationError` when the trace holds no complete day to replay.
    """
    prep = _prepare(trace, policy)
    tally = _Tally(prep, policy, energy_kwh)
    total = len(prep.scenarios)
    every = max(total // 100, 1)
    for n, i in enumerate(prep.scenarios):
        tally.add(n, i, *_inputs(prep, i, tally.policy))
        if progress is not None and (n % every == 0 or n == total - 1):
            progress(n + 1, total)
    return tally.result()


def replay_sweep(
    trace: Forecast,
    policies: Sequence[Policy],
    *,
    energy_kwh: float = DEFAULT_ENERGY_KWH,
    progress: Progress | None = None,
) -> list[Replay]:
    """:func:`replay` under each of ``policies``, in order, with what they share done once:
    the trace is prepared once, and each scenario's forecast and history are sliced once and
    planned on under every policy in turn, so what the planner derives from them (the
    calibration, the windows, kept on those objects) is reused; a day of scenarios is held at
    a time. ``progress`` counts plans over all policies. The figures are :func:`replay`'s,
    to the last bit.

    The policies must agree on what the scenarios depend on, ``max_delay`` and
    ``expected_duration`` (they may differ in ``strategy``, ``min_improvement``, ``caution``
    and the rest); raises :class:`SimulationError` otherwise, or when the trace holds no
    complete day.
    """
    if not policies:
        return []
    first = policies[0]
    for other in policies[1:]:
        if (other.max_delay, other.expected_duration) != (
            first.max_delay,
            first.expected_duration,
        ):
            raise SimulationError(
                "a sweep replays the same scenarios under every policy: they must share "
                f"max_delay and expected_duration, got {first.max_delay} / "
                f"{first.expected_duration} and {other.max_delay} / {other.expected_duration}"
            )
    prep = _prepare(trace, first)
    tallies = [_Tally(prep, p, energy_kwh) for p in policies]
    calibrated = first.evolve(strategy="calibrated", jitter=timedelta(0))
    total = len(prep.scenarios)
    per_day = total // len(prep.days)
    for day in range(0, total, per_day):
        inputs = [
            (n, i, *_inputs(prep, i, calibrated))
            for n, i in enumerate(prep.scenarios[day : day + per_day], start=day)
        ]
        for tally in tallies:
            for n, i, forecast, history, now in inputs:
                tally.add(n, i, forecast, history if tally.calibrated else None, now)
        if progress is not None:
            done = min(day + per_day, total)
            progress(done * len(policies), total * len(policies))
    return [t.result() for t in tallies]


class _Tally:
    """One policy's replay, scenario by scenario: its plans and running sums."""

    def __init__(self, prep: _Prepared, policy: Policy, energy_kwh: float) -> None:
        self.prep = prep
        self.policy = policy.evolve(jitter=timedelta(0))
        self.calibrated = policy.strategy == "calibrated"
        self.energy = energy_kwh
        self.base = self.sched = self.orc = 0.0
        self.delays: list[float] = []
        self.regressions = 0
        # each replayed day's figures (jobs, baseline, scheduled, oracle): its scenarios are
        # the next per_day ones
        self.per_day = len(prep.scenarios) // len(prep.days)
        self.figures: list[list[float]] = [[0, 0.0, 0.0, 0.0] for _ in prep.days]

    def add(
        self, n: int, i: int, forecast: Forecast, history: Forecast | None, now: datetime
    ) -> None:
        """Plan the ``n``-th scenario (submitted at slot ``i``) on what a session would hold."""
        prep, energy = self.prep, self.energy
        p = plan(forecast, now, self.policy, history=history)
        waited = p.start - now
        j = _ran_in(prep, i, waited)
        o = _oracle(prep.actual, i, prep.ahead)
        a_now, a_run, a_best = (
            prep.actual[i] * energy,
            prep.actual[j] * energy,
            prep.actual[o] * energy,
        )
        self.base += a_now
        self.sched += a_run
        self.orc += a_best
        self.regressions += a_run > a_now
        self.delays.append(waited / _HOUR)
        day = self.figures[n // self.per_day]
        day[0] += 1
        day[1] += a_now
        day[2] += a_run
        day[3] += a_best

    def result(self) -> Replay:
        prep = self.prep
        daily = tuple(
            DayFigures(d.isoformat(), int(v[0]), v[1], v[2], v[3])
            for d, v in zip(prep.days, self.figures, strict=True)
        )
        return Replay(
            scenarios=len(prep.scenarios),
            days=len(prep.days),
            baseline_g=self.base,
            scheduled_g=self.sched,
            oracle_g=self.orc,
            mean_delay_h=statistics.fmean(self.delays),
            median_delay_h=statistics.median(self.delays),
            regressions=self.regressions,
            daily=daily,
            strategy=self.policy.strategy,
            delays_h=tuple(self.delays),
        )


_HOUR = timedelta(hours=1)


def replay_herd(
    trace: Forecast,
    policy: Policy,
    jobs_per_slot: int,
    *,
    energy_kwh: float = DEFAULT_ENERGY_KWH,
    ledger: SlotLedger | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> HerdResult:
    """Submit ``jobs_per_slot`` jobs at every scenario slot, twice: with the policy's jitter
    alone, and with jitter and a :class:`SlotLedger` (each waiting job claims its slot, and
    releases it once the slot has passed). Reports the peak number of jobs starting in one slot
    and the carbon of each.
    """
    if not is_whole(jobs_per_slot) or jobs_per_slot < 1:
        raise SimulationError(f"jobs_per_slot must be a whole number >= 1, got {jobs_per_slot!r}")
    prep = _prepare(trace, policy)
    actual = prep.actual
    ledger = ledger if ledger is not None else SlotLedger(bucket=prep.slot)
    lease = policy.max_delay + 2 * prep.slot  # (released before: once the slot has passed)
    rng = random.Random(seed)
    jitter_load: dict[int, int] = {}
    ledger_load: dict[int, int] = {}
    held: list[tuple[datetime, int, Claim]] = []
    base = jit = led = 0.0
    total = len(prep.scenarios)
    every = max(total // 100, 1)
    for n, i in enumerate(prep.scenarios):
        forecast, history, now = _inputs(prep, i, policy)
        while held and held[0][0] <= now:  # jobs whose slot has passed have completed
            ledger.release_nowait(heapq.heappop(held)[2])
        assessment = assess(forecast, now, policy, history=history)
        for k in range(jobs_per_slot):
            base += actual[i] * energy_kwh
            p = q = assessment.plan(rng=rng)
            j = _ran_in(prep, i, p.start - now)
            jitter_load[j] = jitter_load.get(j, 0) + 1
            jit += actual[j] * energy_kwh
            if assessment.decision == "wait":
                job = n * jobs_per_slot + k
                claim = ledger.claim_nowait(
                    str(job), assessment.ledger_zone, assessment.choices, lease=lease, now=now
                )
                q = assessment.plan(claim.start, rng=rng)
                heapq.heappush(held, (claim.slot + prep.slot, job, claim))
            j = _ran_in(prep, i, q.start - now)
            ledger_load[j] = ledger_load.get(j, 0) + 1
            led += actual[j] * energy_kwh
        if progress is not None and (n % every == 0 or n == total - 1):
            progress(n + 1, total)
    return HerdResult(
        jobs_per_slot=jobs_per_slot,
        jobs=total * jobs_per_slot,
        baseline_g=base,
        jitter_g=jit,
        ledger_g=led,
        jitter_peak=max(jitter_load.values()),
        ledger_peak=max(ledger_load.values()),
        jitter_busy_slots=len(jitter_load),
        ledger_busy_slots=len(ledger_load),
    )
