"""Parsing of human durations such as ``"90m"``, ``"4h"``, ``"1h30m"`` or ``"PT4H"``.

Layer: values. Imports values only (``_checks``).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from types import MappingProxyType

from ._checks import is_number

__all__ = ["format_duration", "human_duration", "parse_duration"]

_UNITS = MappingProxyType({"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0})
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|s)", re.IGNORECASE)
_ZERO = re.compile(r"^0+(\.0*)?$")
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object, *, field: str) -> timedelta:
    """Turn a ``timedelta``, a string like ``"4h"``/``"90m"``/``"1h30m"``/``"PT4H"`` into a timedelta.

    Raises ``TypeError``/``ValueError`` naming ``field`` for anything else. Numbers are refused
    on purpose, ``4`` could mean hours or seconds, except zero (``0`` or ``"0"``), which is
    zero in every unit.
    """
    if isinstance(value, timedelta):
        return value
    if is_number(value) and value == 0:
        return timedelta(0)
    if isinstance(value, str):
        text = value.strip()
        sign = 1.0
        if text.startswith("-"):  # one minus sign, no more ("--4h" is a typo, not 4 h)
            sign, text = -1.0, text[1:].lstrip()
        if _ZERO.match(text):
            return timedelta(0)
        seconds = _seconds(text)
        if seconds is None:
            raise ValueError(
                f"{field} must be a duration like '90m', '4h', '1h30m' or 'PT4H', got {_shown(value)}"
            )
        try:
            if not math.isfinite(seconds):
                raise OverflowError  # one message for both ways of being too long
            return timedelta(seconds=sign * seconds)
        except OverflowError:
            raise ValueError(
                f"{field} is too long: {_shown(value)} is more than the {_MAX_DAYS:,} days a "
                "duration can hold"
            ) from None
    if is_number(value) and math.isfinite(value):
        raise TypeError(
            f"{field} must be a timedelta or a string like '4h', got the number {value!r}; "
            f"write '{value}h' or '{value}m' or timedelta(...)"
        )
    raise TypeError(
        f"{field} must be a timedelta or a string like '4h', got {type(value).__name__}: {value!r}"
    )


_MAX_DAYS = timedelta.max.days


def _shown(text: str) -> str:
    """``repr(text)``, cut short if long (an error message should not be 400 nines)."""
    shown = repr(text)
    return shown if len(shown) <= 40 else f"{shown[:30]}...' ({len(text)} characters)"


def _seconds(text: str) -> float | None:
    """The seconds ``text`` says (ISO 8601 or compact form, no sign), or None if it is not a
    duration. May be infinite or too large for a timedelta."""
    iso = _ISO.match(text.upper())
    if iso and any(iso.groups()):
        d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        return d * 86400.0 + h * 3600.0 + m * 60.0 + s
    compact = text.replace(" ", "")
    parts = _PART.findall(compact)
    if parts and "".join(n + u for n, u in parts).lower() == compact.lower():
        return sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    return None


def format_duration(value: timedelta) -> str:
    """Short human form: ``4h``, ``1h30m``, ``90s``, ``0s``."""
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes:
        parts.append(f"{int(minutes)}m")
    if seconds or not parts:
        parts.append(f"{seconds:.3g}s")
    return sign + "".join(parts)


def human_duration(value: timedelta | float) -> str:
    """A delay for people (a timedelta or seconds): ``3 h 58 min``, ``4 h``, ``25 min``,
    ``40 s``, ``0 min``; to the minute from one minute on."""
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if total < 0 else ""
    total = abs(total)
    if 0.5 <= total < 59.5:
        return f"{sign}{total:.0f} s"
    hours, minutes = divmod(round(total / 60), 60)
    if not hours:
        return f"{sign}{minutes} min"
    return f"{sign}{hours} h" + (f" {minutes} min" if minutes else "")
