"""A Starlette service that runs deferrable LLM jobs in the greenest slot they allow.

Needs the ``examples`` extra (Starlette, uvicorn) and the ``openai`` one:
``pip install "ecoasync[examples,openai]"``.

::

    POST   /jobs       {"prompt": "...", "max_delay": "4h", "model": "gpt-4o-mini"}
                       → 202 {"id": ..., "status": "waiting", "plan": {...}}
    GET    /jobs/{id}  → the job: status, plan, result, carbon figures
    GET    /jobs       → every job
    DELETE /jobs/{id}  → cancel it (a waiting job is recorded as cancelled)

Every job runs inside ``carbon_session`` in a task group that the app's lifespan owns, so no
job outlives the app. On shutdown, jobs still waiting for their slot are cancelled at once
and jobs already running get ``grace`` seconds to finish; each session then emits
``Completed(status="cancelled")``, which the ``JsonlSink`` writes before the app exits:
nothing is lost silently.

Run it::

    python examples/service/app.py            # http://127.0.0.1:8000, offline fake LLM
    curl -X POST localhost:8000/jobs -d '{"prompt": "summarise", "max_delay": "4h"}'

``examples/service/demo.py`` runs the whole story offline, on a virtual clock.
"""

from __future__ import annotations

import json
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

import ecoasync
from ecoasync import events
from ecoasync.providers import ForecastProvider, StaticForecastProvider, synthetic_day
from ecoasync.sinks import JsonlSink

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError:
    sys.exit(
        "examples/service/app.py needs the examples and openai extras: "
        'pip install "ecoasync[examples,openai]"'
    )

log = structlog.get_logger("service")

Llm = Callable[[str, str], Awaitable[str]]
"""``await llm(prompt, model)`` → the completion's text."""

WAITING = ("planning", "waiting")
FINISHED = ("completed", "aborted", "cancelled", "failed")


@dataclass
class Job:
    """One deferrable LLM job and what became of it."""

    id: str
    prompt: str
    model: str
    policy: ecoasync.Policy
    submitted_at: datetime
    status: str = "planning"
    plan: ecoasync.Plan | None = None
    result: str | None = None
    error: str | None = None
    record: ecoasync.SessionRecord | None = None
    planned: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "submitted_at": _iso(self.submitted_at),
            "max_delay_s": self.policy.max_delay.total_seconds(),
        }
        if self.plan is not None:
            out["plan"] = {
                "start": _iso(self.plan.start),
                "delay_s": self.plan.delay.total_seconds(),
                "now_intensity": self.plan.now_intensity,
                "planned_intensity": self.plan.planned_intensity,
                "reason": self.plan.reason,
            }
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        if self.record is not None:
            r = self.record
            out["carbon"] = {
                "calls": r.calls,
                "energy_kwh": r.energy_kwh,
                "emitted_g": r.emitted_g,
                "baseline_g": r.baseline_g,
                "saved_g": r.saved_g,
                "run_intensity": r.run_intensity,
            }
        return out


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class JobRunner:
    """Starts jobs in the lifespan's task group and follows them through the bus's events."""

    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        *,
        bus: ecoasync.EventBus,
        policy: ecoasync.Policy,
        llm: Llm,
        clock: ecoasync.Clock | None,
    ) -> None:
        self._tg = tg
        self._bus = bus
        self._policy = policy
        self._llm = llm
        self._clock = clock
        self.jobs: dict[str, Job] = {}
        self._idle = anyio.Event()
        self._idle.set()
        self._active = 0
        bus.subscribe(self._follow)

    def submit(
        self, prompt: str, *, model: str, max_delay: str, budget_g: float | None = None
    ) -> Job:
        """Validate the job's policy (``PolicyError`` on bad input) and start the job."""
        changes: dict[str, Any] = {"max_delay": max_delay}
        if budget_g is not None:
            changes["budget_g"] = budget_g
        policy = self._policy.evolve(**changes)
        now = (self._clock or ecoasync.SystemClock()).now()
        job = Job(uuid.uuid4().hex[:12], prompt, model, policy, now)
        self.jobs[job.id] = job
        self._active += 1
        self._idle = anyio.Event()
        self._tg.start_soon(self._run, job, name=f"job {job.id}")
        return job

    async def _run(self, job: Job) -> None:
        try:
            with job.scope:
                async with ecoasync.carbon_session(
                    job.policy,
                    bus=self._bus,
                    name="llm-job",
                    tags=[f"job:{job.id}"],
                    clock=self._clock,
                ):
                    job.result = await self._llm(job.prompt, job.model)
        except ecoasync.CarbonBudgetExceeded as exc:
            job.error = str(exc)  # the session recorded it as aborted
        except Exception as exc:
            job.error = f"{type(exc).__name__}: {exc}"
            log.warning("service.job_failed", job=job.id, error=job.error)
        finally:
            if job.status in WAITING or job.status == "running":
                # cancelled before the session could say so (it always does; belt and braces)
                job.status = "cancelled"
            job.planned.set()
            job.done.set()
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    def _follow(self, event: events.Event) -> None:
        job = next(
            (self.jobs.get(t[4:]) for t in event.tags if t.startswith("job:")),
            None,
        )
        if job is None:
            return
        if isinstance(event, events.Planned):
            job.plan = event.plan
            job.status = "waiting" if event.plan.waits else "running"
            job.planned.set()
        elif isinstance(event, events.Started):
            job.status = "running"
        elif isinstance(event, events.Completed):
            job.status = event.status
            job.record = event.record

    def cancel(self, job: Job) -> None:
        job.scope.cancel()

    async def shutdown(self, grace: float) -> None:
        """Cancel the waiting jobs now; give the running ones ``grace`` seconds."""
        waiting = [job for job in self.jobs.values() if job.status in WAITING]
        log.info("service.shutdown", cancelling=len(waiting), running=self._active - len(waiting))
        for job in waiting:
            job.scope.cancel()
        with anyio.move_on_after(grace):
            await self._idle.wait()


