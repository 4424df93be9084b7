"""Green jobs on procrastinate, with a real worker on a real Postgres (and the ledger in the
same database). One-second slots around the real time: ``schedule_at`` runs on the real clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import procrastinate
import pytest
from procrastinate.exceptions import AlreadyEnqueued

import ecoasync
from ecoasync import Forecast
from ecoasync.events import Completed
from ecoasync.fleet import PostgresLedger
from ecoasync.queues.procrastinate import green_task
from ecoasync.testing import capture_events
from tests.fleet_util import unique
from tests.servers import PostgresServer
from tests.test_queue_celery import SECOND, one_second_grid


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def jobs_database(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database()

    async def schema() -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    anyio.run(schema)
    return url


class Swappable:
    """A provider whose forecast the test replaces (the grid changes its mind)."""

    name = "tiny"
    zone = "GB"

    def __init__(self, forecast: Forecast) -> None:
        self.current = forecast

    async def forecast(self, start: datetime, end: datetime) -> Forecast:
        await anyio.lowlevel.checkpoint()
        return self.current.between(start, end)


class World:
    def __init__(self, url: str) -> None:
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        self.queue = unique("q")
        self.ledger = PostgresLedger(url, table=unique("claims_"), bucket=SECOND)
        self.runs: list[int] = []

    def green(self, policy: ecoasync.Policy) -> Any:
        runs = self.runs

        @green_task(
            self.app,
            policy=policy.evolve(ledger=self.ledger),
            queue=self.queue,
            name=unique("t"),
        )
        async def work(x: int) -> None:
            runs.append(x)

        return work

    async def until(self, done: Callable[[], bool], worker_seconds: float = 15) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._worker)
            with anyio.fail_after(worker_seconds):
                while not done():
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    async def _worker(self) -> None:
        await self.app.run_worker_async(
            queues=[self.queue], wait=True, fetch_job_polling_interval=0.1, listen_notify=False
        )


@pytest.fixture
async def world(jobs_database: str) -> AsyncIterator[World]:
    w = World(jobs_database)
    await w.ledger.setup()
    async with w.app.open_async():
        yield w
    await w.ledger.aclose()


def policy(provider: object) -> ecoasync.Policy:
    return ecoasync.Policy(
        max_delay=timedelta(seconds=20),
        provider=provider,  # type: ignore[arg-type]
        jitter=timedelta(0),
        strategy="lowest",
    )


async def loads(world: World) -> int:
    now = datetime.now(UTC)
    found = await world.ledger.loads("GB", now - 30 * SECOND, now + 30 * SECOND, now=now)
    return sum(found.values())


async def test_a_green_job_waits_in_its_row_and_runs_on_its_plan(world: World) -> None:
    work = world.green(policy(Swappable(one_second_grid(2))))
    with capture_events(ecoasync.default_bus()) as events:
        await work.defer(job_id="doc-7", x=7)
        assert await loads(world) == 1
        with pytest.raises(AlreadyEnqueued):  # one job per queueing lock
            await work.defer(job_id="other", queueing_lock="doc-7", x=7)
        assert await loads(world) == 1  # the refused job gave its claim back
        await world.until(lambda: bool(events.of(Completed)))
    record = events.of(Completed)[0].record
    assert world.runs == [7]
    assert (record.job_id, record.queue, record.decision) == ("doc-7", "procrastinate", "wait")
    assert record.planned_intensity == 100.0 and not record.replanned
    assert record.late_s is not None and 0 <= record.late_s < 3
    assert await loads(world) == 0


async def test_a_slot_gone_dirty_is_planned_again_by_the_worker(world: World) -> None:
    grid = Swappable(one_second_grid(2))
    work = world.green(policy(grid))
    with capture_events(ecoasync.default_bus()) as events:
        await work.defer(job_id="doc-8", x=8)
        grid.current = one_second_grid(4)  # the green slot moved two seconds later
        await world.until(lambda: bool(events.of(Completed)))
    record = events.of(Completed)[0].record
    assert world.runs == [8]
    assert record.replanned and record.hops == 1
    assert record.started_at is not None and record.started_at >= record.planned_start


async def test_deferred_without_a_plan_it_is_a_plain_task(world: World) -> None:
    work = world.green(policy(Swappable(one_second_grid(2))))
    await work.task.defer_async(x=9)
    await world.until(lambda: world.runs == [9])


def test_a_policy_is_required() -> None:
    from procrastinate.testing import InMemoryConnector

    app = procrastinate.App(connector=InMemoryConnector())
    make: Callable[[Callable[[], Awaitable[None]]], Any] = green_task(app, policy=None)  # type: ignore[arg-type]

    async def job() -> None: ...

    with pytest.raises(TypeError, match="policy"):
        make(job)
