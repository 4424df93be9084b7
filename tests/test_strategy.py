"""The calibrated strategy, the slot ledger, and the planner's properties under both strategies."""

from __future__ import annotations

import math
import random
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ecoasync import (
    Assessment,
    Choice,
    Forecast,
    Plan,
    Policy,
    PolicyError,
    Slot,
    SlotLedger,
    assess,
    carbon_session,
    plan,
)
from ecoasync._calibrate import _tail, calibrate
from ecoasync._synth import synthetic_trace
from ecoasync.testing import FakeProvider, VirtualClock

T0 = datetime(2026, 3, 18, tzinfo=UTC)
HALF = timedelta(minutes=30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def slots(
    values: Sequence[float], start: datetime = T0, actual: Sequence[float] | None = None
) -> Forecast:
    return Forecast(
        [
            Slot(start + i * HALF, start + (i + 1) * HALF, v, None if actual is None else actual[i])
            for i, v in enumerate(values)
        ]
    )


def test_strategy_defaults_to_calibrated_and_is_validated() -> None:
    assert Policy().strategy == "calibrated"
    assert Policy(strategy="lowest").strategy == "lowest"
    assert Policy().evolve(strategy="lowest").strategy == "lowest"
    with pytest.raises(
        PolicyError, match=r"Policy.strategy must be one of 'calibrated', 'lowest', got 'smart'"
    ):
        Policy(strategy="smart")  # type: ignore[arg-type]


def test_without_history_calibrated_plans_like_lowest() -> None:
    f = slots([300, 250, 100, 200, 50, 400])
    for history in (None, Forecast([]), slots([100] * 3, start=T0 - 3 * HALF, actual=[90] * 3)):
        a = plan(f, T0, Policy(max_delay="2h"), history=history)
        b = plan(f, T0, Policy(max_delay="2h", strategy="lowest"))
        assert (a.start, a.decision, a.planned_intensity) == (
            b.start,
            b.decision,
            b.planned_intensity,
        )


@pytest.mark.parametrize("lag", [0.0, 1.0, 2.5])
def test_calibration_finds_the_forecasts_timing_offset(lag: float) -> None:
    trace = synthetic_trace(3, lag_slots=lag, seed=11, error=3.0)
    now_index = 96
    now = trace[now_index].start
    history = Forecast(trace.slots[now_index - 48 : now_index])
    ahead = trace.slots[now_index : now_index + 16]
    cal = calibrate(
        history,
        now,
        HALF,
        (
            [s.start.timestamp() for s in ahead],
            [s.end.timestamp() for s in ahead],
            [s.forecast for s in ahead],
        ),
    )
    assert cal is not None
    assert cal.shift == pytest.approx(lag, abs=0.35)
    assert cal.samples == 48


def test_the_current_error_moves_the_decision() -> None:
    # the forecast is flat at 100 now and dips to 95 in two hours; the last day's actuals ran
    # 30 above the forecast until now, and errors persist: now is really about 130, so wait.
    history = slots([100] * 48, start=T0 - 48 * HALF, actual=[100] * 40 + [130] * 8)
    f = slots([100, 100, 100, 100, 95, 100, 100, 100, 100, 100, 100, 100, 100])
    assert plan(f, T0, Policy(max_delay="2h", strategy="lowest")).decision == "wait"
    # whereas with the same dip but actuals exactly on the forecast, a 5 % dip within the
    # forecast's own noise is not worth waiting for
    noisy = [100 + (7 if i % 2 else -7) for i in range(48)]
    calm = slots([100] * 48, start=T0 - 48 * HALF, actual=noisy)
    p = plan(f, T0, Policy(max_delay="2h"), history=calm)
    assert p.decision in ("now-is-best", "below-min-improvement")
    assert p.start == T0
    q = plan(f, T0, Policy(max_delay="2h"), history=history)
    assert q.now_intensity is not None and q.now_intensity > 110


def test_history_after_now_is_never_read() -> None:
    trace = synthetic_trace(2, lag_slots=1.0, seed=5)
    i = 60
    now = trace[i].start
    f = Forecast([Slot(s.start, s.end, s.forecast) for s in trace.slots[i : i + 16]])
    past = Forecast(trace.slots[i - 48 : i])
    leaky = Forecast(trace.slots[i - 48 : i + 16])  # includes actuals of the future
    policy = Policy(max_delay="4h")
    assert plan(f, now, policy, history=past) == plan(f, now, policy, history=leaky)


def test_history_off_the_grid_falls_back_to_the_forecast() -> None:
    f = slots([300, 250, 100, 200, 50, 400, 300, 300, 300, 300, 300, 300])
    odd = slots([100] * 20, start=T0 - 20 * HALF - timedelta(minutes=10), actual=[120] * 20)
    a = plan(f, T0, Policy(max_delay="2h"), history=odd)
    b = plan(f, T0, Policy(max_delay="2h", strategy="lowest"))
    assert a.start == b.start


def reference_tail(slots: Sequence[Slot], now: datetime, slot: timedelta, limit: int) -> list[Slot]:
    """The calibration's history, as it read it before forecasts cached their columns."""
    j = len(slots)
    while j and (slots[j - 1].end > now or slots[j - 1].actual is None):
        j -= 1
    run: list[Slot] = []
    for s in reversed(slots[max(j - limit, 0) : j]):
        if s.actual is None or s.duration != slot or (run and s.end != run[-1].start):
            break
        run.append(s)
    return run[::-1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["ok", "ok", "ok", "ok", "gap", "no-actual", "short"]), max_size=40),
    st.integers(-2, 42),
    st.integers(1, 30),
    st.booleans(),
)
def test_calibration_reads_the_last_unbroken_run_of_history(
    kinds: list[str], closed: int, limit: int, warm: bool
) -> None:
    history = []
    t = T0
    for kind in kinds:
        t += timedelta(minutes=10) if kind == "gap" else timedelta(0)
        end = t + (timedelta(minutes=20) if kind == "short" else HALF)
        history.append(Slot(t, end, 100, None if kind == "no-actual" else 90))
        t = end
    forecast = Forecast(history)
    if warm:
        forecast._columns()
    now = T0 + closed * HALF
    lo, hi = _tail(forecast, now, HALF, limit)
    assert list(forecast.slots[lo:hi]) == reference_tail(history, now, HALF, limit)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 1000),
    st.sets(st.integers(0, 130), max_size=6),
    st.integers(48, 110),
    st.sampled_from([None, timedelta(minutes=10), timedelta(minutes=29)]),
)
def test_slices_of_a_long_forecast_plan_like_fresh_forecasts(
    seed: int, missing: set[int], i: int, shorter: timedelta | None
) -> None:
    """The simulator plans on slices of one long forecast, which read its cached columns; they
    plan exactly as forecasts built afresh from the same slots, also when slots are missing
    (gaps) or one is shorter than the others."""
    trace = synthetic_trace(3, seed=seed, lag_slots=1.0)
    kept = [s for k, s in enumerate(trace.slots) if k not in missing]
    if shorter is not None:
        s = kept[i - 3]
        kept[i - 3] = Slot(s.start, s.start + shorter, s.forecast, s.actual)
    whole = Forecast(kept, provider="trace")
    blind = Forecast([Slot(s.start, s.end, s.forecast) for s in kept], provider="trace")
    whole._columns()
    blind._columns()
    now = trace[i].start
    forecast = blind.between(now, now + timedelta(hours=8))
    history = whole.between(now - timedelta(hours=24), now)
    for policy in (
        Policy(max_delay="4h"),
        Policy(max_delay="3h", expected_duration="45m", min_improvement=0.0),
        Policy(max_delay="4h", strategy="lowest"),
    ):
        cached = plan(forecast, now, policy, history=history)
        fresh = plan(
            Forecast(list(forecast), provider="trace"),
            now,
            policy,
            history=Forecast(list(history), provider="trace"),
        )
        assert repr(cached) == repr(fresh)


