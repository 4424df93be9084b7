"""``PlannedJob``: a plan that travels with a queued job, and the rule a worker applies on its
arrival. Values and pure decisions; no I/O.

A job queue (Celery, procrastinate) holds the wait: ecoasync plans when the job is enqueued,
the queue delivers it at the planned start, and the worker runs it in a ``carbon_session``
that is handed the ``PlannedJob`` and does not wait again.

Layer: decisions (pure). Imports values only (``_checks``, ``_forecast``, ``_ledger``, ``_plan``,
``_records``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from ._checks import is_number, is_whole
from ._forecast import as_utc
from ._ledger import Claim
from ._plan import Plan
from ._records import IntensitySource

__all__ = ["Arrival", "PlannedJob", "arrival", "hop_until"]

_SOURCES = ("actual", "forecast", "mix", "none")


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"PlannedJob.{what} must be an ISO 8601 time, got {value!r}")  # noqa: TRY004
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")), what=what)


def _float(value: object, what: str) -> float | None:
    if value is None:
        return None
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"PlannedJob.{what} must be a finite number or null, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedJob:
    """What a queued job carries from its plan to its worker (JSON-ready through
    :meth:`to_dict` / :meth:`from_dict`).

    ``submitted_at`` is when the work was first submitted (the delay budget counts from it,
    and ``deadline`` is where it ends); ``start`` the planned start, ``planned_intensity`` the
    forecast for the work's window from there and ``now_intensity`` the same from submission.
    ``baseline_intensity`` is the grid at submission (the baseline the savings are counted
    against). ``claim`` is the job's place in the ledger, if it holds one; ``hops`` counts the
    times the job was deferred again on the way.
    """

    job_id: str
    queue: str
    submitted_at: datetime
    start: datetime
    deadline: datetime
    decision: str
    now_intensity: float | None = None
    planned_intensity: float | None = None
    baseline_intensity: float | None = None
    baseline_source: IntensitySource = "none"
    zone: str | None = None
    provider: str | None = None
    claim: Claim | None = None
    hops: int = 0
    replanned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601 UTC)."""
        from ._records import to_jsonable

        data: dict[str, Any] = to_jsonable(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedJob:
        """Read what :meth:`to_dict` wrote (raises ``ValueError`` naming a bad field)."""
        if not isinstance(data, dict):
            raise ValueError(f"a PlannedJob is a JSON object, got {data!r}")  # noqa: TRY004
        raw = data.get("claim")
        claim = None
        if isinstance(raw, dict):
            claim = Claim(
                job_id=str(raw["job_id"]),
                zone=str(raw["zone"]),
                slot=_time(raw["slot"], "claim.slot"),
                start=_time(raw["start"], "claim.start"),
                expected=float(raw["expected"]),
                expires_at=_time(raw["expires_at"], "claim.expires_at"),
                ledger=str(raw["ledger"]),
            )
        source = data.get("baseline_source", "none")
        if source not in _SOURCES:
            raise ValueError(
                f"PlannedJob.baseline_source must be one of {_SOURCES}, got {source!r}"
            )
        hops = data.get("hops", 0)
        if not is_whole(hops) or hops < 0:
            raise ValueError(f"PlannedJob.hops must be an int >= 0, got {hops!r}")
        return cls(
            job_id=str(data["job_id"]),
            queue=str(data["queue"]),
            submitted_at=_time(data["submitted_at"], "submitted_at"),
            start=_time(data["start"], "start"),
            deadline=_time(data["deadline"], "deadline"),
            decision=str(data["decision"]),
            now_intensity=_float(data.get("now_intensity"), "now_intensity"),
            planned_intensity=_float(data.get("planned_intensity"), "planned_intensity"),
            baseline_intensity=_float(data.get("baseline_intensity"), "baseline_intensity"),
            baseline_source=source,
            zone=data.get("zone") if isinstance(data.get("zone"), str) else None,
            provider=data.get("provider") if isinstance(data.get("provider"), str) else None,
            claim=claim,
            hops=hops,
            replanned=bool(data.get("replanned", False)),
        )

    @classmethod
    def of(
        cls,
        plan: Plan,
        *,
        job_id: str,
        queue: str,
        baseline: tuple[float | None, IntensitySource],
        claim: Claim | None = None,
        submitted_at: datetime | None = None,
        deadline: datetime | None = None,
        hops: int = 0,
        replanned: bool = False,
    ) -> PlannedJob:
        """The job's plan as it travels: ``plan`` made at ``plan.created_at`` (a re-plan on the
        way keeps the first ``submitted_at`` and ``deadline``)."""
        return cls(
            job_id=job_id,
            queue=queue,
            submitted_at=submitted_at or plan.created_at,
            start=plan.start,
            deadline=deadline or plan.deadline,
            decision=plan.decision,
            now_intensity=plan.now_intensity,
            planned_intensity=plan.planned_intensity,
            baseline_intensity=baseline[0],
            baseline_source=baseline[1],
            zone=plan.zone,
            provider=plan.provider,
            claim=claim,
            hops=hops,
            replanned=replanned,
        )

    def as_plan(self, *, window: timedelta) -> Plan:
        """The plan a worker's session reports (made at submission, not re-made)."""
        slot = self.claim.start if self.claim is not None else self.start
        return Plan(
            created_at=self.submitted_at,
            start=self.start,
            deadline=self.deadline,
            decision=self.decision,  # type: ignore[arg-type]
            now_intensity=self.now_intensity,
            planned_intensity=self.planned_intensity,
            candidates=0,
            slot_start=slot,
            jitter=self.start - slot,
            window=window,
            provider=self.provider,
            zone=self.zone,
        )

    def hopped(self) -> PlannedJob:
        return replace(self, hops=self.hops + 1)


Arrival = Literal["run", "wait", "hop", "replan"]
"""What a worker does with a job that has arrived: run it now; wait out a short remainder in
the session; send it on again with the same plan (a hop); or plan again with a fresh
forecast (and defer again if the new plan waits)."""

EARLY: timedelta = timedelta(seconds=5)
"""A job that arrives at most this long before its start waits in the session; earlier, it
is sent on again (a hop)."""


def arrival(
    job: PlannedJob,
    now: datetime,
    *,
    intensity: float | None,
    replan_margin: float,
    slot: timedelta,
    early: timedelta = EARLY,
) -> Arrival:
    """What a worker does with ``job`` arriving at ``now`` (pure).

    ``intensity`` is the fresh forecast for the window the job would run in: from its start
    if that is still ahead, else from now. The plan stands while that is at most
    ``replan_margin`` above the planned intensity; past it, the slot "has gone dirty":

    - Before its start (by more than ``early``, default :data:`EARLY`): a hop, the same plan
      sent on again; or, if its slot has gone dirty, plan again within what is left of the
      budget. (Planning again at every hop would undo the ledger's spread: a hop that lands
      inside the green stretch finds "now" best, and every job would start at once.)
    - Within ``early`` of its start: wait out the rest in the session.
    - At or after its start: run; or, if the slot has gone dirty and at least one ``slot`` of
      budget is left, plan again: the job waits for a better slot before its deadline if
      there is one, else runs now. With less than a slot left, it runs.
    """
    planned = job.planned_intensity
    dirty = (
        intensity is not None
        and planned is not None
        and intensity > planned * (1.0 + replan_margin)
    )
    if now < job.start - early:
        return "replan" if dirty else "hop"
    if now < job.start:
        return "wait"
    if dirty and job.deadline - now >= slot:
        return "replan"
    return "run"


def hop_until(start: datetime, now: datetime, max_hop: timedelta) -> datetime:
    """When the queue should deliver a job planned for ``start``: the start itself, or
    ``now + max_hop`` if that comes first (a queue that redelivers what it holds too long
    must never hold a job longer than that)."""
    return min(start, now + max_hop)
