"""The planner: pure code that picks when work should start. No I/O, no clock, no globals.

:func:`assess` scores every start a policy allows and decides whether waiting pays; the
:class:`Assessment` it returns offers a waiting job's acceptable starts to a ledger
(:attr:`Assessment.choices`) and makes the :class:`~ecoasync.Plan` at the start chosen
(:meth:`Assessment.plan`). :func:`plan` does both in one call. The live session, the simulator
and the benchmarks all plan through them; what they compute once per forecast is kept on that
forecast (see :func:`~ecoasync._windows.window_of`).

Layer: decisions (pure). Imports values (``_forecast``, ``_plan``, ``_policy``, ``_ledger``'s
``Choice``), the window means (``_windows``) and the calibration; never a provider, the bus or
the session.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ._calibrate import MAX_SHIFT, calibrate_ahead
from ._forecast import Forecast, Signal, as_utc
from ._ledger import Choice
from ._plan import Decision, Plan
from ._policy import Policy
from ._windows import Integrator, window_mean, window_of

if TYPE_CHECKING:
    from ._ledger import SlotLedger

__all__ = [
    "Assessment",
    "Decision",
    "Plan",
    "assess",
    "plan",
    "run_now_plan",
    "window_mean",
]

_EPS = 1e-9
_ZERO = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)


def run_now_plan(
    now: datetime,
    policy: Policy,
    *,
    decision: Decision,
    forecast: Forecast | None = None,
    forecast_error: str | None = None,
    provider: str | None = None,
) -> Plan:
    """A plan that starts at ``now`` (used when there is nothing to choose from)."""
    return _run_now(
        as_utc(now, what="now"),
        policy,
        decision,
        forecast,
        forecast_error=forecast_error,
        provider=provider,
    ).plan()


def _run_now(
    now: datetime,
    policy: Policy,
    decision: Decision,
    forecast: Forecast | None,
    *,
    forecast_error: str | None = None,
    provider: str | None = None,
) -> Assessment:
    """The assessment of work that starts at ``now`` (UTC) because there is nothing to choose."""
    intensity = None
    if forecast:
        slot = forecast.at(now)
        window = policy.expected_duration or (slot.duration if slot else _slot_length(forecast))
        assert window is not None
        if slot is not None and now + window <= slot.end:
            intensity = slot.forecast  # the common case: the work fits in the current slot
        else:
            intensity = window_mean(forecast, now, window)
    else:
        window = policy.expected_duration or timedelta(minutes=30)
    return Assessment(
        created_at=now,
        deadline=now + policy.max_delay,
        decision=decision,
        now_intensity=intensity,
        best_start=now,
        best_intensity=intensity,
        candidates=1 if intensity is not None else 0,
        window=window,
        # an empty forecast still says who answered (with nothing)
        provider=forecast.provider if forecast is not None else provider,
        zone=forecast.zone if forecast is not None else None,
        signal=forecast.signal if forecast is not None else None,
        forecast_error=forecast_error,
    )


def _slot_length(forecast: Forecast | None) -> timedelta | None:
    if not forecast:
        return None
    length = forecast._columns().length
    if length is not None:
        return length  # the usual case: all slots are as long
    # the most common slot length, so that one odd slot at the edge does not decide
    lengths = Counter([s.end - s.start for s in forecast.slots])
    if len(lengths) == 1:
        return next(iter(lengths))
    return max(lengths, key=lambda d: (lengths[d], -d.total_seconds()))


def _jitter(
    integ: Integrator,
    best: float,
    t_now: float,
    t_deadline: float,
    amount: float,
    rng: random.Random,
) -> timedelta:
    """A random offset of at most ``amount`` seconds that keeps the start in the budget.

    Forward, inside the chosen slot, where there is room. When the chosen slot begins exactly
    at the deadline there is none (the case where naive jitter adds nothing and every job wakes
    at the same instant): the spread then goes backwards, by at most ``amount``, so the work
    still starts in the budget and its window still lies almost wholly in the chosen slot.
    """
    i = bisect_right(integ.starts, best) - 1
    slot_end = integ.ends[i] if i >= 0 and best < integ.ends[i] else best
    forward = min(amount, slot_end - best, t_deadline - best)
    if forward > 0:
        return timedelta(microseconds=int(rng.random() * forward * 1e6))
    backward = min(amount, best - t_now)
    if best >= t_deadline and backward > 0:
        return -timedelta(microseconds=int(rng.random() * backward * 1e6))
    return _ZERO


class Assessment:
    """What :func:`assess` found for work submitted at ``created_at``. Read-only.

    ``decision`` says whether waiting pays (see :data:`~ecoasync.Plan`'s decisions);
    ``now_intensity`` is the score of starting at once and ``best_start``, ``best_intensity``
    those of the start the planner prefers (``created_at`` and ``now_intensity`` unless the
    decision is ``"wait"``), in gCO2eq/kWh; ``candidates`` counts the starts compared. For a
    waiting job, :attr:`choices` are the starts it would accept, for a :class:`~ecoasync.Ledger`
    to spread jobs over; :meth:`plan` makes the plan at the start chosen.
    """

    __slots__ = (
        "_best_t",
        "_choices",
        "_integ",
        "_jitter",
        "_offered",
        "_t_deadline",
        "_t_now",
        "best_intensity",
        "best_start",
        "candidates",
        "created_at",
        "deadline",
        "decision",
        "forecast_error",
        "now_intensity",
        "provider",
        "signal",
        "window",
        "zone",
    )

    def __init__(
        self,
        *,
        created_at: datetime,
        deadline: datetime,
        decision: Decision,
        now_intensity: float | None,
        best_start: datetime,
        best_intensity: float | None,
        candidates: int,
        window: timedelta,
        provider: str | None,
        zone: str | None,
        signal: Signal | None,
        forecast_error: str | None = None,
        offered: Sequence[tuple[float, float, float]] = (),
        best_t: float | None = None,
        integ: Integrator | None = None,
        jitter: float = 0.0,
        t_now: float = 0.0,
        t_deadline: float = 0.0,
    ) -> None:
        self.created_at = created_at
        self.deadline = deadline
        self.decision: Decision = decision
        self.now_intensity = now_intensity
        self.best_start = best_start
        self.best_intensity = best_intensity
        self.candidates = candidates
        self.window = window
        self.provider = provider
        self.zone = zone
        self.signal = signal
        self.forecast_error = forecast_error
        # a waiting job's acceptable starts as (POSIX start, expected, score), the best one's
        # POSIX start, the integrator its jitter reads and the jitter allowed (s)
        self._offered = offered
        self._best_t = best_t
        self._integ = integ
        self._jitter = jitter
        self._t_now = t_now  # (POSIX seconds of created_at and deadline: a waiting job's)
        self._t_deadline = t_deadline
        self._choices: tuple[Choice, ...] | None = None

    @property
    def choices(self) -> tuple[Choice, ...]:
        """The starts a waiting job would accept: every one that beats now's score and meets
        ``min_improvement``, earliest first (empty unless the decision is ``"wait"``)."""
        choices = self._choices
        if choices is None:
            choices = self._choices = tuple(
                [Choice(datetime.fromtimestamp(t, UTC), m, s) for t, m, s in self._offered]
            )
        return choices

    @property
    def ledger_zone(self) -> str:
        """Where a ledger counts this job: the forecast's zone, else its provider's name."""
        return self.zone or self.provider or "unknown"

    def plan(self, start: datetime | None = None, *, rng: random.Random | None = None) -> Plan:
        """The :class:`~ecoasync.Plan` that starts at ``start``: one of :attr:`choices` (what a
        ledger granted), or ``None`` for :attr:`best_start`.

        With ``rng`` and the policy's ``jitter``, a waiting plan's start moves by a random amount
        of at most ``jitter``: later, inside the chosen slot and the budget; or, when the chosen
        slot begins exactly at the deadline, earlier (see :func:`_jitter`). The start never
        leaves the budget.

        Raises:
            ValueError: ``start`` is not one of :attr:`choices`.
        """
        slot_start, expected = self.best_start, self.best_intensity
        t = self._t_now
        if self.decision == "wait":
            if start is None:
                assert self._best_t is not None
                t = self._best_t
            else:
                for i, choice in enumerate(self.choices):
                    if choice.start == start:
                        t, expected, _ = self._offered[i]
                        slot_start = choice.start
                        break
                else:
                    raise ValueError(self._not_a_choice(start))
        elif start is not None and start != self.created_at:
            raise ValueError(self._not_a_choice(start))
        begin, jitter = slot_start, _ZERO
        if self.decision == "wait" and rng is not None and self._jitter > 0:
            assert self._integ is not None
            jitter = _jitter(self._integ, t, self._t_now, self._t_deadline, self._jitter, rng)
            begin = slot_start + jitter
        return Plan(
            created_at=self.created_at,
            start=begin,
            deadline=self.deadline,
            decision=self.decision,
            now_intensity=self.now_intensity,
            planned_intensity=expected,
            candidates=self.candidates,
            slot_start=slot_start,
            jitter=jitter,
            window=self.window,
            provider=self.provider,
            zone=self.zone,
            signal=self.signal,
            forecast_error=self.forecast_error,
        )

    def _not_a_choice(self, start: datetime) -> str:
        if self.decision != "wait":
            return (
                f"start must be None or created_at for a {self.decision!r} assessment, "
                f"got {start!r}"
            )
        return f"start must be one of the assessment's choices, got {start!r}"

    def __repr__(self) -> str:
        return (
            f"<Assessment {self.decision} at {self.created_at:%Y-%m-%dT%H:%M}Z: "
            f"best {self.best_start:%H:%M}Z, {len(self._offered)} choices>"
        )


def assess(
    forecast: Forecast, now: datetime, policy: Policy, *, history: Forecast | None = None
) -> Assessment:
    """Score every start of work submitted at ``now`` under ``policy``, and decide whether
    waiting pays.

    Every start in ``[now, now + max_delay]`` (deadline inclusive) is a candidate; each is
    scored by the time-weighted mean intensity over the work's window (``expected_duration``,
    or one slot). Only the starts where the score can bend are compared: ``now``, the deadline,
    every slot boundary and every time at which the window's end meets a boundary, so the
    result is the exact optimum for any slot length. Ties go to the earliest start. The job
    waits (``decision == "wait"``) only when the best start beats now by at least
    ``min_improvement``; its :attr:`~Assessment.choices` are then every start that does.

    ``policy.strategy`` decides what a slot's intensity is. ``"lowest"``: the forecast as it
    is (the published EcoTracker rule). ``"calibrated"``: the forecast corrected by what
    ``history`` (slots closed before ``now``, with actuals) says about its timing, bias and
    current error, and each later start charged ``policy.caution`` standard deviations of the
    error the comparison with now can still make, scaled by the forecast's correlation with
    the actuals on the look-back (see :mod:`ecoasync._calibrate`); without enough
    history it is ``"lowest"``. For ``"calibrated"``, the intensities are the corrected
    estimates.
    """
    now = as_utc(now, what="now")
    if not forecast:
        return _run_now(now, policy, "no-forecast", forecast)
    if policy.max_delay <= _ZERO:
        return _run_now(now, policy, "no-delay-budget", forecast)
    deadline = now + policy.max_delay
    slot = _slot_length(forecast)
    window = policy.expected_duration or slot or timedelta(minutes=30)

    calibrating = policy.strategy == "calibrated" and bool(history) and slot is not None
    # the calibration reads the forecast up to MAX_SHIFT past the last window it scores
    reach = deadline + window + (MAX_SHIFT if calibrating else _ZERO)
    relevant = forecast.between(now, reach + _MICROSECOND)
    if not relevant:
        return _run_now(now, policy, "no-forecast", forecast)
    columns = relevant._columns()
    t_now = now.timestamp()
    t_deadline = deadline.timestamp()
    span = window.total_seconds()

    # the slots that can matter: through the first one that starts after the last window ends
    used = bisect_right(columns.starts, t_deadline + span) + 1
    calibration = None
    if calibrating and slot is not None:
        calibration = calibrate_ahead(history, now, slot, relevant)
    # the candidates: now, the deadline and the points where the mean bends between them
    shared = window_of(relevant, calibration, used, span)
    integ, points = shared.integ, shared.points
    lo, hi = bisect_right(points, t_now), bisect_left(points, t_deadline)
    ends = (t_now, t_deadline) if t_deadline > t_now else (t_now,)  # (far from 1970, 1 µs is not)
    ordered = [t_now, *points[lo:hi], *ends[1:]]
    # only the means from now and the deadline are this plan's own
    first, *last = integ.means(ends, span)
    means = [first, *shared.means(lo, hi), *last]
    scored: list[tuple[float, float, float]] = []  # (start, expected intensity, score)
    if calibration is None:  # a start's score is its mean
        scored = [(t, m, m) for t, m in zip(ordered, means, strict=True) if m is not None]
    else:
        # the charge, scaled by the share of the forecast's differences that are real
        caution = policy.caution * calibration.weight
        margins = calibration.spreads(t_now, ordered)
        for t, m, margin in zip(ordered, means, margins, strict=True):
            if m is not None:
                scored.append((t, m, m + caution * margin))
    if not scored:
        return _run_now(now, policy, "no-forecast", forecast)

    # now's intensity: the window from now, or (if the forecast starts later) the first score
    first_t, now_score, _ = scored[0]
    best_t, best_mean, best_score = scored[0]
    beats = best_score - _EPS * max(1.0, abs(best_score))  # what a later start must be under
    for t, m, score in scored[1:]:
        if score < beats:
            best_t, best_mean, best_score = t, m, score
            beats = best_score - _EPS * max(1.0, abs(best_score))

    threshold = now_score * (1.0 - policy.min_improvement) + _EPS
    offered: list[tuple[float, float, float]] = []
    if best_t == first_t or best_score >= now_score - _EPS * max(1.0, now_score):
        decision: Decision = "now-is-best"
        best_t, best_mean = t_now, now_score
    elif best_score > threshold:
        decision = "below-min-improvement"
        best_t, best_mean = t_now, now_score
    else:
        decision = "wait"
        beats_now = now_score - _EPS * max(1.0, now_score)
        offered = [c for c in scored[1:] if c[2] <= threshold and c[2] < beats_now]
    return Assessment(
        created_at=now,
        deadline=deadline,
        decision=decision,
        now_intensity=now_score,
        best_start=datetime.fromtimestamp(best_t, now.tzinfo),
        best_intensity=best_mean,
        candidates=len(scored),
        window=window,
        provider=forecast.provider,
        zone=forecast.zone,
        signal=forecast.signal,
        offered=offered,
        best_t=best_t,
        integ=integ,
        jitter=policy.jitter.total_seconds(),
        t_now=t_now,
        t_deadline=t_deadline,
    )


def plan(
    forecast: Forecast,
    now: datetime,
    policy: Policy,
    *,
    rng: random.Random | None = None,
    history: Forecast | None = None,
    ledger: SlotLedger | None = None,
) -> Plan:
    """Choose when work submitted at ``now`` should start under ``policy``: :func:`assess`, then
    :meth:`Assessment.plan` at the best start.

    With a ``ledger`` (the in-process :class:`~ecoasync.SlotLedger`), a waiting plan starts at
    the choice :meth:`~ecoasync.SlotLedger.choose` takes, weighing each start that still beats
    now (and meets ``min_improvement``) by how loaded its slot is, so concurrent plans spread
    over near-optimal slots instead of all waking in one. ``plan`` only reads the ledger; the
    caller claims (:meth:`~ecoasync.SlotLedger.claim_nowait`, or a session's
    ``Policy.ledger``).

    With ``rng`` and ``policy.jitter > 0``, a waiting plan's start moves by a random amount of at
    most ``jitter`` (see :meth:`Assessment.plan`). The start never leaves the budget.
    """
    assessment = assess(forecast, now, policy, history=history)
    if ledger is None or assessment.decision != "wait":
        return assessment.plan(rng=rng)
    choice = ledger.choose(assessment.ledger_zone, assessment.choices, now=assessment.created_at)
    return assessment.plan(choice.start, rng=rng)
