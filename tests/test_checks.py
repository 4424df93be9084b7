"""The one check of user-given numbers every constructor uses (``ecoasync._checks``)."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from ecoasync._checks import is_number, is_whole


@pytest.mark.parametrize("value", [0, 1, -3, 10**30, 0.0, 2.5, -1e-9, 1e308])
def test_ints_and_floats_are_numbers(value: object) -> None:
    assert is_number(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_numbers_whose_range_the_caller_checks(value: float) -> None:
    # each caller says what range it takes ("a finite number of seconds > 0"), so the check of
    # kind lets them through and the caller's range check names the value
    assert is_number(value)
    assert not is_whole(value)


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_never_a_number_or_a_count(value: bool) -> None:
    assert not is_number(value)
    assert not is_whole(value)


@pytest.mark.parametrize(
    "value", [None, "1", b"1", Decimal("1.5"), Fraction(1, 2), 1j, [1], object()]
)
def test_anything_else_is_not_a_number(value: object) -> None:
    assert not is_number(value)
    assert not is_whole(value)


@pytest.mark.parametrize("value", [0, 1, -7, 10**30])
def test_ints_are_whole(value: int) -> None:
    assert is_whole(value)


@pytest.mark.parametrize("value", [1.0, 0.0, 2.5])
def test_a_float_is_not_whole_even_when_it_has_no_fraction(value: float) -> None:
    assert not is_whole(value)
    assert is_number(value)


def test_the_checks_narrow_the_type() -> None:
    value: object = 3
    if is_whole(value):
        assert value + 1 == 4  # mypy knows an int here
    value = 2.5
    if is_number(value):
        assert value * 2 == 5.0


def test_no_module_writes_the_check_again() -> None:
    """A new module (the fleet's, say) uses the checks instead of its own copy of them."""
    src = Path(__file__).resolve().parent.parent / "src" / "ecoasync"
    copies = [
        f"{path.relative_to(src)}:{n}"
        for path in sorted(src.rglob("*.py"))
        if path.name != "_checks.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(
            r"isinstance\([^)]*,\s*bool\)\s*$|isinstance\([^)]*,\s*bool\)\s*or\s+not", line
        )
    ]
    assert copies == []
