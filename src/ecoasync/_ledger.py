"""The slot ledger: where planned jobs count themselves per slot, so concurrent plans spread out.

Without it, every job submitted together computes the same plan and wakes in the same greenest
half-hour (a thundering herd; jitter only spreads them over a few minutes of that slot). With
it, a waiting job claims one of the starts the planner would accept (its choices, :class:`Choice`):
the one whose score, made dirtier by the jobs already counted in its slot, is lowest.

:class:`Ledger` is the contract every ledger keeps (in-process, Redis, Postgres);
:class:`SlotLedger` is the in-process one. Sessions claim in ``Policy.ledger`` (by default
:func:`default_ledger`) and release on completion; the simulator and ``plan(..., ledger=...)``
use its synchronous :meth:`~SlotLedger.choose` and :meth:`~SlotLedger.claim_nowait`.

Layer: values (the contract, and the in-process ledger: a counter in memory, no I/O). Imports
nothing from ecoasync.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import anyio.lowlevel

from ._checks import is_number, is_whole

__all__ = ["Choice", "Claim", "Ledger", "SlotLedger", "default_ledger"]


@dataclass(frozen=True, slots=True)
class Choice:
    """One start the planner would accept for a waiting job (it beats now and meets
    ``min_improvement``). ``score`` is what the planner minimises: ``expected`` plus the
    strategy's uncertainty charge, in gCO2eq/kWh."""

    start: datetime
    expected: float
    score: float


@dataclass(frozen=True, slots=True)
class Claim:
    """A job's place in a slot, as a :class:`Ledger` granted it.

    ``slot`` is the start of the ledger bucket the job counts in; ``start`` and ``expected``
    are those of the :class:`Choice` it was given. The claim counts until it is released or
    ``expires_at`` passes (a crashed worker leaks nothing past its lease). ``ledger`` names
    the store that granted it (``"memory"``, ``"redis"``, ``"postgres"``; a fallback says so,
    e.g. ``"memory (redis unavailable)"``).
    """

    job_id: str
    zone: str
    slot: datetime
    start: datetime
    expected: float
    expires_at: datetime
    ledger: str


@runtime_checkable
class Ledger(Protocol):
    """Where planned jobs count themselves per slot, so that concurrent plans spread out.

    The contract every implementation keeps (the in-process :class:`SlotLedger`, Redis,
    Postgres), checked by one shared test suite:

    - ``claim`` is atomic: among ``choices`` (non-empty), it picks the one whose effective score
      ``score * (1 + tolerance * load)`` is lowest, ``load`` being the live claims in that
      choice's bucket of ``zone``; ties go to the earliest start. It counts ``job_id`` there
      until ``release`` or ``now + lease``. With a per-slot capacity, full buckets are skipped
      (if all are full, the lowest effective score is taken anyway).
    - It is idempotent per ``(zone, job_id)``: a job that already holds a live claim gets that
      same claim back (its lease extended to at least ``now + lease``), so a redelivered job
      never books twice.
    - ``release`` is idempotent, and gives back that claim only: a stale claim of a job that
      has claimed again since (a re-plan) releases nothing. Expired claims never count.
    - ``now`` is the caller's clock (a virtual clock in tests), never the store's.
    """

    @property
    def name(self) -> str: ...

    @property
    def bucket(self) -> timedelta: ...

    async def claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        """Choose among ``choices`` and hold the chosen bucket for ``job_id`` (see above)."""
        ...

    async def release(self, claim: Claim) -> None:
        """Give the claim's place back (idempotent)."""
        ...

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        """Live claims per bucket of ``zone`` whose bucket starts in ``[start, end)``."""
        ...