# -- the ledger -----------------------------------------------------------------------------


def load(ledger: SlotLedger, when: datetime, jobs: int = 1, zone: str = "unknown") -> None:
    """Count ``jobs`` jobs in the slot that holds ``when`` (the zone of an unlabelled forecast)."""
    for _ in range(jobs):
        ledger.claim_nowait(
            f"load-{len(ledger)}",
            zone,
            [Choice(when, 100.0, 100.0)],
            lease=timedelta(days=30),
            now=T0 - timedelta(days=1),
        )


def claim(ledger: SlotLedger, p: Assessment, job: str) -> Plan:
    """What the simulator does with a waiting job: claim, then plan at the granted start."""
    granted = ledger.claim_nowait(job, p.ledger_zone, p.choices, lease=timedelta(hours=6), now=T0)
    return p.plan(granted.start)


def test_ledger_spreads_equal_slots_and_releases() -> None:
    f = slots([300, 100, 100, 100, 300])
    ledger = SlotLedger()
    policy = Policy(max_delay="2h", strategy="lowest")
    picks = [claim(ledger, assess(f, T0, policy), f"job{k}").start for k in range(3)]
    assert sorted(picks) == [T0 + HALF, T0 + 2 * HALF, T0 + 3 * HALF]
    assert ledger.loads_nowait("unknown", T0, T0 + 3 * HALF, now=T0) == {
        T0 + HALF: 1,
        T0 + 2 * HALF: 1,
    }
    assert len(ledger) == 3
    # a redelivered job gets its claim back and counts once
    again = assess(f, T0, policy)
    assert claim(ledger, again, "job0").start == picks[0]
    assert len(ledger) == 3
    for k in range(3):
        held = ledger.claim_nowait(f"job{k}", "unknown", again.choices, lease=HALF, now=T0)
        ledger.release_nowait(held)
        ledger.release_nowait(held)  # idempotent
    assert ledger.loads_nowait("unknown", T0, T0 + timedelta(days=1), now=T0) == {}
    # a much dirtier slot is never taken to spread load
    g = slots([300, 100, 200, 300])
    for k in range(5):
        assert claim(ledger, assess(g, T0, policy), f"g{k}").start == T0 + HALF
    assert "jobs=5" in repr(ledger)


