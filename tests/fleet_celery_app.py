"""A Celery app for the test that kills a worker process mid-job (``celery -A`` imports it).

Configured from the environment: ``ECOASYNC_TEST_REDIS`` (broker, backend and ledger),
``ECOASYNC_TEST_QUEUE``, ``ECOASYNC_TEST_DIR`` (where jobs leave their marks), and
``ECOASYNC_TEST_NAMESPACE`` (the ledger's).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from celery import Celery

import ecoasync
from ecoasync.fleet import RedisLedger
from ecoasync.providers import StaticForecastProvider
from ecoasync.queues.celery import GreenTask

URL = os.environ.get("ECOASYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")
MARKS = Path(os.environ.get("ECOASYNC_TEST_DIR", "."))
SECOND = timedelta(seconds=1)

app = Celery("fleet_celery_app", broker=URL, backend=URL, set_as_current=False)
app.conf.task_default_queue = os.environ.get("ECOASYNC_TEST_QUEUE", "celery")
app.conf.broker_transport_options = {
    "visibility_timeout": 1,  # a killed worker's job comes back after a second
    "unacked_restore_throttle": 1,
    "unacked_restore_interval": 1,
}
app.conf.worker_prefetch_multiplier = 1
ledger = RedisLedger(URL, namespace=os.environ.get("ECOASYNC_TEST_NAMESPACE", "t"), bucket=SECOND)


def grid() -> ecoasync.Forecast:
    """One-second slots: dirty now, clean a second from now (see tests/test_queue_celery.py)."""
    from tests.test_queue_celery import one_second_grid

    return one_second_grid(1)


@app.task(
    base=GreenTask,
    bind=True,
    name="slow_job",
    shared=False,
    green_policy=ecoasync.Policy(
        max_delay=timedelta(seconds=20),
        provider=StaticForecastProvider(grid()),
        jitter=timedelta(0),
        strategy="lowest",
        ledger=ledger,
    ),
    green_early=timedelta(seconds=0.2),
)
def slow_job(self: GreenTask, x: int) -> int:
    (MARKS / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + 20
    while not (MARKS / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (MARKS / f"done-{x}-{os.getpid()}").touch()
    return x + 1
