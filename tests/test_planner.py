from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecoasync import Forecast, Policy, Slot, SlotLedger, assess, plan
from ecoasync._planner import window_mean

T0 = datetime(2026, 3, 18, tzinfo=UTC)
HALF = timedelta(minutes=30)


def forecast_of(values: list[float], minutes: int = 30, start: datetime = T0) -> Forecast:
    step = timedelta(minutes=minutes)
    return Forecast(
        [Slot(start + i * step, start + (i + 1) * step, v) for i, v in enumerate(values)]
    )


def test_waits_for_the_lowest_slot_within_the_budget() -> None:
    f = forecast_of([300, 250, 100, 200, 50, 400])
    p = plan(f, T0, Policy(max_delay="1h"))
    assert p.decision == "wait"
    assert p.start == T0 + timedelta(hours=1)
    assert p.planned_intensity == 100
    assert p.now_intensity == 300
    assert p.delay == timedelta(hours=1)
    assert "waiting 1 h for 100" in p.reason


def test_deadline_is_inclusive() -> None:
    f = forecast_of([300, 250, 200, 100, 400])
    p = plan(f, T0, Policy(max_delay="90m"))
    assert p.start == T0 + timedelta(minutes=90)
    assert p.planned_intensity == 100


def test_ties_go_to_the_earliest_start() -> None:
    f = forecast_of([300, 100, 200, 100])
    assert plan(f, T0, Policy(max_delay="2h")).start == T0 + timedelta(minutes=30)


def test_runs_now_when_now_is_best_or_equal() -> None:
    assert plan(forecast_of([100, 100, 150]), T0, Policy(max_delay="1h")).decision == "now-is-best"
    p = plan(forecast_of([90, 100, 150]), T0, Policy(max_delay="1h"))
    assert p.decision == "now-is-best"
    assert p.start == T0
    assert p.delay == timedelta(0)


def test_min_improvement_keeps_work_running_now() -> None:
    f = forecast_of([100, 95, 150])
    p = plan(f, T0, Policy(max_delay="1h", min_improvement=0.1))
    assert p.decision == "below-min-improvement"
    assert p.start == T0
    assert plan(f, T0, Policy(max_delay="1h", min_improvement=0.05)).decision == "wait"


def test_no_delay_budget_and_no_forecast() -> None:
    f = forecast_of([300, 100])
    p = plan(f, T0, Policy())
    assert p.decision == "no-delay-budget"
    assert p.now_intensity == 300
    empty = plan(Forecast([]), T0, Policy(max_delay="4h"))
    assert empty.decision == "no-forecast"
    assert empty.now_intensity is None
    stale = plan(forecast_of([100, 200], start=T0 - timedelta(days=1)), T0, Policy(max_delay="4h"))
    assert stale.decision == "no-forecast"


def test_mid_slot_now_uses_the_rest_of_the_current_slot() -> None:
    f = forecast_of([300, 100, 400])
    now = T0 + timedelta(minutes=10)
    p = plan(f, now, Policy(max_delay="1h"))
    assert p.start == T0 + timedelta(minutes=30)
    assert p.delay == timedelta(minutes=20)
    assert p.deadline == now + timedelta(hours=1)


def test_delay_is_measured_from_now_not_from_the_first_forecast_point() -> None:
    # a provider whose forecast starts 20 minutes in the future (Electricity Maps does this)
    f = forecast_of([300, 100, 400], start=T0 + timedelta(minutes=20))
    p = plan(f, T0, Policy(max_delay="1h"))
    assert p.start == T0 + timedelta(minutes=50)
    assert p.delay == timedelta(minutes=50)


def test_expected_duration_picks_the_best_window_not_the_best_slot() -> None:
    # the single lowest slot (50) sits between two dirty ones; the best 90-minute window is elsewhere
    f = forecast_of([300, 500, 50, 500, 120, 120, 120, 400])
    slot_only = plan(f, T0, Policy(max_delay="3h"))
    assert slot_only.start == T0 + timedelta(hours=1)
    windowed = plan(f, T0, Policy(max_delay="3h", expected_duration="90m"))
    assert windowed.start == T0 + timedelta(hours=2)
    assert windowed.planned_intensity == pytest.approx(120)


