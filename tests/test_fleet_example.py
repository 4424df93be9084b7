"""The fleet example runs as written: a Starlette service enqueueing green jobs to a Celery
worker process and a procrastinate worker, on the test session's Redis and Postgres (with
no URL it starts its own, as ``python examples/fleet/run.py`` does)."""

from __future__ import annotations

import re

from tests.examples_util import run_example
from tests.servers import PostgresServer, RedisServer, environment


def test_the_fleet_demo(redis_server: RedisServer, postgres_server: PostgresServer) -> None:
    with environment(
        FLEET_REDIS_URL=redis_server.url, FLEET_DATABASE_URL=postgres_server.create_database()
    ):
        out = run_example("fleet/run.py", timeout=120)
    assert out.count("queued on Celery") == 3 and out.count("queued on procrastinate") == 2
    assert out.count("done: summary of") == 3
    assert "translated 'hello'" in out and "translated 'goodbye'" in out
    assert re.search(r"green stretch \d\d:\d\d:\d\dZ", out)
