"""The jobs of the fleet example: one Celery task and one procrastinate task, both green.

Every process of the fleet (the web service, the Celery workers, the procrastinate worker)
imports this module: they share one forecast cache and one slot ledger in Redis (Celery's
broker), and procrastinate's jobs keep their ledger in their own database.

Configured from the environment: ``FLEET_REDIS_URL``, ``FLEET_DATABASE_URL``. The demo's grid
runs fast (``FLEET_ORIGIN``: one-second slots from then, dirty for a few seconds, then a
green stretch), so that the jobs it plans start within seconds; in production, the same
code reads the real grid with ``UKCarbonIntensityProvider()`` and 30-minute slots.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import procrastinate
from celery import Celery

import ecoasync
from ecoasync import Forecast, Slot
from ecoasync.fleet import PostgresLedger, RedisLedger, SharedCacheProvider
from ecoasync.providers import StaticForecastProvider
from ecoasync.queues.celery import GreenTask
from ecoasync.queues.procrastinate import green_task

REDIS_URL = os.environ.get("FLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("FLEET_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
ORIGIN = datetime.fromisoformat(os.environ.get("FLEET_ORIGIN", datetime.now(UTC).isoformat()))
SECOND = timedelta(seconds=1)


def fast_grid() -> Forecast:
    """One-second slots from ``ORIGIN``: dirty for 3 s, a green stretch of 3 s, dirty again."""
    values = [320.0, 310.0, 300.0, 110.0, 112.0, 115.0] + [330.0] * 30
    slots = [Slot(ORIGIN + i * SECOND, ORIGIN + (i + 1) * SECOND, v) for i, v in enumerate(values)]
    return Forecast(slots, provider="fast-grid", zone="GB")


provider = SharedCacheProvider(
    StaticForecastProvider(fast_grid()), redis=REDIS_URL, namespace="fleet-demo"
)
policy = ecoasync.Policy(
    max_delay=timedelta(seconds=15), provider=provider, jitter="0m", strategy="lowest"
)

# --- Celery: the broker holds the wait ------------------------------------------------------

celery_app = Celery("fleet-demo", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.broker_transport_options = {"visibility_timeout": 3600}  # max_hop: 30 min
# every process claims its jobs' slots in one ledger, on the broker's Redis
redis_ledger = RedisLedger(REDIS_URL, namespace="fleet-demo", bucket=SECOND)
celery_policy = policy.evolve(ledger=redis_ledger)


@celery_app.task(base=GreenTask, name="summarize", green_policy=celery_policy)
def summarize(doc: str) -> str:
    return f"summary of {doc}"  # an LLM call here is measured and charged to the job


# --- procrastinate: the jobs table holds the wait ----------------------------------------------

jobs = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DATABASE_URL))
postgres_ledger = PostgresLedger(DATABASE_URL, bucket=SECOND)  # in the jobs' database


@green_task(jobs, policy=policy.evolve(ledger=postgres_ledger), name="translate")
async def translate(text: str) -> None:
    print(f"translated {text!r}", flush=True)
