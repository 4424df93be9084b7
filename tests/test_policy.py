from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from ecoasync import Policy, PolicyError
from ecoasync.providers import StaticForecastProvider, synthetic_day


def test_defaults() -> None:
    policy = Policy()
    assert policy.max_delay == timedelta(0)
    assert policy.jitter == timedelta(minutes=5)
    assert policy.min_improvement == 0.0
    assert policy.provider is None
    assert policy.on_forecast_error == "run_now"
    assert policy.budget_g is None
    assert dict(policy.model_fallbacks) == {}
    assert policy.strategy == "calibrated"
    assert policy.caution == 1.0
    assert "caution=1.0" in repr(policy)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4h", timedelta(hours=4)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("PT4H", timedelta(hours=4)),
        ("PT1H30M", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2d", timedelta(days=2)),
        (timedelta(minutes=7), timedelta(minutes=7)),
    ],
)
def test_max_delay_forms(text: Any, expected: timedelta) -> None:
    assert Policy(max_delay=text).max_delay == expected


def test_policy_is_frozen() -> None:
    policy = Policy(max_delay="1h")
    with pytest.raises(AttributeError):
        policy.max_delay = timedelta(hours=2)  # type: ignore[misc]


BAD: list[tuple[str, object, str]] = [
    ("max_delay", "-1h", ">= 0"),
    ("max_delay", timedelta(hours=-1), ">= 0"),
    ("max_delay", "soon", "duration like"),
    ("max_delay", 4, "number 4"),
    ("max_delay", math.nan, "timedelta"),
    ("max_delay", None, "timedelta"),
    ("max_delay", "30d", "at most"),
    ("jitter", "-5m", ">= 0"),
    ("jitter", [1], "timedelta"),
    ("min_improvement", -0.1, "[0, 1)"),
    ("min_improvement", 1.0, "[0, 1)"),
    ("min_improvement", math.nan, "finite"),
    ("min_improvement", math.inf, "finite"),
    ("min_improvement", "0.1", "type str"),
    ("min_improvement", True, "type bool"),
    ("caution", -0.5, "[0, inf)"),
    ("caution", math.nan, "finite"),
    ("caution", math.inf, "finite"),
    ("caution", "1", "type str"),
    ("caution", True, "type bool"),
    ("dirty_threshold", -1, "finite number"),
    ("dirty_threshold", math.inf, "finite number"),
    ("dirty_threshold", "high", "type str"),
    ("budget_g", 0, "(0, inf)"),
    ("budget_g", -2.5, "(0, inf)"),
    ("budget_g", math.nan, "finite"),
    ("on_forecast_error", "ignore", "'run_now' or 'raise'"),
    ("expected_duration", "0m", "positive"),
    ("expected_duration", "-1h", ">= 0"),
    ("forecast_timeout", "0s", "positive"),
    ("provider", "uk", "forecast provider"),
    ("model_fallbacks", ["gpt-4.1"], "mapping"),
    ("model_fallbacks", {"gpt-4.1": ""}, "non-empty"),
    ("model_fallbacks", {"gpt-4.1": "gpt-4.1"}, "to itself"),
    ("model_fallbacks", {"a": "b", "b": "c", "c": "a"}, "cycle: a -> b -> c -> a"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_every_bad_value_names_field_value_and_what_is_allowed(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(PolicyError) as info:
        Policy(**{field: value})  # type: ignore[arg-type]
    message = str(info.value)
    assert field in message
    assert allowed in message
    assert info.value.field == field
    assert info.value.value is value or info.value.value == value or field == "model_fallbacks"
    assert isinstance(info.value, ValueError)


def test_unknown_key_suggests_the_close_field() -> None:
    with pytest.raises(
        PolicyError, match=r"no field 'max_dealy'.*did you mean 'max_delay'"
    ) as info:
        Policy(max_dealy="4h")  # type: ignore[arg-type]
    assert "Allowed: max_delay" in str(info.value)
    assert info.value.field == "max_dealy"


def test_from_mapping_and_evolve_validate() -> None:
    policy = Policy.from_mapping({"max_delay": "2h", "budget_g": 3})
    assert policy.max_delay == timedelta(hours=2)
    assert policy.budget_g == 3.0
    later = policy.evolve(max_delay="3h")
    assert later.max_delay == timedelta(hours=3)
    assert later.budget_g == 3.0
    with pytest.raises(PolicyError, match="budget_g"):
        policy.evolve(budget_g=-1)
    with pytest.raises(PolicyError, match="no field 'budget'"):
        policy.evolve(budget=1)
    with pytest.raises(PolicyError, match="no field 'colour'"):
        Policy.from_mapping({"colour": "green"})


def test_provider_is_compared_by_identity_and_policies_hash() -> None:
    provider = StaticForecastProvider(synthetic_day())
    assert Policy(provider=provider).provider is provider
    assert Policy(provider=provider, max_delay="1h") == Policy(provider=provider, max_delay="60m")
    assert Policy(provider=provider) != Policy()
    assert len({Policy(max_delay="1h"), Policy(max_delay="60m")}) == 1


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o-mini"),
        ("gpt-4o-mini", None),
        ("gpt-4.1", "gpt-4.1-nano"),
        ("gpt-4.1-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4", None),
        ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-latest"),
        ("claude-3-5-sonnet-latest", "claude-3-5-haiku-latest"),
        ("o3", None),
    ],
)
def test_fallback_for_follows_chains_and_dated_ids(model: str, expected: str | None) -> None:
    policy = Policy(
        model_fallbacks={
            "gpt-4o": "gpt-4o-mini",
            "gpt-4.1": "gpt-4.1-mini",
            "gpt-4.1-mini": "gpt-4.1-nano",
            "claude-3-5-sonnet": "claude-3-5-haiku-latest",
        }
    )
    assert policy.fallback_for(model) == expected


def test_model_fallbacks_is_read_only() -> None:
    source = {"gpt-4o": "gpt-4o-mini"}
    policy = Policy(model_fallbacks=source)
    source["gpt-4o"] = "changed"
    assert policy.model_fallbacks["gpt-4o"] == "gpt-4o-mini"
    with pytest.raises(TypeError):
        policy.model_fallbacks["x"] = "y"  # type: ignore[index]