def test_window_boundaries_are_candidates_for_odd_durations() -> None:
    # with a 45-minute job the optimum starts 15 minutes before a boundary
    f = forecast_of([400, 400, 100, 400, 400], minutes=30)
    p = plan(f, T0, Policy(max_delay="2h", expected_duration="45m"))
    mean = window_mean(f, p.start, timedelta(minutes=45))
    assert p.planned_intensity == pytest.approx(mean)
    assert p.planned_intensity == pytest.approx((400 * 15 + 100 * 30) / 45)


@pytest.mark.parametrize("minutes", [5, 15, 30, 60])
def test_any_slot_length(minutes: int) -> None:
    values = [200.0 - 10 * i if i < 8 else 300.0 for i in range(40)]
    f = forecast_of(values, minutes=minutes)
    p = plan(f, T0, Policy(max_delay=timedelta(minutes=minutes * 6)))
    assert p.start == T0 + timedelta(minutes=minutes * 6)
    assert p.window == timedelta(minutes=minutes)


def test_jitter_is_inside_the_slot_and_budget() -> None:
    f = forecast_of([300, 100, 100, 400])
    starts = {
        plan(f, T0, Policy(max_delay="2h", jitter="10m"), rng=random.Random(i)).start
        for i in range(50)
    }
    assert len(starts) > 40
    for start in starts:
        assert T0 + timedelta(minutes=30) <= start <= T0 + timedelta(minutes=40)


def test_jitter_at_the_deadline_still_spreads() -> None:
    # the best slot starts exactly at the deadline: no room ahead, so the spread goes back
    f = forecast_of([300, 300, 100, 400])
    plans = [
        plan(f, T0, Policy(max_delay="1h", jitter="5m"), rng=random.Random(i)) for i in range(50)
    ]
    starts = {p.start for p in plans}
    assert len(starts) > 40
    for p in plans:
        assert T0 + timedelta(minutes=55) <= p.start <= p.deadline
        assert -timedelta(minutes=5) <= p.jitter <= timedelta(0)


def test_plan_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(forecast_of([1, 2]), datetime(2026, 3, 18), Policy(max_delay="1h"))


# --- properties ---------------------------------------------------------------------------

