"""Helpers of the fleet tests: the ledger rule written out plainly, to compare the stores with."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from ecoasync._ledger import Choice

T0 = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def bucket_start(when: datetime, bucket: timedelta = HALF_HOUR) -> datetime:
    step = bucket.total_seconds()
    return datetime.fromtimestamp(math.floor(when.timestamp() / step + 1e-9) * step, UTC)


def reference_choice(
    choices: Sequence[Choice],
    loads: Mapping[datetime, int],
    *,
    tolerance: float,
    capacity: int | None = None,
    bucket: timedelta = HALF_HOUR,
) -> Choice:
    """The ``Ledger`` rule as its docstring states it: the lowest ``score * (1 + tolerance *
    load)`` among the buckets with room (all of them if none has), ties to the earliest start."""

    def key(choice: Choice) -> tuple[bool, float, datetime]:
        load = loads.get(bucket_start(choice.start, bucket), 0)
        full = capacity is not None and load >= capacity
        effective = choice.score * (1.0 + tolerance * load) if load else choice.score
        return (full, effective, choice.start)

    return min(choices, key=key)


def choice(minutes: float, score: float, expected: float | None = None) -> Choice:
    return Choice(T0 + timedelta(minutes=minutes), score if expected is None else expected, score)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
