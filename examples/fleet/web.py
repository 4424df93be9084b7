"""The web service of the fleet example: it takes work and enqueues green jobs, and returns
at once with when each job will run.

    POST /summaries    {"doc": "..."}   -> Celery (GreenTask.apply_green_async)
    POST /translations {"text": "..."}  -> procrastinate (green_task's defer)
    GET  /summaries/{id}                -> the Celery job's state and result
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import tasks  # tasks.py beside this file
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def summaries(request: Request) -> JSONResponse:
    body = await request.json()
    result = await tasks.summarize.apply_green_async(args=(body["doc"],))
    return JSONResponse({"id": result.id}, status_code=202)


async def summary(request: Request) -> JSONResponse:
    result = tasks.celery_app.AsyncResult(request.path_params["id"])
    state = await anyio.to_thread.run_sync(lambda: result.state)
    value = result.result if state == "SUCCESS" else None
    return JSONResponse({"id": result.id, "state": state, "result": value})


async def translations(request: Request) -> JSONResponse:
    body = await request.json()
    job = await tasks.translate.defer(text=body["text"])
    return JSONResponse({"id": job}, status_code=202)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with tasks.jobs.open_async():
        yield
    await tasks.redis_ledger.aclose()
    await tasks.postgres_ledger.aclose()
    await tasks.provider.aclose()


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/summaries", summaries, methods=["POST"]),
            Route("/summaries/{id}", summary),
            Route("/translations", translations, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
