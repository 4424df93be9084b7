"""Durations (``Policy(max_delay="4h")``): any text is a timedelta or a clear PolicyError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecoasync import Policy, PolicyError
from ecoasync._durations import parse_duration


@pytest.mark.parametrize(
    "text", ["9" * 400 + "h", "P999999999999D", "99999999999d", "PT" + "9" * 30 + "S"]
)
def test_a_duration_too_long_for_a_timedelta_is_a_policy_error(text: str) -> None:
    # these raised OverflowError
    with pytest.raises(PolicyError, match=r"max_delay is too long") as caught:
        Policy(max_delay=text)
    assert len(str(caught.value)) < 200  # the value is shown cut short


@pytest.mark.parametrize("text", ["--4h", "- -4h", "-+4h"])
def test_one_minus_sign_at_most(text: str) -> None:
    # "--4h" was read as 4 h
    with pytest.raises(PolicyError, match="must be a duration like"):
        Policy(max_delay=text)
    with pytest.raises(ValueError, match="must be a duration like"):
        parse_duration(text, field="d")


def test_negative_and_plain_durations_still_parse() -> None:
    assert parse_duration("-4h", field="d") == timedelta(hours=-4)
    assert parse_duration("- 90m", field="d") == timedelta(minutes=-90)
    assert parse_duration("-PT1H30M", field="d") == timedelta(hours=-1.5)
    assert parse_duration("1h30m", field="d") == parse_duration("PT1H30M", field="d")


@given(st.text(alphabet="0123456789.-+PTDHMSdhms ", max_size=40))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_duration(text, field="d")
    except ValueError as exc:  # never OverflowError: Policy turns ValueError into PolicyError
        message = str(exc)
    else:
        assert isinstance(parsed, timedelta)
        return
    assert message.startswith("d ")
