"""Green jobs on Celery, with a real worker (``start_worker``) on a real Redis broker.

The forecasts here have one-second slots around the real time, so the planned starts (and
the ETAs the broker holds) are a second or two away: Celery's ETAs run on the real clock.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

import ecoasync
from ecoasync import Forecast, Slot
from ecoasync.events import Completed
from ecoasync.fleet import RedisLedger
from ecoasync.providers import StaticForecastProvider
from ecoasync.queues.celery import GreenTask, max_hop_for
from ecoasync.testing import capture_events
from tests.fleet_util import close_in_portal, unique
from tests.servers import RedisServer

SECOND = timedelta(seconds=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def one_second_grid(clean_from: float, *, dirty: float = 300.0, clean: float = 100.0) -> Forecast:
    """Slots of one second from now on: dirty, then clean ``clean_from`` seconds ahead."""
    now = datetime.now(UTC).replace(microsecond=0)
    slots = [
        Slot(now + i * SECOND, now + (i + 1) * SECOND, dirty if i < clean_from else clean)
        for i in range(-2, 60)
    ]
    return Forecast(slots, provider="tiny", zone="GB")


def policy_for(forecast: Forecast) -> ecoasync.Policy:
    return ecoasync.Policy(
        max_delay=timedelta(seconds=20),
        provider=StaticForecastProvider(forecast),
        jitter=timedelta(0),
        strategy="lowest",
    )


class World:
    """A Celery app on the test Redis, with its own queue, ledger and record of runs."""

    def __init__(self, url: str) -> None:
        self.app = Celery(unique("app"), broker=url, backend=url, set_as_current=False)
        self.app.conf.task_default_queue = unique("q")
        self.app.conf.broker_transport_options = {"visibility_timeout": 3600}
        self.ledger = RedisLedger(url, namespace=unique(), bucket=SECOND)
        self.runs: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

    def task(self, policy: ecoasync.Policy, **options: Any) -> Any:
        runs, lock = self.runs, self.lock

        @self.app.task(
            base=GreenTask,
            bind=True,
            name=unique("work"),
            shared=False,
            green_policy=policy.evolve(ledger=self.ledger),
            **options,
        )
        def work(self: GreenTask, x: int) -> int:
            with lock:
                redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
                runs.append((str(self.request.id), redelivered))
            return x * 2

        return work

    def worker(self) -> Any:
        return start_worker(
            self.app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=10
        )


@pytest.fixture
async def world(redis_server: RedisServer) -> AsyncIterator[World]:
    w = World(redis_server.url)
    yield w
    await w.ledger.aclose()
    await anyio.to_thread.run_sync(close_in_portal, w.ledger)


async def test_a_green_job_waits_in_the_broker_and_runs_on_its_plan(world: World) -> None:
    work = world.task(policy_for(one_second_grid(2)))
    with capture_events(ecoasync.default_bus()) as events:
        with world.worker():
            result = await work.apply_green_async(args=(21,), task_id="job-1")
            assert result.id == "job-1"
            loads = await world.ledger.loads(
                "GB",
                datetime.now(UTC) - 5 * SECOND,
                datetime.now(UTC) + 30 * SECOND,
                now=datetime.now(UTC),
            )
            assert sum(loads.values()) == 1  # claimed when planned
            assert await anyio.to_thread.run_sync(lambda: result.get(timeout=15)) == 42
            with anyio.fail_after(5):
                while not events.of(Completed):
                    await anyio.sleep(0.02)
    record = events.of(Completed)[0].record
    assert record.job_id == "job-1" and record.queue == "celery" and record.status == "completed"
    assert record.decision == "wait" and record.planned_intensity == 100.0
    assert record.started_at is not None and record.started_at >= record.planned_start
    assert record.late_s is not None and 0 <= record.late_s < 3
    assert record.hops == 0 and not record.replanned
    assert world.runs == [("job-1", False)]
    loads = await world.ledger.loads(
        "GB",
        record.submitted_at - 5 * SECOND,
        record.submitted_at + 30 * SECOND,
        now=datetime.now(UTC),
    )
    assert loads == {}  # released once it ran


async def test_a_far_start_hops_under_the_broker_timeout(world: World) -> None:
    work = world.task(
        policy_for(one_second_grid(3)), green_max_hop=SECOND, green_early=timedelta(seconds=0.3)
    )
    with capture_events(ecoasync.default_bus()) as events:
        with world.worker():
            result = await work.apply_green_async(args=(1,), task_id="far")
            assert await anyio.to_thread.run_sync(lambda: result.get(timeout=15)) == 2
            with anyio.fail_after(5):
                while not events.of(Completed):
                    await anyio.sleep(0.02)
    record = events.of(Completed)[0].record
    assert record.hops >= 1 and record.job_id == "far"
    assert world.runs == [("far", False)]  # the hops ran nothing


async def test_a_redelivered_job_runs_once_and_books_once(world: World) -> None:
    work = world.task(policy_for(one_second_grid(3)))
    result = await work.apply_green_async(args=(5,), task_id="again")
    # worker A takes the message (its ETA is seconds away) and is shut down before it:
    # the broker gives the message back, and worker B gets it again
    with world.worker():
        await anyio.sleep(0.5)
    assert world.runs == []
    now = datetime.now(UTC)
    window = (now - 30 * SECOND, now + 30 * SECOND)
    assert sum((await world.ledger.loads("GB", *window, now=now)).values()) == 1
    with world.worker():
        assert await anyio.to_thread.run_sync(lambda: result.get(timeout=15)) == 10
    assert world.runs == [("again", True)]  # delivered again, and run once
    now = datetime.now(UTC)
    assert await world.ledger.loads("GB", *window, now=now) == {}  # booked once, released once


def test_the_longest_hop_follows_the_broker() -> None:
    app = Celery("x", broker="redis://127.0.0.1:1/0", set_as_current=False)
    assert max_hop_for(app) == timedelta(minutes=30)  # half of kombu's one-hour default
    app.conf.broker_transport_options = {"visibility_timeout": 600}
    assert max_hop_for(app) == timedelta(minutes=5)
    rabbit = Celery("y", broker="amqp://guest@127.0.0.1//", set_as_current=False)
    assert max_hop_for(rabbit) == timedelta(minutes=15)


def test_a_green_task_needs_a_policy() -> None:
    app = Celery("z", broker="memory://", set_as_current=False)

    @app.task(base=GreenTask)
    def bare() -> None: ...

    with pytest.raises(TypeError, match="green_policy"):
        bare.apply_green()
    assert bare() is None  # called directly: a plain call


def test_a_policy_given_at_apply_time_plans_that_job(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("p", broker="memory://", set_as_current=False)
    sent: list[dict[str, Any]] = []
    own = policy_for(one_second_grid(2)).evolve(max_delay="0m")

    @app.task(base=GreenTask, green_policy=own, shared=False)
    def job() -> None: ...

    monkeypatch.setattr(job, "apply_async", lambda *a, **k: sent.append(k))
    job.apply_green(policy=policy_for(one_second_grid(2)))
    plan = sent[0]["headers"]["ecoasync"]
    assert plan["decision"] == "wait" and "eta" in sent[0]
    job.apply_green()  # the task's own policy: no delay budget, sent at once
    assert sent[1]["headers"]["ecoasync"]["decision"] == "no-delay-budget" and "eta" not in sent[1]


async def test_apply_green_refuses_to_block_an_event_loop(world: World) -> None:
    work = world.task(policy_for(one_second_grid(2)))
    with pytest.raises(RuntimeError, match="apply_green_async"):
        work.apply_green(args=(1,))
