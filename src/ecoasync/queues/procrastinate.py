"""Green jobs on procrastinate: the jobs table holds the wait, ecoasync decides when.

::

    from ecoasync.queues.procrastinate import green_task

    @green_task(app, policy=Policy(max_delay="6h", ledger=PostgresLedger(DSN)))
    async def summarize(doc_id: int) -> None: ...

    await summarize.defer(doc_id=42)   # planned now; the row waits for schedule_at

``defer`` plans the job (forecast, planner, a claim in the policy's ledger: a
:class:`~ecoasync.fleet.PostgresLedger` in the same database fits), and defers it with
``schedule_at`` = the planned start and a ``queueing_lock`` per job (by default its job id),
so the same job cannot be queued twice. The worker runs the body in a ``carbon_session``
that knows its plan, and gives the claim back when it ends. A row scheduled hours ahead costs procrastinate nothing, so there are
no hops; a job that arrives to a slot gone dirty is planned again (see
:func:`ecoasync.queues.on_arrival`) and deferred again under the same lock.

Layer: edges (queue adapters); imports values, the session and procrastinate.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

import anyio

from .._clock import current_clock
from .._job import EARLY, PlannedJob
from .._log import get_logger
from .._policy import Policy
from .._session import carbon_session
from ._core import on_arrival, plan_job, release

__all__ = ["KWARG", "GreenTask", "green_task"]

log = get_logger()
R = TypeVar("R")

KWARG = "ecoasync_plan"
"""The task keyword argument that carries the job's :class:`~ecoasync.PlannedJob`."""


class GreenTask(Generic[R]):
    """A procrastinate task whose jobs wait for a green slot in the jobs table.

    ``task`` is the procrastinate task (to run unplanned, ``await green.task.defer_async(...)``).
    """

    def __init__(
        self,
        app: Any,
        func: Callable[..., Awaitable[R]],
        *,
        policy: Policy,
        replan_margin: float,
        early: timedelta,
        options: dict[str, Any],
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"green_task needs policy=ecoasync.Policy(...), got {policy!r}")
        self.func = func
        self.policy = policy
        self.replan_margin = replan_margin
        self.early = early
        options.setdefault("name", f"{func.__module__}.{func.__qualname__}")

        @functools.wraps(func)
        async def run(context: Any, *args: Any, **kwargs: Any) -> R | None:
            raw = kwargs.pop(KWARG, None)
            if raw is None:  # deferred without a plan: a plain run
                return await func(*args, **kwargs)
            return await self._arrived(context, PlannedJob.from_dict(raw), args, kwargs)

        self.task: Any = app.task(pass_context=True, **options)(run)

    async def defer(
        self, *, job_id: str | None = None, queueing_lock: str | None = None, **task_kwargs: Any
    ) -> int:
        """Plan the job, claim its slot and defer it with ``schedule_at`` = the planned start
        and ``queueing_lock`` (default: the job id; procrastinate refuses a second job with
        the same lock while one waits: ``AlreadyEnqueued``). Returns procrastinate's job id."""
        job_id = job_id or str(uuid.uuid4())
        now = current_clock().now()
        job = await plan_job(self.policy, job_id=job_id, queue="procrastinate", now=now)
        try:
            return await self._defer(job, queueing_lock or job_id, now, task_kwargs)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await release(self.policy, job)  # never queued: the slot is free again
            raise

    async def _defer(
        self, job: PlannedJob, lock: str, now: Any, task_kwargs: dict[str, Any], **options: Any
    ) -> int:
        deferrer = self.task.configure(
            schedule_at=job.start if job.start > now else None, queueing_lock=lock, **options
        )
        job_number: int = await deferrer.defer_async(**task_kwargs, **{KWARG: job.to_dict()})
        return job_number

    async def _arrived(
        self, context: Any, job: PlannedJob, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R | None:
        now = current_clock().now()
        action, job = await on_arrival(
            job,
            self.policy,
            now=now,
            replan_margin=self.replan_margin,
            early=self.early,
        )
        if action == "defer":
            row = context.job
            log.info(
                "ecoasync.job_deferred",
                job_id=job.job_id,
                start=job.start.isoformat(),
                hops=job.hops,
            )
            await self._defer(job, row.queueing_lock or job.job_id, now, kwargs, queue=row.queue)
            return None
        # the session gives the job's claim back when it ends, as a session's own
        async with carbon_session(self.policy, name=self.task.name, planned=job):
            return await self.func(*args, **kwargs)


def green_task(
    app: Any,
    *,
    policy: Policy,
    replan_margin: float = 0.1,
    early: timedelta = EARLY,
    **options: Any,
) -> Callable[[Callable[..., Awaitable[R]]], GreenTask[R]]:
    """Register an async function as a procrastinate task whose jobs wait for a green slot.

    Args:
        app: the ``procrastinate.App``.
        policy: the :class:`~ecoasync.Policy` (delay budget, provider, budget, downgrades,
            and ``ledger``: where jobs claim their slots; a
            :class:`~ecoasync.fleet.PostgresLedger` in the same database shares them with
            every worker).
        replan_margin: a job that arrives to a slot more than this fraction dirtier than
            planned, with a slot of budget left, is planned again (default 0.1).
        early: a job that arrives more than this before its start is planned again.
        options: passed to ``app.task`` (``name``, ``queue``, ``lock``, ``retry``, ...).
    """

    def decorate(func: Callable[..., Awaitable[R]]) -> GreenTask[R]:
        return GreenTask(
            app,
            func,
            policy=policy,
            replan_margin=replan_margin,
            early=early,
            options=dict(options),
        )

    return decorate