class SlotLedger:
    """The in-process :class:`Ledger`: claims counted per zone and ``bucket``-long slot (aligned
    to the epoch), in memory; thread-safe. Its choice rule is :meth:`choose`.

    Args:
        tolerance: how much dirtier (a fraction, ``0.02`` = 2 %) each job already counted in a
            slot makes that slot look to the next claim; ``0`` never spreads.
        bucket: the slot length claims are counted in (default 30 minutes).
        capacity: at most this many jobs per slot; ``None`` (the default) sets no limit. A full
            slot is taken only when every choice is full.

    Besides the :class:`Ledger` methods it has synchronous ones for code without an event loop
    (the simulator): :meth:`claim_nowait`, :meth:`release_nowait` and :meth:`loads_nowait`.
    Leases end by the callers' ``now``: a claim that has expired by the latest ``now`` seen is
    gone.
    """

    name = "memory"

    def __init__(
        self,
        *,
        tolerance: float = 0.02,
        bucket: timedelta = timedelta(minutes=30),
        capacity: int | None = None,
    ) -> None:
        if not is_number(tolerance) or not math.isfinite(tolerance) or not 0 <= tolerance < 1:
            raise ValueError(
                f"SlotLedger tolerance must be a fraction in [0, 1), got {tolerance!r}"
            )
        if not isinstance(bucket, timedelta) or bucket <= timedelta(0):
            raise ValueError(f"SlotLedger bucket must be a positive timedelta, got {bucket!r}")
        if capacity is not None and (not is_whole(capacity) or capacity < 1):
            raise ValueError(f"SlotLedger capacity must be None or an int >= 1, got {capacity!r}")
        self.tolerance = float(tolerance)
        self.bucket = bucket
        self.capacity = capacity
        self._step = bucket.total_seconds()
        self._claims: dict[tuple[str, str], Claim] = {}  # (zone, job id) -> its live claim
        self._loads: dict[str, dict[float, int]] = {}  # zone -> bucket start (POSIX s) -> claims
        self._expiry: list[tuple[datetime, str, str]] = []  # a heap of (expires_at, zone, job id)
        self._lock = threading.Lock()

    def _key(self, when: datetime) -> float:
        """The start of the bucket that holds ``when``, in POSIX seconds."""
        return math.floor(when.timestamp() / self._step + 1e-9) * self._step

    def choose(self, zone: str, choices: Sequence[Choice], *, now: datetime) -> Choice:
        """The choice a claim in ``zone`` made at ``now`` takes (nothing is counted).

        Each live claim in a choice's bucket makes it look ``tolerance`` (a fraction) dirtier:
        the effective score is ``score * (1 + tolerance * load)``. The lowest wins, ties to the
        earliest start; a full bucket (``capacity``) only when every one is full. An idle slot
        wins over a busy one only while it is that close, so a job never goes to a slot more
        than ``tolerance * load`` worse than the best.
        """
        with self._lock:
            self._expire(now)
            return self._choose(zone, choices)

    def _choose(self, zone: str, choices: Sequence[Choice]) -> Choice:
        if not choices:
            raise ValueError("no choice to choose from: only a waiting plan has choices")
        loads, key, tol, capacity = self._loads.get(zone), self._key, self.tolerance, self.capacity
        best, best_effective = choices[0], math.inf
        best_full = capacity is not None  # (so that the first choice with room wins)
        for choice in choices:  # a loop: min(key=...) costs a call per choice
            load = loads.get(key(choice.start), 0) if loads else 0
            score = choice.score
            effective = score * (1.0 + tol * load) if load else score  # (x * 1.0 is x)
            full = capacity is not None and load >= capacity
            if full != best_full:
                better = best_full  # a bucket with room beats a full one
            else:
                better = effective < best_effective or (
                    effective == best_effective and choice.start < best.start
                )
            if better:
                best, best_effective, best_full = choice, effective, full
        return best

    def claim_nowait(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        """:meth:`claim` without awaiting (it never blocks)."""
        with self._lock:
            self._expire(now)
            held = self._claims.get((zone, job_id))
            if held is not None:  # a redelivered job keeps its place
                if held.expires_at < now + lease:
                    held = replace(held, expires_at=now + lease)
                    self._claims[zone, job_id] = held
                    heapq.heappush(self._expiry, (held.expires_at, zone, job_id))
                return held
            choice = self._choose(zone, choices)
            key = self._key(choice.start)
            counts = self._loads.setdefault(zone, {})
            counts[key] = counts.get(key, 0) + 1
            claim = Claim(
                job_id=job_id,
                zone=zone,
                slot=datetime.fromtimestamp(key, UTC),
                start=choice.start,
                expected=choice.expected,
                expires_at=now + lease,
                ledger=self.name,
            )
            self._claims[zone, job_id] = claim
            heapq.heappush(self._expiry, (claim.expires_at, zone, job_id))
            return claim

    def release_nowait(self, claim: Claim) -> None:
        """:meth:`release` without awaiting: the job's place in its zone is given back (if
        ``claim`` is still the one it holds)."""
        with self._lock:
            held = self._claims.get((claim.zone, claim.job_id))
            if held is not None and (held.slot, held.start) == (claim.slot, claim.start):
                self._drop(held)

    def loads_nowait(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        """:meth:`loads` without awaiting."""
        with self._lock:
            self._expire(now)
            a, b = start.timestamp(), end.timestamp()
            counts = self._loads.get(zone, {})
            return {datetime.fromtimestamp(k, UTC): counts[k] for k in sorted(counts) if a <= k < b}

    async def claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        *,
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        """Choose among ``choices`` (:meth:`choose`) and count ``job_id`` there until it is
        released or ``now + lease`` (see :class:`Ledger`). Never blocks; a checkpoint."""
        await anyio.lowlevel.checkpoint()
        return self.claim_nowait(job_id, zone, choices, lease=lease, now=now)

    async def release(self, claim: Claim) -> None:
        """Give the claim's place back (idempotent). Never blocks; a checkpoint."""
        await anyio.lowlevel.checkpoint()
        self.release_nowait(claim)

    async def loads(
        self, zone: str, start: datetime, end: datetime, *, now: datetime
    ) -> dict[datetime, int]:
        """Live claims per bucket of ``zone`` whose bucket starts in ``[start, end)``."""
        await anyio.lowlevel.checkpoint()
        return self.loads_nowait(zone, start, end, now=now)

    def _expire(self, now: datetime) -> None:
        """Drop the claims whose lease has ended by ``now`` (called with the lock held)."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            expires_at, zone, job_id = heapq.heappop(expiry)
            held = self._claims.get((zone, job_id))
            if held is not None and held.expires_at == expires_at:  # (not since extended)
                self._drop(held)

    def _drop(self, claim: Claim) -> None:
        """Forget a live claim (called with the lock held)."""
        del self._claims[claim.zone, claim.job_id]
        counts = self._loads[claim.zone]
        key = self._key(claim.start)  # (what it was counted under)
        left = counts[key] - 1
        if left:
            counts[key] = left
        else:
            del counts[key]
            if not counts:
                del self._loads[claim.zone]

    def __len__(self) -> int:
        """How many claims are held (the expired ones until a call with a later ``now``)."""
        return len(self._claims)

    def __repr__(self) -> str:
        slots = sum(len(counts) for counts in self._loads.values())
        return f"SlotLedger(tolerance={self.tolerance:g}, jobs={len(self._claims)}, slots={slots})"


_DEFAULT = SlotLedger()


def default_ledger() -> SlotLedger:
    """The process-wide ledger sessions claim their slots in when their policy names none."""
    return _DEFAULT