def test_ledger_never_picks_a_start_that_does_not_beat_now() -> None:
    f = slots([100, 90, 99.5, 100])
    ledger = SlotLedger(tolerance=0.5)
    policy = Policy(max_delay="90m", strategy="lowest", min_improvement=0.05)
    for k in range(10):
        p = plan(f, T0, policy, ledger=ledger)
        assert p.start in (T0, T0 + HALF)
        if p.waits:
            assert p.planned_intensity == 90
            claim(ledger, assess(f, T0, policy), f"job{k}")


@pytest.mark.parametrize("bad", [-0.1, 1, float("nan"), "2%", True])
def test_ledger_options_are_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        SlotLedger(tolerance=bad)
    with pytest.raises(ValueError, match="bucket"):
        SlotLedger(bucket=timedelta(0))
    with pytest.raises(ValueError, match="capacity must be None or an int >= 1"):
        SlotLedger(capacity=0 if bad != "2%" else bad)


# -- properties of the planner, both strategies ----------------------------------------------

values = st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=14)


@settings(max_examples=150, deadline=None)
@given(
    forecast=values,
    past=st.lists(st.tuples(st.floats(1, 500), st.floats(0, 500)), min_size=0, max_size=60),
    offset=st.integers(0, 29),
    delay=st.integers(0, 300),
    min_improvement=st.sampled_from([0.0, 0.05, 0.3]),
    strategy=st.sampled_from(["lowest", "calibrated"]),
    seed=st.integers(0, 3),
    jitter=st.integers(0, 40),
    loaded=st.booleans(),
    caution=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_plan_properties(
    forecast: list[float],
    past: list[tuple[float, float]],
    offset: int,
    delay: int,
    min_improvement: float,
    strategy: str,
    seed: int,
    jitter: int,
    loaded: bool,
    caution: float,
) -> None:
    now = T0 + timedelta(minutes=offset)
    history = Forecast(
        [
            Slot(T0 - (len(past) - i) * HALF, T0 - (len(past) - i - 1) * HALF, f, a)
            for i, (f, a) in enumerate(past)
        ]
    )
    policy = Policy(
        max_delay=timedelta(minutes=delay),
        min_improvement=min_improvement,
        strategy=strategy,  # type: ignore[arg-type]
        jitter=timedelta(minutes=jitter),
        caution=caution,
    )
    ledger = SlotLedger()
    if loaded:
        for k in range(len(forecast)):
            load(ledger, T0 + k * HALF, k % 3)
    p = plan(
        slots(forecast),
        now,
        policy,
        rng=random.Random(seed),
        history=history,
        ledger=ledger if loaded else None,
    )
    deadline = now + policy.max_delay
    assert now <= p.start <= deadline  # the start (jitter included) stays in the budget
    assert now <= p.slot_start <= deadline
    if p.now_intensity is not None and p.planned_intensity is not None:
        assert p.planned_intensity <= p.now_intensity + 1e-6
    if p.decision == "wait":
        assert p.improvement is not None
        assert p.improvement >= min_improvement - 1e-9
        assert abs(p.jitter) <= policy.jitter
    else:
        assert p.start == now


@settings(max_examples=200, deadline=None)
@given(
    forecast=st.lists(st.floats(0, 500, allow_nan=False), min_size=2, max_size=14),
    actual=st.lists(st.floats(50, 500, allow_nan=False), min_size=8, max_size=60),
    errors=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 3.0]), max_size=60),
    delay=st.integers(30, 300),
    caution=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_a_correction_without_skill_leaves_the_raw_forecast_plan(
    forecast: list[float], actual: list[float], errors: list[float], delay: int, caution: float
) -> None:
    """Where the look-back shows no skill for any correction (no shift, persistence or bias
    beyond noise), the calibrated strategy reads the forecast exactly as it is: the expected
    intensities are the forecast's, and a risk-neutral plan (caution 0) is the ``lowest`` one."""
    from ecoasync._calibrate import calibrate_ahead

    errors = (errors + [0.0] * len(actual))[: len(actual)]
    history = Forecast(
        [
            Slot(T0 - (len(actual) - i) * HALF, T0 - (len(actual) - i - 1) * HALF, a - e, a)
            for i, (a, e) in enumerate(zip(actual, errors, strict=True))
        ]
    )
    ahead = slots(forecast)
    fit = calibrate_ahead(history, T0, HALF, ahead)
    assert fit is not None
    assume(fit.shift == 0 and fit.bias == 0 and fit.rho == 0 and fit.last_error == 0)
    starts = [s.start.timestamp() for s in ahead]
    assert fit.expected_all(starts) == forecast  # exactly the raw forecast
    policy = Policy(max_delay=timedelta(minutes=delay), caution=0.0, jitter="0m")
    calibrated = plan(ahead, T0, policy, history=history)
    lowest = plan(ahead, T0, policy.evolve(strategy="lowest"), history=history)
    assert (calibrated.decision, calibrated.start, calibrated.planned_intensity) == (
        lowest.decision,
        lowest.start,
        lowest.planned_intensity,
    )
    assert calibrated.now_intensity == lowest.now_intensity
    cautious = plan(ahead, T0, policy.evolve(caution=caution), history=history)
    if cautious.decision == "wait":  # a charge only ever keeps work nearer to now
        assert calibrated.decision == "wait"
        assert cautious.start >= T0


