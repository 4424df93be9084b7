"""What the shared ledgers have in common: options, time in whole microseconds, buckets, the
fallback to the process's own ledger.

Layer: edges; imports values (``_checks``, ``_ledger``) and the store guard.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from .._checks import is_number, is_whole
from .._ledger import Choice, Claim, SlotLedger
from ._store import DOWN, StoreGuard, check_seconds

if TYPE_CHECKING:
    from .._ledger import Ledger

__all__ = [
    "EPOCH",
    "SharedLedger",
    "bucket_of",
    "from_us",
    "to_us",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """``when`` as whole microseconds since the epoch (exact: a double holds them to 2255)."""
    return (when - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def bucket_of(start: datetime, step: float) -> int:
    """The start (µs since the epoch) of the ``step``-second bucket that holds ``start``: the same
    rounding as :class:`~ecoasync.SlotLedger`, so both count a start in the same bucket."""
    return round(math.floor(start.timestamp() / step + 1e-9) * step * 1e6)


def check_options(
    owner: str, tolerance: object, bucket: object, capacity: object
) -> tuple[float, timedelta, int | None]:
    if not is_number(tolerance) or not math.isfinite(tolerance) or not 0 <= tolerance < 1:
        raise ValueError(f"{owner} tolerance must be a fraction in [0, 1), got {tolerance!r}")
    if not isinstance(bucket, timedelta) or bucket <= timedelta(0) or bucket % _US:
        raise ValueError(
            f"{owner} bucket must be a positive timedelta of whole microseconds, got {bucket!r}"
        )
    if capacity is not None and (not is_whole(capacity) or capacity < 1):
        raise ValueError(f"{owner} capacity must be a positive int or None, got {capacity!r}")
    return float(tolerance), bucket, capacity


def check_claim(job_id: object, zone: object, choices: Sequence[Choice], lease: object) -> None:
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
    if not isinstance(zone, str):
        raise TypeError(f"zone must be a string, got {zone!r}")
    if not choices:
        raise ValueError("claim needs at least one choice")
    if not isinstance(lease, timedelta) or lease <= timedelta(0):
        raise ValueError(f"lease must be a positive timedelta, got {lease!r}")


class SharedLedger:
    """The part of :class:`RedisLedger` and :class:`PostgresLedger` that is not the store:
    options, the guard, and the fallback to the process's own ledger when the store is down.

    Subclasses implement ``_claim``, ``_release`` and ``_loads`` against their store.
    """

    name: str = "shared"

    def __init__(
        self,
        *,
        tolerance: float,
        bucket: timedelta,
        capacity: int | None,
        timeout: float | timedelta,
        retry_after: float | timedelta,
        fallback: Ledger | None,
    ) -> None:
        owner = type(self).__name__
        self.tolerance, self._bucket, self.capacity = check_options(
            owner, tolerance, bucket, capacity
        )
        self._step = self._bucket.total_seconds()
        self.guard = StoreGuard(
            self.name,
            timeout=check_seconds("timeout", timeout, owner=owner),
            retry_after=check_seconds("retry_after", retry_after, owner=owner),
        )
        """Counts outages and fallbacks; see :class:`~ecoasync.fleet.StoreGuard`."""
        self._fallback = fallback
        self._suffix = f" ({self.name} unavailable)"

    @property
    def bucket(self) -> timedelta:
        return self._bucket

    @property
    def fallback(self) -> Ledger:
        """The ledger used while the store is down (default: a process-local
        :class:`~ecoasync.SlotLedger` with the same tolerance, bucket and capacity)."""
        if self._fallback is None:
            self._fallback = SlotLedger(
                tolerance=self.tolerance, bucket=self._bucket, capacity=self.capacity
            )
        return self._fallback

    async def claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        """Choose among ``choices`` and hold the chosen bucket for ``job_id`` (see
        :class:`~ecoasync.Ledger`). Never waits past ``timeout`` for the store: then the
        process's own ledger answers, and the claim's ``ledger`` says so."""
        check_claim(job_id, zone, choices, lease)
        await self._prepare()
        claim = await self.guard.call(
            lambda: self._claim(job_id, zone, choices, lease, now), what="claim"
        )
        if claim is not DOWN:
            assert isinstance(claim, Claim)
            return claim
        own = await self.fallback.claim(job_id, zone, choices, lease=lease, now=now)
        return dataclasses.replace(own, ledger=own.ledger + self._suffix)

    async def release(self, claim: Claim) -> None:
        """Give the claim's place back (idempotent); a fallback claim goes back to the fallback."""
        if claim.ledger.endswith(self._suffix):
            own = claim.ledger.removesuffix(self._suffix)
            await self.fallback.release(dataclasses.replace(claim, ledger=own))
            return
        await self._prepare()
        await self.guard.call(lambda: self._release(claim), what="release")

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        """Live claims per bucket of ``zone`` starting in ``[start, end)`` (the fallback's while
        the store is down)."""
        await self._prepare()
        found = await self.guard.call(lambda: self._loads(zone, start, end, now), what="loads")
        if found is DOWN:
            return await self.fallback.loads(zone, start, end, now=now)
        assert isinstance(found, dict)
        return found

    def _buckets(self, start: datetime, end: datetime) -> list[int]:
        """The bucket starts (µs) in ``[start, end)``."""
        step = round(self._step * 1e6)
        first = bucket_of(start, self._step)
        if first < to_us(start):
            first += step
        return list(range(first, to_us(end), step))

    async def _prepare(self) -> None:
        """What must be ready before a store call is timed (imports; no network)."""

    async def _claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        raise NotImplementedError

    async def _release(self, claim: Claim) -> None:
        raise NotImplementedError

    async def _loads(
        self, zone: str, start: datetime, end: datetime, now: datetime
    ) -> dict[datetime, int]:
        raise NotImplementedError
