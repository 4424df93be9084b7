"""The service example: a real uvicorn server on loopback, a real HTTP client, a clock that
moves only when the test says so, and the telemetry file read back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock
from tests.examples_util import load_example

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

service = load_example("service/app.py", "service_app")
DAY = datetime(2026, 3, 18, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(DAY + timedelta(hours=17), autojump=False)


async def fake_llm(prompt: str, model: str) -> str:
    return f"{model}: {prompt.upper()}"


def app_for(path: Path, clock: VirtualClock, **kwargs: Any) -> Any:
    provider = StaticForecastProvider(synthetic_day(DAY, days=2), name="synthetic-gb")
    kwargs.setdefault("llm", fake_llm)
    return service.create_app(telemetry=path, provider=provider, clock=clock, **kwargs)


def completed_lines(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["event"] == "completed"]


@pytest.fixture
async def served(
    tmp_path: Path, clock: VirtualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    path = tmp_path / "service.jsonl"
    async with (
        service.loopback_server(app_for(path, clock)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client, path


async def until(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if job["status"] == status:
            return job
    raise AssertionError(f"job {job_id} never reached {status!r}: {job}")


async def test_a_job_that_need_not_wait_runs_and_reports_its_carbon(
    served: tuple[httpx.AsyncClient, Path],
) -> None:
    client, _ = served
    response = await client.post("/jobs", json={"prompt": "hello", "max_delay": "0m"})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["plan"]["delay_s"] == 0
    done = await until(client, job["id"], "completed")
    assert done["result"] == "gpt-4o-mini: HELLO"
    assert done["carbon"]["calls"] == 0  # the fake LLM is not instrumented
    listing = (await client.get("/jobs")).json()["jobs"]
    assert [j["id"] for j in listing] == [job["id"]]


async def test_a_deferrable_job_waits_for_its_slot_then_runs(
    served: tuple[httpx.AsyncClient, Path], clock: VirtualClock
) -> None:
    client, _ = served
    job = (await client.post("/jobs", json={"prompt": "x", "max_delay": "4h"})).json()
    assert job["status"] == "waiting"
    start = datetime.fromisoformat(job["plan"]["start"])
    assert start > clock.now()
    assert job["plan"]["planned_intensity"] < job["plan"]["now_intensity"]
    assert (await client.get(f"/jobs/{job['id']}")).json()["status"] == "waiting"
    clock.advance(start - clock.now())
    done = await until(client, job["id"], "completed")
    assert done["carbon"]["run_intensity"] is not None


async def test_bad_input_is_refused_with_the_reason(
    served: tuple[httpx.AsyncClient, Path],
) -> None:
    client, _ = served
    bad = await client.post("/jobs", json={"prompt": "x", "max_delay": "-1h"})
    assert bad.status_code == 422
    assert "max_delay" in bad.json()["error"]
    assert (await client.post("/jobs", content=b"{")).status_code == 400
    assert (await client.post("/jobs", json={"max_delay": "1h"})).status_code == 422
    assert (await client.get("/jobs/nope")).status_code == 404
    assert (await client.delete("/jobs/nope")).status_code == 404


async def test_cancelling_a_waiting_job_records_it_as_cancelled(
    served: tuple[httpx.AsyncClient, Path],
) -> None:
    client, path = served
    job = (await client.post("/jobs", json={"prompt": "x", "max_delay": "10h"})).json()
    cancelled = (await client.delete(f"/jobs/{job['id']}")).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["carbon"]["calls"] == 0


async def test_shutdown_cancels_waiting_jobs_and_loses_none(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "service.jsonl"
    async with (
        service.loopback_server(app_for(path, clock)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        now = (await client.post("/jobs", json={"prompt": "a", "max_delay": "0m"})).json()
        await until(client, now["id"], "completed")
        waiting = [
            (await client.post("/jobs", json={"prompt": str(i), "max_delay": "10h"})).json()
            for i in range(5)
        ]
        assert {job["status"] for job in waiting} == {"waiting"}
    # the server has shut down: its lifespan cancelled the waiting jobs and closed the sink
    lines = completed_lines(path)
    by_job = {line["tags"][0].removeprefix("job:"): line for line in lines}
    assert len(lines) == 6 == len(by_job)
    assert by_job[now["id"]]["status"] == "completed"
    for job in waiting:
        line = by_job[job["id"]]
        assert line["status"] == "cancelled"
        assert line["record"]["started_at"] is None
        assert line["record"]["status"] == "cancelled"


async def test_shutdown_gives_running_jobs_their_grace_then_cancels_them(
    tmp_path: Path, clock: VirtualClock
) -> None:
    import anyio

    started = anyio.Event()

    async def hangs(prompt: str, model: str) -> str:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    path = tmp_path / "service.jsonl"
    async with (
        service.loopback_server(app_for(path, clock, llm=hangs, grace=0.01)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        await client.post("/jobs", json={"prompt": "slow", "max_delay": "0m"})
        await started.wait()
    (line,) = completed_lines(path)
    assert line["status"] == "cancelled"
    assert line["record"]["started_at"] is not None


async def test_the_default_llm_is_the_openai_sdk_on_an_offline_transport() -> None:
    pytest.importorskip("openai")
    llm = service.offline_openai_llm()
    assert (await llm("hello there", "gpt-4o-mini")).startswith("(offline) summary of: hello")