def test_a_timing_offset_with_skill_is_used_and_noise_is_not() -> None:
    """The shift is used where the look-back shows it (a forecast 45 minutes late, little
    noise) and not where the forecast is on time (the same noise alone)."""
    from ecoasync._calibrate import calibrate_ahead

    late = synthetic_trace(4, start=T0 - timedelta(days=3), lag_slots=1.5, seed=4, error=2.0)
    on_time = synthetic_trace(4, start=T0 - timedelta(days=3), lag_slots=0.0, seed=4, error=2.0)
    for trace, used in ((late, True), (on_time, False)):
        history = trace.between(T0 - timedelta(hours=72), T0)
        fit = calibrate_ahead(history, T0, HALF, trace.between(T0, T0 + timedelta(hours=6)))
        assert fit is not None
        assert (abs(fit.shift) >= 1.0) is used, fit


def test_the_charge_weight_is_the_correlation_of_forecast_and_actual() -> None:
    """``charge_weight``'s limits: the full charge without an error, none without a swing,
    ``1/sqrt(2)`` where the error is as large as the swing, falling as the error grows."""
    from ecoasync._skill import charge_weight

    assert charge_weight(0.0, 40.0) == 1.0  # a forecast without error keeps the full charge
    assert charge_weight(0.0, 0.0) == 1.0  # (nothing to charge: the weight does not matter)
    assert charge_weight(5.0, 0.0) == 0.0  # a flat grid: every gain is noise, risk-neutral
    assert charge_weight(7.0, 7.0) == pytest.approx(math.sqrt(0.5))
    assert charge_weight(1e-3, 100.0) == pytest.approx(1.0)
    assert charge_weight(1e6, 1.0) == pytest.approx(0.0, abs=1e-5)
    weights = [charge_weight(sigma, 10.0) for sigma in (0.0, 1.0, 5.0, 10.0, 20.0, 100.0)]
    assert weights == sorted(weights, reverse=True)
    assert charge_weight(3.0, 4.0) == pytest.approx(4 / 5)
    assert charge_weight(math.nan, 4.0) == 1.0  # (no usable error: nothing to scale)


