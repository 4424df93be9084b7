"""A waiting job's claim on its slot in a :class:`~ecoasync.Ledger`: taken when it is planned,
given back when it ends. Sessions (with or without routes) and the queue adapters claim and
release through these, so that every claim is leased alike and a ledger that fails costs the
spreading, never the job.

Layer: session. Imports values (the ledger, the log) and the planner's assessment; nothing
else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from ._ledger import SlotLedger, default_ledger
from ._log import get_logger

if TYPE_CHECKING:
    from ._ledger import Claim, Ledger
    from ._planner import Assessment
    from ._policy import Policy

__all__ = ["LEASE_MARGIN", "claim_slot", "ledger_of", "release_slot", "release_slot_nowait"]

log = get_logger()

LEASE_MARGIN: Final = timedelta(minutes=15)
"""How long a claim outlives the latest the work can start plus its window (a body that runs
longer only lets its slot look emptier sooner)."""

_LEDGER = default_ledger()


def ledger_of(policy: Policy) -> Ledger:
    """The ledger ``policy`` claims in: its own, else the process's :func:`default_ledger`."""
    ledger = policy.ledger  # (an empty SlotLedger is falsy: it has a length)
    return _LEDGER if ledger is None else ledger


async def claim_slot(
    ledger: Ledger,
    job_id: str,
    assessment: Assessment,
    *,
    who: dict[str, str],
    zone: str | None = None,
) -> Claim | None:
    """Claim one of a waiting job's choices in ``ledger`` (the in-process :class:`SlotLedger`
    without awaiting) under ``zone`` (by default the assessment's ledger zone), as of the
    assessment's creation and leased for the latest it can start plus its window and a
    margin. None if the ledger fails: that is logged (``ecoasync.ledger_failed``, with
    ``who``) and costs the spreading, never the job."""
    now = assessment.created_at
    lease = assessment.deadline - now + assessment.window + LEASE_MARGIN
    where = assessment.ledger_zone if zone is None else zone
    choices = assessment.choices
    try:
        if type(ledger) is SlotLedger:  # in process: nothing to await (a subclass may)
            return ledger.claim_nowait(job_id, where, choices, lease=lease, now=now)
        return await ledger.claim(job_id, where, choices, lease=lease, now=now)
    except Exception as exc:
        _failed(ledger, exc, "plan-without-spreading", who)
        return None


def release_slot_nowait(ledger: Ledger, claim: Claim) -> bool:
    """Give ``claim`` back at once if ``ledger`` is the in-process :class:`SlotLedger`.
    Returns whether it was; if not, await :func:`release_slot`."""
    if type(ledger) is SlotLedger:
        ledger.release_nowait(claim)
        return True
    return False


async def release_slot(ledger: Ledger, claim: Claim, *, who: dict[str, str]) -> None:
    """Give ``claim`` back to ``ledger``; a failure is logged, and its lease ends it."""
    try:
        await ledger.release(claim)
    except Exception as exc:
        _failed(ledger, exc, "lease-expires", who)


def _failed(ledger: Ledger, exc: Exception, action: str, who: dict[str, str]) -> None:
    name = getattr(ledger, "name", None)
    log.warning(
        "ecoasync.ledger_failed",
        ledger=name if isinstance(name, str) else type(ledger).__name__,
        error=f"{type(exc).__name__}: {exc}"[:300],
        action=action,
        **who,
    )
