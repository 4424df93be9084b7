"""Parsing of human durations such as ``"90m"``, ``"4h"``, ``"1h30m"`` or ``"PT4H"``.

Layer: values. Imports values only (``_checks``).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from types import MappingProxyType

from ._checks import is_number

__all__ = ["format_duration", "parse_duration"]

_UNITS = MappingProxyType({"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0})
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|s)", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object, *, field: str) -> timedelta:
    """Turn a ``timedelta``, a string like ``"4h"``/``"90m"``/``"1h30m"``/``"PT4H"`` into a timedelta.

    Raises ``TypeError``/``ValueError`` naming ``field`` for anything else. Numbers are refused
    on purpose: ``4`` could mean hours or seconds.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            return -parse_duration(text[1:], field=field)
        iso = _ISO.match(text.upper())
        if iso and any(iso.groups()):
            d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        compact = text.replace(" ", "")
        parts = _PART.findall(compact)
        if parts and "".join(n + u for n, u in parts).lower() == compact.lower():
            return timedelta(seconds=sum(float(n) * _UNITS[u.lower()] for n, u in parts))
        raise ValueError(
            f"{field} must be a duration like '90m', '4h', '1h30m' or 'PT4H', got {value!r}"
        )
    if is_number(value) and math.isfinite(value):
        raise TypeError(
            f"{field} must be a timedelta or a string like '4h', got the number {value!r}; "
            f"write '{value}h' or '{value}m' or timedelta(...)"
        )
    raise TypeError(
        f"{field} must be a timedelta or a string like '4h', got {type(value).__name__}: {value!r}"
    )


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