@settings(max_examples=150, deadline=None)
@given(
    past=st.lists(st.tuples(st.floats(0, 800), st.floats(0, 800)), min_size=8, max_size=80),
    caution=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_property_the_effective_caution_is_within_zero_and_the_policys(
    past: list[tuple[float, float]], caution: float
) -> None:
    """Whatever the look-back, the charge kept is a share of the policy's: the effective
    caution lies in ``[0, caution]``, and the swing is the actuals' standard deviation."""
    from ecoasync._calibrate import calibrate_ahead

    history = Forecast(
        [
            Slot(T0 - (len(past) - i) * HALF, T0 - (len(past) - i - 1) * HALF, f, a)
            for i, (f, a) in enumerate(past)
        ]
    )
    actual = [a for _, a in past]
    fit = calibrate_ahead(history, T0, HALF, slots([100.0, 90.0, 80.0]))
    assert fit is not None
    assert 0.0 <= caution * fit.weight <= caution
    mean = sum(actual) / len(actual)
    spread = math.sqrt(sum((a - mean) ** 2 for a in actual) / len(actual))
    assert fit.swing == pytest.approx(spread, rel=1e-6, abs=1e-3)


def test_the_planner_charges_the_weighted_caution() -> None:
    """Each later start's score is its expected intensity plus ``caution * weight`` times the
    spread of its comparison with now: a large swing keeps nearly the full charge, a noisy
    forecast of a flat grid little of it."""
    from ecoasync._calibrate import calibrate_ahead

    ahead = slots([200.0, 190.0, 150.0, 120.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    rng = random.Random(3)
    noise = [rng.gauss(0.0, 8.0) for _ in range(48)]
    weights = []
    offered = []
    for swing in (300.0, 2.0):
        actual = [400.0 + swing * math.sin(i / 3.0) for i in range(48)]
        history = Forecast(
            [
                Slot(T0 - (48 - i) * HALF, T0 - (47 - i) * HALF, a - noise[i], a)
                for i, a in enumerate(actual)
            ]
        )
        fit = calibrate_ahead(history, T0, HALF, ahead)
        assert fit is not None
        weights.append(fit.weight)
        policy = Policy(max_delay="4h", min_improvement=0.0, caution=1.0, jitter="0m")
        found = assess(ahead, T0, policy, history=history)
        offered.append(len(found._offered))
        starts = [t for t, _, _ in found._offered]
        margins = fit.spreads(T0.timestamp(), starts)
        for (_, mean, score), margin in zip(found._offered, margins, strict=True):
            assert score == pytest.approx(mean + fit.weight * margin)
    assert weights[0] > 0.99 > 0.5 > weights[1]
    assert all(offered)


# -- the live session --------------------------------------------------------------------------


class HistoryProvider(FakeProvider):
    """A fake provider that also serves history (actuals), or fails to."""

    def __init__(self, forecast: Forecast, *, fail: bool = False) -> None:
        super().__init__(forecast)
        self.fail = fail
        self.asked: list[tuple[datetime, datetime]] = []

    async def history(self, start: datetime, end: datetime) -> Forecast:
        self.asked.append((start, end))
        if self.fail:
            raise OSError("history endpoint down")
        return self.all().between(start, end)

    def history_nowait(self, start: datetime, end: datetime) -> None:
        return None  # always ask through history()


def _day_with_actuals() -> Forecast:
    return synthetic_trace(2, start=T0 - timedelta(days=1), lag_slots=1.0, seed=2)


async def test_session_fetches_history_for_the_calibrated_strategy(clock: VirtualClock) -> None:
    clock.advance(timedelta(hours=17))
    provider = HistoryProvider(_day_with_actuals())
    async with carbon_session(Policy(max_delay="4h", provider=provider, jitter="0m")) as session:
        assert session.plan.decision in ("wait", "now-is-best", "below-min-improvement")
    assert len(provider.asked) == 1
    start, end = provider.asked[0]
    assert end - start == timedelta(hours=72)  # _calibrate.LOOKBACK
    lowest = HistoryProvider(_day_with_actuals())
    async with carbon_session(Policy(max_delay="4h", provider=lowest, strategy="lowest")):
        pass
    assert lowest.asked == []


async def test_session_survives_a_failing_history(
    clock: VirtualClock, logs: list[MutableMapping[str, Any]]
) -> None:
    clock.advance(timedelta(hours=17))
    provider = HistoryProvider(_day_with_actuals(), fail=True)
    policy = Policy(max_delay="4h", provider=provider, jitter="0m")
    async with carbon_session(policy) as session:
        expected = plan(
            provider.all().between(
                session.plan.created_at, session.plan.deadline + timedelta(hours=4)
            ),
            session.plan.created_at,
            policy.evolve(strategy="lowest"),
        )
        assert session.plan.start == expected.start
    assert any(e["event"] == "ecoasync.history_failed" for e in logs)


async def test_concurrent_sessions_reserve_and_release_the_ledger(clock: VirtualClock) -> None:
    import anyio

    from ecoasync import default_ledger

    clock.advance(timedelta(hours=17))
    provider = FakeProvider(_day_with_actuals())
    policy = Policy(max_delay="4h", provider=provider, jitter="0m", strategy="lowest")
    starts: list[datetime] = []

    async def job() -> None:
        async with carbon_session(policy) as session:
            starts.append(session.plan.start)

    before = len(default_ledger())
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(job)
    assert len(starts) == 4
    assert len(default_ledger()) == before  # every reservation was released


@settings(max_examples=25, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=4 * 3600), min_size=1, max_size=12),
    seed=st.integers(min_value=0, max_value=50),
)
def test_remembered_calibrations_give_the_plans_a_fresh_fit_gives(
    offsets: list[int], seed: int
) -> None:
    """Sessions share fits (same history and forecast objects, same closed slots); every plan
    is exactly the one a fresh calibration gives, whatever order the sessions come in."""
    from ecoasync import _calibrate

    trace = synthetic_trace(3, start=T0 - timedelta(days=1), lag_slots=1.0, seed=seed)
    blind = Forecast([Slot(s.start, s.end, s.forecast) for s in trace], provider="t")
    policy = Policy(max_delay="4h", jitter="0m")
    base = T0 + timedelta(hours=17)
    shared = []
    for offset in offsets:  # what live sessions see: the provider's shared slices
        now = base + timedelta(seconds=offset)
        history = trace.between(now - _calibrate.LOOKBACK, now)
        shared.append(
            plan(blind.between(now, now + timedelta(hours=7)), now, policy, history=history)
        )
    for offset, remembered in zip(offsets, shared, strict=True):
        now = base + timedelta(seconds=offset)
        fresh_trace = Forecast(list(trace), provider="t")  # new objects: nothing to reuse
        fresh_blind = Forecast(list(blind), provider="t")
        history = fresh_trace.between(now - _calibrate.LOOKBACK, now)
        fresh = plan(
            fresh_blind.between(now, now + timedelta(hours=7)), now, policy, history=history
        )
        assert fresh == remembered


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 3600), min_size=1, max_size=10),
    seed=st.integers(min_value=0, max_value=50),
    duration=st.sampled_from([None, 10, 45, 120]),
    strategy=st.sampled_from(["lowest", "calibrated"]),
    actuals=st.booleans(),
    loads=st.lists(st.integers(min_value=0, max_value=14), max_size=8),
)
def test_shared_windows_give_the_plans_fresh_objects_give(
    offsets: list[int],
    seed: int,
    duration: int | None,
    strategy: str,
    actuals: bool,
    loads: list[int],
) -> None:
    """Sessions planned on the same shared slices reuse one window (integrator, candidate
    points, their means); every plan, with a loaded ledger and jitter, is exactly the one
    fresh objects give."""
    from ecoasync import _calibrate

    trace = synthetic_trace(3, start=T0 - timedelta(days=1), lag_slots=1.0, seed=seed)
    if not actuals:  # a source without actuals (the UK regional API)
        trace = Forecast([Slot(s.start, s.end, s.forecast) for s in trace], provider="t")
    blind = Forecast([Slot(s.start, s.end, s.forecast) for s in trace], provider="t")
    policy = Policy(
        max_delay="4h",
        strategy=strategy,  # type: ignore[arg-type]
        expected_duration=None if duration is None else timedelta(minutes=duration),
    )
    base = T0 + timedelta(hours=17)

    def ledger() -> SlotLedger:
        made = SlotLedger()
        for k in loads:  # jobs already counted in the slots ahead
            load(made, base + k * HALF, zone="t")
        return made

    def planned(trace: Forecast, blind: Forecast, offset: int) -> Any:
        now = base + timedelta(seconds=offset)
        history = trace.between(now - _calibrate.LOOKBACK, now)
        return plan(
            blind.between(now, now + timedelta(hours=7)),
            now,
            policy,
            rng=random.Random(offset),
            history=history,
            ledger=shared_ledger,
        )

    shared_ledger = ledger()
    shared = [planned(trace, blind, offset) for offset in offsets]
    for offset, remembered in zip(offsets, shared, strict=True):
        fresh_trace = Forecast(list(trace), provider="t")  # new objects: nothing to reuse
        fresh_blind = Forecast(list(blind), provider="t")
        assert planned(fresh_trace, fresh_blind, offset) == remembered


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(
        st.tuples(
            st.sampled_from([15, 30, 30, 30, 60]),  # slot length, minutes
            st.sampled_from([0, 0, 0, 30]),  # gap before it, minutes
            st.booleans() | st.just(True),  # has an actual
        ),
        max_size=60,
    ),
    now_minutes=st.integers(min_value=-60, max_value=60 * 40),
    limit=st.integers(min_value=1, max_value=60),
    microseconds=st.sampled_from([0, 1, 999_999]),
)
def test_tail_finds_what_a_walk_over_the_slots_finds(
    shape: list[tuple[int, int, bool]], now_minutes: int, limit: int, microseconds: int
) -> None:
    """_tail finds the closed slots by bisection on their POSIX ends; it agrees with a walk
    back from the newest slot, also at microseconds from a slot's end."""
    made, at = [], T0
    for minutes, gap, known in shape:
        at += timedelta(minutes=gap)
        end = at + timedelta(minutes=minutes)
        made.append(Slot(at, end, 100.0, 90.0 if known else None))
        at = end
    history = Forecast(made)
    now = T0 + timedelta(minutes=now_minutes, microseconds=microseconds)

    hi = len(made)
    while hi and (made[hi - 1].end > now or made[hi - 1].actual is None):
        hi -= 1
    start, lo = hi, max(hi - limit, 0)
    while start > lo:
        s = made[start - 1]
        if (
            s.actual is None
            or s.end - s.start != HALF
            or (start < hi and s.end != made[start].start)
        ):
            break
        start -= 1
    assert _tail(history, now, HALF, limit) == (start, hi)


