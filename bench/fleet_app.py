"""The Celery app of ``bench/fleet.py``'s queue run (its worker processes import it).

Configured from the environment (``FLEET_REDIS``, ``FLEET_QUEUE``, ``FLEET_NAMESPACE``,
``FLEET_ORIGIN``). Each job counts in Redis its run (``runs``: job id -> runs), the second it
was planned for (``planned``) and, unless the broker delivered it again after the kill, the
second it started (``started``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import redis
from celery import Celery

import ecoasync
from ecoasync import Forecast, Slot
from ecoasync.fleet import RedisLedger, SharedCacheProvider
from ecoasync.providers import StaticForecastProvider
from ecoasync.queues.celery import GreenTask

URL = os.environ.get("FLEET_REDIS", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("FLEET_QUEUE", "fleet")
NAMESPACE = os.environ.get("FLEET_NAMESPACE", "fleet")
SECOND = timedelta(seconds=1)
ORIGIN = datetime.fromisoformat(os.environ.get("FLEET_ORIGIN", datetime.now(UTC).isoformat()))

app = Celery("fleet_app", broker=URL, backend=URL, set_as_current=False)
app.conf.task_default_queue = QUEUE
app.conf.broker_transport_options = {
    "visibility_timeout": 6,  # a killed worker's jobs come back within seconds
    "unacked_restore_interval": 1,
    "unacked_mutex_expire": 5,  # a worker killed while restoring must not block it for 5 min
}
app.conf.worker_prefetch_multiplier = 64
app.conf.result_expires = 600
ledger = RedisLedger(URL, namespace=NAMESPACE, bucket=SECOND, tolerance=0.05)
counter = redis.Redis.from_url(URL)


def grid() -> Forecast:
    """One-second slots from ``FLEET_ORIGIN``: dirty for 3 s, then a clean 4 s (a dip every
    slot of which is near the best: the herd has room to spread), then dirty."""
    values = [300.0] * 3 + [100.0, 101.0, 101.5, 102.0] + [300.0] * 40
    return Forecast(
        [Slot(ORIGIN + i * SECOND, ORIGIN + (i + 1) * SECOND, v) for i, v in enumerate(values)],
        provider="tiny",
        zone="GB",
    )


policy = ecoasync.Policy(
    max_delay=timedelta(seconds=30),
    provider=SharedCacheProvider(StaticForecastProvider(grid()), redis=URL, namespace=NAMESPACE),
    jitter=timedelta(0),
    strategy="lowest",
    ledger=ledger,
)


@app.task(
    base=GreenTask,
    bind=True,
    name="fleet_job",
    shared=False,
    green_policy=policy,
    green_max_hop=timedelta(seconds=3),
    green_early=timedelta(seconds=0.5),
)
def fleet_job(self: GreenTask, i: int) -> int:
    plan = getattr(self.request, "ecoasync", None) or {}
    planned = datetime.fromisoformat(plan.get("start", "1970-01-01T00:00:00+00:00"))
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    with counter.pipeline() as pipe:
        pipe.hincrby(f"{NAMESPACE}:runs", str(self.request.id), 1)
        pipe.hincrby(f"{NAMESPACE}:planned", str(int(planned.timestamp())), 1)
        if redelivered:
            pipe.incr(f"{NAMESPACE}:redelivered")
        else:
            pipe.hincrby(f"{NAMESPACE}:started", str(int(datetime.now(UTC).timestamp())), 1)
        pipe.execute()
    return i