def create_app(
    *,
    telemetry: str | Path = "ecoasync.jsonl",
    provider: ForecastProvider | None = None,
    policy: ecoasync.Policy | None = None,
    llm: Llm | None = None,
    clock: ecoasync.Clock | None = None,
    grace: float = 30.0,
) -> Starlette:
    """The ASGI app.

    Args:
        telemetry: the JSON Lines file every session's record goes to.
        provider: the forecast provider (default: a synthetic grid starting today, offline;
            in production pass e.g. ``ecoasync.providers.default_provider()``).
        policy: the base policy every job's own ``max_delay``/``budget_g`` refine.
        llm: ``await llm(prompt, model)``; default: the OpenAI SDK against an offline fake.
        clock: the sessions' clock (tests and the demo pass a virtual one).
        grace: seconds running jobs get to finish at shutdown.
    """
    if provider is None:
        today = (
            (clock or ecoasync.SystemClock())
            .now()
            .replace(hour=0, minute=0, second=0, microsecond=0)
        )
        provider = StaticForecastProvider(synthetic_day(today, days=3), name="synthetic-gb")
    base = (policy or ecoasync.Policy(jitter="0m")).evolve(provider=provider)
    sink = JsonlSink(telemetry)
    bus = ecoasync.EventBus()
    bus.subscribe(sink)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tg:
                runner = JobRunner(
                    tg, bus=bus, policy=base, llm=llm or offline_openai_llm(), clock=clock
                )
                app.state.runner = runner
                yield
                await runner.shutdown(grace)
                tg.cancel_scope.cancel()
        finally:
            await sink.aclose()  # every Completed line is on disk before the app exits

    async def submit(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return JSONResponse({"error": "give a JSON object with a 'prompt'"}, status_code=422)
        runner: JobRunner = request.app.state.runner
        try:
            job = runner.submit(
                body["prompt"],
                model=str(body.get("model", "gpt-4o-mini")),
                max_delay=body.get("max_delay", "0m"),
                budget_g=body.get("budget_g"),
            )
        except (ecoasync.PolicyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        with anyio.move_on_after(10):  # planning needs the forecast; do not hang the client
            await job.planned.wait()
        return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/jobs/{job.id}"})

    def _job(request: Request) -> Job | None:
        runner: JobRunner = request.app.state.runner
        return runner.jobs.get(request.path_params["job_id"])

    async def show(request: Request) -> JSONResponse:
        job = _job(request)
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(job.to_json())

    async def cancel(request: Request) -> JSONResponse:
        job = _job(request)
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        request.app.state.runner.cancel(job)
        await job.done.wait()
        return JSONResponse(job.to_json())

    async def index(request: Request) -> JSONResponse:
        runner: JobRunner = request.app.state.runner
        return JSONResponse({"jobs": [job.to_json() for job in runner.jobs.values()]})

    return Starlette(
        routes=[
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs", index, methods=["GET"]),
            Route("/jobs/{job_id}", show, methods=["GET"]),
            Route("/jobs/{job_id}", cancel, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )


def offline_openai_llm() -> Llm:
    """``llm(prompt, model)`` through the real OpenAI SDK, answered by its mock transport.

    Swap the client for ``openai.AsyncOpenAI()`` to call the real API; the job code is the same.
    """
    import importlib

    import openai

    # openai 3.x is built on httpx2, older lines on httpx: use the SDK's own HTTP module
    http = importlib.import_module(
        openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0]
    )

    def answer(request: Any) -> Any:
        body = json.loads(request.content)
        text = f"(offline) summary of: {body['messages'][-1]['content'][:60]}"
        return http.Response(
            200,
            json={
                "id": f"chatcmpl-{secrets.token_hex(6)}",
                "object": "chat.completion",
                "created": int(datetime.now(UTC).timestamp()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 40, "completion_tokens": 350, "total_tokens": 390},
            },
        )

    client = openai.AsyncOpenAI(
        api_key="sk-offline",
        base_url="http://llm.invalid/v1",
        http_client=openai.DefaultAsyncHttpxClient(transport=http.MockTransport(answer)),
    )

    async def complete(prompt: str, model: str) -> str:
        response = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}]
        )
        return response.choices[0].message.content or ""

    return complete


@asynccontextmanager
async def loopback_server(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in this event loop (asyncio).

    Yields the base URL; on exit, shuts the server down as a SIGTERM would: the lifespan's
    shutdown runs before this returns.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue until uvicorn has started the app
    config = uvicorn.Config(app, lifespan="on", log_config=None, ws="none", http="h11")
    server = uvicorn.Server(config)
    host, port = sock.getsockname()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.serve(sockets=[sock]))
            try:
                yield f"http://{host}:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


if __name__ == "__main__":
    import uvicorn

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    uvicorn.run(create_app(), host="127.0.0.1", port=port)