@settings(max_examples=200, deadline=None)
@given(
    candidates=st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.floats(min_value=0, max_value=500)),
        min_size=1,
        max_size=12,
        unique_by=lambda c: c[0],
    ),
    loads=st.lists(st.integers(min_value=0, max_value=40), max_size=30),
    tolerance=st.sampled_from([0.0, 0.02, 0.3]),
)
def test_ledger_choose_is_the_least_effective_score_earliest_first(
    candidates: list[tuple[int, float]], loads: list[int], tolerance: float
) -> None:
    """choose() takes the least ``score * (1 + tolerance * load)``, the earliest on ties."""
    ledger = SlotLedger(tolerance=tolerance)
    for k in loads:
        load(ledger, T0 + k * HALF, zone="GB")
    load(ledger, T0, 40, zone="DE")  # another zone's load never counts
    counts = ledger.loads_nowait("GB", T0, T0 + timedelta(days=1), now=T0)
    offered = [
        Choice(T0 + k * HALF + timedelta(minutes=1), score / 2, score)
        for k, score in sorted(candidates)
    ]
    expected = min(
        offered,
        key=lambda c: (
            c.score * (1.0 + tolerance * counts.get(c.start - timedelta(minutes=1), 0)),
            c.start,
        ),
    )
    assert ledger.choose("GB", offered, now=T0) is expected
    assert ledger.choose("GB", list(reversed(offered)), now=T0) is expected


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=1000),
    lag=st.sampled_from([0.0, 1.5, -2.0]),
    minutes=st.sampled_from([15, 30, 60]),
)
def test_replays_plan_what_fresh_forecasts_plan(seed: int, lag: float, minutes: int) -> None:
    """Every plan of a calibrated replay (slices of one trace, what each keeps shared by the
    herd's jobs) is bit-identical to the plan made on forecasts built anew from its slots."""
    from ecoasync import _simulate

    trace = synthetic_trace(3, slot=timedelta(minutes=minutes), seed=seed, lag_slots=lag)
    policy = Policy(max_delay="4h")
    recorded: list[tuple[Plan, tuple[Any, ...], dict[str, Any]]] = []
    real_plan = plan

    def recording(*args: Any, **kwargs: Any) -> Any:
        p = real_plan(*args, **kwargs)
        recorded.append((p, args, kwargs))
        return p

    with pytest.MonkeyPatch.context() as m:
        m.setattr(_simulate, "plan", recording)
        _simulate.replay(trace, policy)
    assert recorded
    for p, (forecast, now, pol), kwargs in recorded:
        history = kwargs.get("history")
        fresh = plan(
            Forecast(list(forecast), provider=forecast.provider, zone=forecast.zone),
            now,
            pol,
            history=None if history is None else Forecast(list(history)),
        )
        assert repr(fresh) == repr(p)


