"""``SlotLedger``: how many planned jobs each slot holds, so concurrent plans spread out.

Without it, every job submitted together computes the same plan and wakes in the same
greenest half-hour (a thundering herd; jitter only spreads them over a few minutes of that
slot). With it, :func:`ecoasync.plan` picks, among the starts whose score is within
``tolerance`` of the best, the one in the least loaded slot. The ledger is in-process: the
live session uses :func:`default_ledger` (reserve when planned, release on completion); the
simulator uses its own. Past one process it would move into a shared store (see DESIGN.md).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["Choice", "Claim", "Ledger", "Reservation", "SlotLedger", "default_ledger"]


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
    - ``release`` is idempotent. Expired claims never count.
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


@dataclass(frozen=True, slots=True)
class Reservation:
    """One job's place in a slot, as returned by :meth:`SlotLedger.reserve`."""

    slot: datetime
    id: int


class SlotLedger:
    """Counts reserved jobs per slot (``bucket``-long, aligned to the epoch); thread-safe.

    Args:
        tolerance: how much dirtier (a fraction, ``0.02`` = 2 %) each job already planned in a
            slot makes that slot look to the next plan; ``0`` never spreads.
        bucket: the slot length used to count load (default 30 minutes).
    """

    def __init__(
        self, *, tolerance: float = 0.02, bucket: timedelta = timedelta(minutes=30)
    ) -> None:
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or not 0 <= tolerance < 1
        ):
            raise ValueError(
                f"SlotLedger tolerance must be a fraction in [0, 1), got {tolerance!r}"
            )
        if not isinstance(bucket, timedelta) or bucket <= timedelta(0):
            raise ValueError(f"SlotLedger bucket must be a positive timedelta, got {bucket!r}")
        self.tolerance = float(tolerance)
        self.bucket = bucket
        self._step = bucket.total_seconds()
        self._loads: dict[float, int] = {}
        self._held: dict[int, float] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def _key(self, t: float) -> float:
        return math.floor(t / self._step + 1e-9) * self._step

    def load(self, when: datetime) -> int:
        """How many reserved jobs start in the slot that holds ``when``."""
        return self._loads.get(self._key(when.timestamp()), 0)

    def loads(self) -> dict[datetime, int]:
        """Every slot with reservations, and how many."""
        with self._lock:
            return {datetime.fromtimestamp(k, UTC): v for k, v in sorted(self._loads.items())}

    def choose(
        self, candidates: Sequence[tuple[float, float, float]], best_score: float
    ) -> tuple[float, float]:
        """The ``(start, expected)`` the planner should take among ``(start, expected, score)``.

        Each job already reserved in a candidate's slot makes it look ``tolerance`` (a
        fraction) dirtier: the effective score is ``score * (1 + tolerance * load)``. An idle
        slot wins over a busy one only while it is that close, so a job never goes to a slot
        more than ``tolerance * load`` worse than the best. Ties go to the earliest start.
        """
        if not candidates:  # pragma: no cover - the planner always passes the best
            raise ValueError("no candidate to choose from")
        loads, key, tol = self._loads, self._key, self.tolerance
        best_t, best_m, _ = candidates[0]
        best = math.inf
        for t, m, score in candidates:  # a loop: min(key=...) costs a call per candidate
            load = loads.get(key(t), 0) if loads else 0
            effective = score * (1.0 + tol * load) if load else score  # (x * 1.0 is x)
            if effective < best or (effective == best and t < best_t):
                best_t, best_m, best = t, m, effective
        return best_t, best_m

    def reserve(self, plan: Plan) -> Reservation:
        """Count ``plan``'s job in the slot it starts in (before jitter)."""
        key = self._key(plan.slot_start.timestamp())
        with self._lock:
            ident = next(self._ids)
            self._loads[key] = self._loads.get(key, 0) + 1
            self._held[ident] = key
        return Reservation(datetime.fromtimestamp(key, UTC), ident)

    def release(self, reservation: Reservation) -> None:
        """Forget a reservation (idempotent)."""
        with self._lock:
            key = self._held.pop(reservation.id, None)
            if key is None:
                return
            left = self._loads[key] - 1
            if left:
                self._loads[key] = left
            else:
                del self._loads[key]

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"SlotLedger(tolerance={self.tolerance:g}, jobs={len(self._held)}, slots={len(self._loads)})"


_DEFAULT = SlotLedger()


def default_ledger() -> SlotLedger:
    """The process-wide ledger live sessions reserve their slots in."""
    return _DEFAULT