slot_minutes = st.sampled_from([5, 15, 30, 60])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Forecast, datetime, Policy, int]:
    minutes = draw(slot_minutes)
    values = draw(st.lists(st.integers(0, 600).map(float), min_size=1, max_size=48))
    forecast = forecast_of(values, minutes=minutes)
    now = T0 + timedelta(minutes=draw(st.integers(-90, minutes * len(values) + 30)))
    policy = Policy(
        max_delay=timedelta(minutes=draw(st.integers(0, 8 * 60))),
        jitter=timedelta(minutes=draw(st.integers(0, 20))),
        min_improvement=draw(st.sampled_from([0.0, 0.05, 0.2, 0.5])),
        expected_duration=draw(
            st.one_of(st.none(), st.integers(1, 180).map(lambda m: timedelta(minutes=m)))
        ),
    )
    return forecast, now, policy, draw(st.integers(0, 2**32))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_property_start_within_budget_and_never_dirtier_than_now(
    case: tuple[Forecast, datetime, Policy, int],
) -> None:
    forecast, now, policy, seed = case
    p = plan(forecast, now, policy, rng=random.Random(seed))
    assert now <= p.start <= now + policy.max_delay
    assert abs(p.jitter) <= policy.jitter
    if p.now_intensity is not None:
        assert p.planned_intensity is not None
        assert p.planned_intensity <= p.now_intensity + 1e-9
    if p.decision == "wait":
        assert p.now_intensity is not None and p.planned_intensity is not None
        assert p.planned_intensity <= p.now_intensity * (1 - policy.min_improvement) + 1e-6
        assert p.planned_intensity < p.now_intensity
    else:
        assert p.start == now


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_property_jitter_stays_in_the_chosen_slot(
    case: tuple[Forecast, datetime, Policy, int],
) -> None:
    forecast, now, policy, seed = case
    p = plan(forecast, now, policy, rng=random.Random(seed))
    if p.jitter > timedelta(0):
        slot = forecast.at(p.slot_start)
        assert slot is not None
        assert slot.start <= p.start < slot.end
    elif p.jitter < timedelta(0):
        # only when the chosen slot begins at the deadline; the window still mostly lies in it
        assert p.slot_start == p.deadline


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_property_exact_optimum_against_brute_force(
    case: tuple[Forecast, datetime, Policy, int],
) -> None:
    forecast, now, policy, _ = case
    policy = policy.evolve(min_improvement=0.0)
    p = plan(forecast, now, policy)
    if p.now_intensity is None or now < forecast[0].start:
        return
    window = p.window
    steps = int(policy.max_delay.total_seconds() // 60)
    best = min(
        m
        for k in range(steps + 1)
        if (m := window_mean(forecast, now + timedelta(minutes=k), window)) is not None
    )
    assert p.planned_intensity is not None
    assert p.planned_intensity <= best + 1e-6


# -- assess: the decision, and the choices a ledger spreads jobs over -------------------------


def test_assess_offers_every_start_that_beats_now_and_plans_at_any_of_them() -> None:
    f = forecast_of([300, 250, 100, 200, 50, 400, 120])
    policy = Policy(max_delay="2h", min_improvement=0.3, strategy="lowest")
    a = assess(f, T0, policy)
    assert (a.decision, a.best_start, a.best_intensity, a.now_intensity) == (
        "wait",
        T0 + 4 * HALF,
        50,
        300,
    )
    # the starts at least 30 % under now's 300, earliest first (250 is not)
    assert [(c.start, c.expected, c.score) for c in a.choices] == [
        (T0 + 2 * HALF, 100, 100),
        (T0 + 3 * HALF, 200, 200),
        (T0 + 4 * HALF, 50, 50),
    ]
    assert a.ledger_zone == "unknown"  # no zone: the provider's name
    assert a.plan() == plan(f, T0, policy)
    for choice in a.choices:
        p = a.plan(choice.start)
        assert (p.start, p.slot_start, p.planned_intensity) == (
            choice.start,
            choice.start,
            choice.expected,
        )
        assert (p.decision, p.now_intensity, p.candidates) == ("wait", 300, a.candidates)
    with pytest.raises(ValueError, match="one of the assessment's choices"):
        a.plan(T0 + HALF)


def test_assess_offers_nothing_when_now_is_best() -> None:
    for f, policy in (
        (forecast_of([100, 150]), Policy(max_delay="1h")),
        (forecast_of([100, 95]), Policy(max_delay="1h", min_improvement=0.1)),
        (forecast_of([100, 50]), Policy()),
        (Forecast([]), Policy(max_delay="1h")),
    ):
        a = assess(f, T0, policy)
        assert a.decision != "wait" and a.choices == ()
        assert a.best_start == T0 and a.best_intensity == a.now_intensity
        assert a.plan() == a.plan(T0) == plan(f, T0, policy)
        with pytest.raises(ValueError, match="start must be None or created_at"):
            a.plan(T0 + HALF)


def test_plan_with_a_ledger_starts_where_the_ledger_would_choose() -> None:
    f = forecast_of([300, 100, 100, 100, 300])
    policy = Policy(max_delay="2h", strategy="lowest")
    ledger = SlotLedger()
    a = assess(f, T0, policy)
    ledger.claim_nowait("x", a.ledger_zone, a.choices[:1], lease=timedelta(hours=3), now=T0)
    chosen = ledger.choose(a.ledger_zone, a.choices, now=T0)
    assert chosen.start == T0 + 2 * HALF  # the first idle one of three equal slots
    assert plan(f, T0, policy, ledger=ledger) == a.plan(chosen.start)
    # plan() only reads the ledger
    assert len(ledger) == 1


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.floats(0, 500), min_size=1, max_size=14),
    offset=st.integers(0, 29),
    delay=st.integers(0, 300),
    min_improvement=st.sampled_from([0.0, 0.05, 0.3]),
    jitter=st.integers(0, 40),
    seed=st.integers(0, 3),
)
def test_property_every_choice_beats_now_and_plans_inside_the_budget(
    values: list[float],
    offset: int,
    delay: int,
    min_improvement: float,
    jitter: int,
    seed: int,
) -> None:
    now = T0 + timedelta(minutes=offset)
    policy = Policy(
        max_delay=timedelta(minutes=delay),
        min_improvement=min_improvement,
        jitter=timedelta(minutes=jitter),
        strategy="lowest",
    )
    a = assess(forecast_of(values), now, policy)
    assert (a.decision == "wait") == bool(a.choices)
    assert [c.start for c in a.choices] == sorted({c.start for c in a.choices})
    assert a.best_start in [c.start for c in a.choices] or a.decision != "wait"
    for choice in a.choices:
        assert a.now_intensity is not None
        assert choice.score < a.now_intensity
        assert choice.score <= a.now_intensity * (1 - min_improvement) + 1e-9
        p = a.plan(choice.start, rng=random.Random(seed))
        assert now <= p.start <= now + policy.max_delay
        assert abs(p.jitter) <= policy.jitter


