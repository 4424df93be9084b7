"""Green jobs on Celery: the broker holds the wait, ecoasync decides when.

::

    from ecoasync.queues.celery import GreenTask

    policy = Policy(max_delay="6h", ledger=RedisLedger("redis://..."))

    @app.task(base=GreenTask, green_policy=policy)
    def summarize(doc_id: int) -> str: ...

    summarize.apply_green(args=(42,))           # planned now, delivered at the green slot
    await summarize.apply_green_async(args=(42,))  # the same from async code

``apply_green`` plans the job (forecast, planner, a claim in the policy's ledger under the
job's ``task_id``) and sends it with ``eta`` = the planned start under a stable ``task_id``. The
worker runs the task's body in a ``carbon_session`` that knows its plan (no second wait;
budget, downgrades, events and the record as in-process); the session gives the claim back
when it ends.

Celery's ETA pitfalls are handled by design: an ETA is never more than ``max_hop`` ahead
(half the broker's ``visibility_timeout``, or of RabbitMQ's 30-minute ``consumer_timeout``),
so Redis and SQS never redeliver a message a worker still holds and RabbitMQ never kills the
worker. A job whose start is further away *hops*: it arrives early, is planned again with a
fresh forecast inside what is left of its budget, and is sent again under the same
``task_id``. Claims are idempotent per job id, so a redelivered job never books twice.
``acks_late`` is on, so a worker killed mid-job loses nothing: the broker delivers it again.

Layer: edges (queue adapters); imports values, the backend seam, the session (through
``_core``) and Celery.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import anyio
from celery import Task
from celery.exceptions import Ignore
from celery.result import AsyncResult

from .._backend import run_sync
from .._clock import current_clock
from .._job import EARLY, PlannedJob, hop_until
from .._log import get_logger
from .._policy import Policy
from ._core import on_arrival, plan_job, release

__all__ = ["HEADER", "SAFE_FRACTION", "GreenTask", "max_hop_for"]

log = get_logger()
T = TypeVar("T")

HEADER: Final = "ecoasync"
"""The message header that carries the job's :class:`~ecoasync.PlannedJob`."""
SAFE_FRACTION: Final = 0.5
"""The part of the broker's redelivery timeout one ETA may use."""


if TYPE_CHECKING:
    _Base = Task[Any, Any]
else:
    _Base = Task


def max_hop_for(app: Any) -> timedelta:
    """How far ahead an ETA may be on ``app``'s broker: :data:`SAFE_FRACTION` of its
    ``visibility_timeout`` (Redis, SQS; kombu's default is an hour) or of RabbitMQ's
    ``consumer_timeout`` (30 minutes by default)."""
    options = app.conf.broker_transport_options or {}
    timeout = options.get("visibility_timeout")
    if timeout is None:
        url = str(app.conf.broker_url or "")
        timeout = 1800 if url.startswith(("amqp", "pyamqp", "librabbitmq")) else 3600
    return timedelta(seconds=float(timeout) * SAFE_FRACTION)


def _call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run the async core from sync code through the sync API's shared event loop."""
    from .. import _sync

    _sync._refuse_inside_event_loop(
        "GreenTask.apply_green()", "'await task.apply_green_async(...)'"
    )
    with _sync._shared_portals() as portal:
        return portal.call(partial(fn, *args, **kwargs))


class GreenTask(_Base):
    """A Celery task base whose jobs wait for a green slot in the broker.

    Task options (``@app.task(base=GreenTask, green_policy=..., ...)``):

    - ``green_policy``: the :class:`~ecoasync.Policy` (delay budget, provider, budget,
      downgrades, and ``ledger``: where jobs claim their slots, e.g. a
      :class:`~ecoasync.fleet.RedisLedger` that every process shares). Required.
    - ``green_max_hop``: the longest ETA (default :func:`max_hop_for` the app's broker).
    - ``green_replan_margin``: a job that arrives to a slot more than this fraction dirtier
      than planned, with a slot of budget left, is planned again (default 0.1).
    - ``green_early``: a job that arrives more than this before its start hops (default 5 s);
      less, and its session waits out the rest.
    """

    green_policy: ClassVar[Policy | None] = None
    green_max_hop: ClassVar[timedelta | None] = None
    green_replan_margin: ClassVar[float] = 0.1
    green_early: ClassVar[timedelta] = EARLY
    acks_late = True
    reject_on_worker_lost = True

    def _green(self) -> Policy:
        policy = self.green_policy
        if not isinstance(policy, Policy):
            raise TypeError(
                f"task {self.name!r} needs green_policy=ecoasync.Policy(...) in its @app.task options"
            )
        return policy

    def _hop(self) -> timedelta:
        return self.green_max_hop or max_hop_for(self.app)

    async def apply_green_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        policy: Policy | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Plan the job, claim its slot and send it with ``eta`` at the planned start (at most
        ``max_hop`` ahead), under ``task_id`` (default: a new UUID). ``options`` go to
        ``apply_async`` (queue, priority, ...). Sending runs in a worker thread.

        ``policy`` plans this job instead of the task's ``green_policy`` (a longer delay
        budget for a batch, say; derive it with ``green_policy.evolve(...)`` so that it keeps
        the ledger): its deadline travels with the job. The worker runs the job under the
        task's own policy (budget, downgrades, provider) and gives its claim back to that
        policy's ledger."""
        job_id = task_id or str(uuid.uuid4())
        now = current_clock().now()
        rules = policy or self._green()
        job = await plan_job(rules, job_id=job_id, queue="celery", now=now)
        send = partial(self._send, args, kwargs, job, now, options)
        try:
            return await run_sync(send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await release(rules, job)  # never sent: the slot is free again
            raise

    def apply_green(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        policy: Policy | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """:meth:`apply_green_async` from sync code (refused inside an event loop)."""
        return _call(
            self.apply_green_async, args, kwargs, task_id=task_id, policy=policy, **options
        )

    def _send(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        job: PlannedJob,
        now: Any,
        options: dict[str, Any],
    ) -> AsyncResult[Any]:
        if job.start > now:
            options["eta"] = hop_until(job.start, now, self._hop())
        headers = {**options.pop("headers", {}), HEADER: job.to_dict()}
        return self.apply_async(
            tuple(args or ()), dict(kwargs or {}), task_id=job.job_id, headers=headers, **options
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raw = getattr(self.request, HEADER, None)
        if not isinstance(raw, dict):  # called directly, or sent without apply_green
            return self.run(*args, **kwargs)
        policy = self._green()
        job = PlannedJob.from_dict(raw)
        now = current_clock().now()
        action, job = _call(
            on_arrival,
            job,
            policy,
            now=now,
            replan_margin=self.green_replan_margin,
            early=self.green_early,
        )
        if action == "defer":
            log.info(
                "ecoasync.job_deferred",
                job_id=job.job_id,
                start=job.start.isoformat(),
                hops=job.hops,
            )
            routing = (self.request.delivery_info or {}).get("routing_key")
            self._send(args, kwargs, job, now, {"queue": routing} if routing else {})
            raise Ignore()  # this delivery is done; the job comes back under the same id
        from .._session import carbon_session
        from .._sync import _SyncSession

        # the session gives the job's claim back when it ends, as a session's own
        with _SyncSession(carbon_session(policy, name=self.name, planned=job)):
            return self.run(*args, **kwargs)
