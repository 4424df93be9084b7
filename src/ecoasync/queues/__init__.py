"""Durable green waits on the job queue you already run: the queue holds the wait, ecoasync
decides the time, and the worker runs the job in a ``carbon_session`` that knows its plan.

- :mod:`ecoasync.queues.celery`: ``GreenTask``, a Celery task base (``task.apply_green``).
- :mod:`ecoasync.queues.procrastinate`: ``green_task``, for procrastinate (``task.defer``).
- For any other queue (arq, RQ, Temporal): :func:`plan_job` when the job is enqueued (its
  ``start`` is when the queue should deliver it), :func:`on_arrival` when a worker receives
  it, then ``carbon_session(policy, planned=job)`` around the work.

Each adapter imports its queue library; this package imports neither.

Layer: edges (queue adapters); imports its own modules.
"""

from ._core import on_arrival as on_arrival
from ._core import plan_job as plan_job
from ._core import release as release

__all__ = ["on_arrival", "plan_job", "release"]