@settings(max_examples=200, deadline=None)
@given(
    year=st.sampled_from([1950, 2026, 2241, 2243, 9000]),
    slot=st.sampled_from([HALF, HALF + timedelta(microseconds=7)]),
    count=st.integers(min_value=1, max_value=14),
    odd=st.dictionaries(
        st.integers(min_value=0, max_value=13),
        st.sampled_from([timedelta(microseconds=1), -HALF / 2]),
        max_size=2,
    ),
    gap=st.sampled_from([timedelta(0), timedelta(microseconds=1), HALF]),
    where=st.integers(min_value=0, max_value=13),
    micro=st.sampled_from([0, 123457]),
)
def test_a_regular_forecast_ahead_fits_as_when_its_slots_are_checked(
    year: int,
    slot: timedelta,
    count: int,
    odd: dict[int, timedelta],
    gap: timedelta,
    where: int,
    micro: int,
) -> None:
    """_fit told that the forecast ahead is regular (_regular) gives the fit it gives when it
    checks every slot's times: for slots of odd lengths, gaps, and times far from 1970 (where
    POSIX times off the whole second are not exact to a microsecond)."""
    from ecoasync._calibrate import _fit, _limit, _regular

    now = datetime(year, 3, 18, 12, tzinfo=UTC) + timedelta(microseconds=micro)
    history = Forecast(
        [
            Slot(now - (48 - i) * slot, now - (47 - i) * slot, 100.0 + i % 7, 95.0 + i % 5)
            for i in range(48)
        ]
    )
    slots, t = [], now
    for i in range(count):
        length = slot + odd.get(i, timedelta(0))
        t += gap if i == where else timedelta(0)
        slots.append(Slot(t, t + length, 90.0 + 3 * i))
        t += length
    ahead = Forecast(slots)
    columns = ahead._columns()
    tail = _tail(history, now, slot, _limit(slot))
    told = _fit(
        history,
        tail,
        slot,
        (columns.starts, columns.ends, columns.forecasts),
        regular=_regular(ahead, slot),
    )
    checked = _fit(history, tail, slot, (columns.starts, columns.ends, columns.forecasts))
    assert repr(told) == repr(checked)


