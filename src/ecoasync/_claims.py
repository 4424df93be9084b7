"""A waiting job's claim on its slot in a :class:`~ecoasync.Ledger`: taken when it is planned,
given back when it ends. Sessions (with or without routes) and the queue adapters claim and
release through these, so that every claim is leased alike and a ledger that fails costs the
spreading, never the job.

Layer: session. Imports values (the ledger, the log) and the planner's assessment; nothing
else.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import anyio

from ._ledger import SlotLedger, default_ledger
from ._log import get_logger

if TYPE_CHECKING:
    from ._ledger import Claim, Ledger
    from ._planner import Assessment
    from ._policy import Policy

__all__ = [
    "LEASE_MARGIN",
    "claim_slot",
    "lease_expires",
    "ledger_of",
    "release_slot",
    "release_slot_nowait",
]

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
    by: float,
    who: dict[str, str],
    zone: str | None = None,
) -> Claim | None:
    """Claim one of a waiting job's choices in ``ledger`` (the in-process :class:`SlotLedger`
    without awaiting) under ``zone`` (by default the assessment's ledger zone), as of the
    assessment's creation and leased for the latest it can start plus its window and a
    margin. A ledger that awaits gets until ``by`` (``anyio.current_time()``: the caller's
    entry deadline, so that a slow or hung ledger never stretches the entry past its bound).
    None if the ledger fails or is not done by then: that is logged
    (``ecoasync.ledger_failed``, with ``who``) and costs the spreading, never the job."""
    now = assessment.created_at
    lease = assessment.deadline - now + assessment.window + LEASE_MARGIN
    where = assessment.ledger_zone if zone is None else zone
    choices = assessment.choices
    try:
        if type(ledger) is SlotLedger:  # in process: nothing to await (a subclass may)
            return ledger.claim_nowait(job_id, where, choices, lease=lease, now=now)
        with anyio.CancelScope(deadline=by):
            return await ledger.claim(job_id, where, choices, lease=lease, now=now)
        # (a claim the ledger made after all, too late, ends with its lease)
        raise TimeoutError("no answer before the entry's forecast_timeout ran out")
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


async def release_slot(
    ledger: Ledger, claim: Claim, *, by: float | None = None, who: dict[str, str]
) -> None:
    """Give ``claim`` back to ``ledger``, waiting until ``by`` at most
    (``anyio.current_time()``; None: the ledger's own bound). A failure, or no answer by
    then, is logged, and the claim's lease ends it."""
    try:
        with anyio.CancelScope(deadline=math.inf if by is None else by):
            await ledger.release(claim)
            return
        raise TimeoutError("no answer before the session's exit bound")
    except Exception as exc:
        _failed(ledger, exc, "lease-expires", who)


def lease_expires(ledger: Ledger, why: str, who: dict[str, str]) -> None:
    """Log a claim that was not given back (``why``): its lease ends it."""
    _failed(ledger, TimeoutError(why), "lease-expires", who)


def _failed(ledger: Ledger, exc: Exception, action: str, who: dict[str, str]) -> None:
    name = getattr(ledger, "name", None)
    log.warning(
        "ecoasync.ledger_failed",
        ledger=name if isinstance(name, str) else type(ledger).__name__,
        error=f"{type(exc).__name__}: {exc}"[:300],
        action=action,
        **who,
    )