# -- derived data lives on the forecast and dies with it --------------------------------------


def test_what_the_planner_computes_is_kept_on_the_forecast_and_dies_with_it() -> None:
    import gc

    from ecoasync._calibrate import _Fit
    from ecoasync._synth import synthetic_trace
    from ecoasync._windows import Window

    def alive() -> tuple[int, int]:
        gc.collect()
        objects = gc.get_objects()
        return (
            sum(isinstance(o, Window) for o in objects),
            sum(isinstance(o, _Fit) for o in objects),
        )

    before = alive()
    trace = synthetic_trace(2, start=T0 - timedelta(days=1), lag_slots=1.0)
    blind = Forecast([Slot(s.start, s.end, s.forecast) for s in trace], provider="t")
    history = trace.between(T0 - timedelta(hours=24), T0)
    ahead = blind.between(T0, T0 + timedelta(hours=7))
    first = plan(ahead, T0, Policy(max_delay="4h"), history=history)
    window, fit = ahead._windows[0], history._fits[0]
    # the next session on the same slices reuses both
    assert plan(ahead, T0 + timedelta(minutes=3), Policy(max_delay="4h"), history=history)
    assert (ahead._windows[0], history._fits[0]) == (window, fit) and len(ahead._windows) == 1
    assert first.decision in ("wait", "now-is-best", "below-min-improvement")
    assert alive() == (before[0] + 1, before[1] + 1)
    del trace, blind, history, ahead, window, fit
    assert alive() == before


def test_the_pure_layers_keep_nothing_at_module_level() -> None:
    """No module-level "last N" caches or mutable state in the values and decisions modules
    (``functools`` caches of pure functions of hashable inputs aside; a table of constants is
    declared ``Final``)."""
    import importlib

    from tests.test_layers import LAYERS

    # the backend seam keeps the tasks it spawned while they run (asyncio holds only weak
    # references to tasks): the running program's state, not a cache of derived data
    seams = {"ecoasync._backend": {"_SPAWNED"}}
    for name in (*LAYERS["values"], *LAYERS["decisions"]):
        module = importlib.import_module(name)
        constants = {
            attr
            for attr, annotation in vars(module).get("__annotations__", {}).items()
            if str(annotation).startswith("Final")
        }
        for attr, value in vars(module).items():
            if attr.startswith("__") or attr in constants or attr in seams.get(name, ()):
                continue
            assert not isinstance(value, dict | list | set | bytearray), f"{name}.{attr}"