@settings(max_examples=300, deadline=None)
@given(
    span=st.integers(min_value=1, max_value=5),
    n=st.integers(min_value=8, max_value=80),
    noise=st.sampled_from([0.0, 0.5, 5.0, 40.0]),
    lag=st.floats(-5, 5),
    seed=st.integers(0, 2**16),
)
def test_the_search_walks_downhill_from_zero_and_its_sums_are_the_errors(
    span: int, n: int, noise: float, lag: float, seed: int
) -> None:
    """search's whole shift is where walking from shift 0 to the lower neighbour stops going
    down (a local minimum of the whole shifts' error variances), and the statistics it gets
    from its sums are those of the errors computed one by one (at its shift and at 0)."""
    from ecoasync._shift import dot, search

    rng = random.Random(seed)
    values = [
        100 + 60 * math.sin((t - lag) / 5) + rng.gauss(0, noise) for t in range(n + 2 * span + 1)
    ]
    actual = [100 + 60 * math.sin((t + span) / 5) + rng.gauss(0, 3) for t in range(n)]
    found = search(actual, values, span)

    def stats(k: int, w: float) -> tuple[float, float, float, float]:
        errors = [
            a - ((1 - w) * values[span + k + t] + w * values[span + k + t + 1])
            for t, a in enumerate(actual)
        ]
        mean = sum(errors) / n
        centred = [e - mean for e in errors]
        return mean, dot(centred, centred) / n, dot(centred, centred[1:]), errors[-1]

    whole = [stats(k, 0.0)[1] for k in range(-span, span + 1)]
    j = span
    step = -1 if whole[j - 1] <= whole[j + 1] else 1
    while 0 <= j + step <= 2 * span and whole[j + step] < whole[j]:
        j += step
    assert found.k + found.w == pytest.approx(j - span, abs=1.0)  # (the fraction either side)
    scale = 1.0 + max(whole) * n
    for got, want in zip(
        (found.mean, found.variance, found.lag, found.last),
        stats(found.k, found.w),
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6 * scale)
    for got, want in zip(
        (found.on_time_mean, found.on_time_variance, found.on_time_lag, found.on_time_last),
        stats(0, 0.0),
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6 * scale)


def test_a_fallback_over_an_in_memory_provider_keeps_what_sessions_share() -> None:
    """FallbackProvider relabels its providers' answers; the relabelled forecast and history
    are the same objects for the same slices, so the sessions planned in one slot share one
    fit and one window, as they do on the bare provider."""
    from ecoasync.providers import FallbackProvider, StaticForecastProvider

    inner = StaticForecastProvider(_day_with_actuals(), name="grid")
    inner.name = "renamed"  # its answers say "grid": the fallback relabels each one
    fallback = FallbackProvider([inner])
    now = T0 + timedelta(hours=17)
    policy = Policy(max_delay="4h", provider=fallback)
    seen = set()
    for second in range(1, 21):  # twenty sessions arriving in one slot
        at = now + timedelta(seconds=second)
        forecast = fallback.forecast_nowait(at, at + timedelta(hours=7))
        history = fallback.history_nowait(at - timedelta(hours=24), at)
        assert forecast is not None and history is not None
        assert (forecast.provider, history.provider) == ("renamed", "renamed")
        p = plan(forecast, at, policy, history=history)
        assert p.provider == "renamed"
        # the slice the planner read (up to the deadline, the window and the calibration's
        # reach) holds the window it keeps
        relevant = forecast.between(at, at + timedelta(hours=6, minutes=30, microseconds=1))
        seen.add((id(forecast), id(history), id(relevant._windows[0]), id(history._fits[0])))
    assert len(seen) == 1
