"""Durable green waits on the job queue you already run: the queue holds the wait, ecoasync
decides the time, and the worker runs the job in a ``carbon_session`` that knows its plan.

- :mod:`ecoasync.queues.celery`: ``GreenTask``, a Celery task base (``task.apply_green``).
- :mod:`ecoasync.queues.procrastinate`: ``green_task``, for procrastinate (``task.defer``).

Each imports its queue library; this package imports neither.
"""

__all__: list[str] = []
