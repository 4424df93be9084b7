"""Your own async sink: post events to a webhook, with backpressure that never blocks the work.

``python examples/custom_sink.py`` starts a tiny webhook receiver on 127.0.0.1 (in this
script), runs 300 carbon-aware sessions on a virtual clock while the receiver stalls, then
lets it recover. The sink's ``__call__`` only puts the event on a bounded queue, without
awaiting: when the queue is full the event is dropped and counted, so a slow or dead webhook
costs the workload nothing. A background task posts batches; a failed post is logged and
counted, never raised. At the end every event is accounted for:
``emitted == delivered + dropped + lost``.

The pattern for any sink of your own: be callable with an event, never raise, never block,
count what you drop, and have an ``aclose()`` that delivers what is queued (bounded).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import anyio
import anyio.abc
import httpx
import structlog

import ecoasync
from ecoasync import events
from ecoasync.providers import StaticForecastProvider, synthetic_day
from ecoasync.testing import VirtualClock

log = structlog.get_logger("webhook")


class WebhookSink:
    """Post events as JSON arrays to ``url``; never blocks, never raises into the workload.

    Use it as ``async with WebhookSink(url) as sink: bus.subscribe(sink)``. At most
    ``max_queue`` events wait; beyond that new events are dropped (``dropped``). Batches of
    up to ``batch`` events are posted with a ``timeout``; a batch that fails is logged and
    its events counted in ``lost`` (``failures`` counts the failed posts).
    """

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 1000,
        batch: int = 50,
        timeout: float = 5.0,
        kinds: Sequence[type[events.Event]] = (events.Completed, events.BudgetTripped),
    ) -> None:
        if max_queue < 1 or batch < 1:
            raise ValueError(f"max_queue and batch must be >= 1, got {max_queue} and {batch}")
        self.url, self.batch, self.timeout, self.kinds = url, batch, timeout, tuple(kinds)
        self._send, self._receive = anyio.create_memory_object_stream[events.Event](max_queue)
        self._tg: anyio.abc.TaskGroup | None = None
        self._worker = anyio.CancelScope()
        self._drained = anyio.Event()
        self.queued = self.dropped = self.delivered = self.lost = self.failures = 0

    def __call__(self, event: events.Event, /) -> None:
        """Called by the bus: queue the event, or drop it if the queue is full. O(1)."""
        if self.kinds and not isinstance(event, self.kinds):
            return
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("webhook.dropping", url=self.url, hint="the webhook is too slow")
        except anyio.ClosedResourceError:
            self.dropped += 1  # after aclose()
        else:
            self.queued += 1

    async def _deliver(self) -> None:
        with self._worker:
            await self._post_batches()
        self._drained.set()

    async def _post_batches(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client, self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self.batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    response = await client.post(self.url, json=[e.to_dict() for e in batch])
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    self.failures += 1
                    self.lost += len(batch)
                    log.error(
                        "webhook.post_failed", url=self.url, events=len(batch), error=repr(exc)
                    )
                else:
                    self.delivered += len(batch)

    async def __aenter__(self) -> WebhookSink:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._deliver)
        return self

    async def aclose(self, *, deadline: float = 10.0) -> None:
        """Stop taking events; deliver what is queued within ``deadline`` seconds. Idempotent."""
        if self._tg is None:
            return
        self._send.close()
        with anyio.move_on_after(deadline):
            await self._drained.wait()
        if not self._drained.is_set():
            self._worker.cancel()
            undelivered = self.queued - self.delivered - self.lost
            self.lost += undelivered
            log.error("webhook.close_timed_out", undelivered=undelivered)
        tg, self._tg = self._tg, None
        await tg.__aexit__(None, None, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --- a tiny webhook receiver on loopback, for the demo ---


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, object]] = []
        self.open = threading.Event()  # while clear, requests stall: a slow webhook
        self.open.set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.server.open.wait(timeout=10)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.extend(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.open.set()
        server.shutdown()
        server.server_close()


async def workload(bus: ecoasync.EventBus, sessions: int) -> float:
    """Run ``sessions`` short sessions; returns the wall time they took."""
    day = datetime(2026, 3, 18, tzinfo=UTC)
    policy = ecoasync.Policy(
        max_delay="2h", jitter="0m", provider=StaticForecastProvider(synthetic_day(day))
    )
    start = time.perf_counter()
    with VirtualClock.installed(day + timedelta(hours=17)):
        async with anyio.create_task_group() as tg:
            for i in range(sessions):

                async def one(i: int = i) -> None:
                    async with ecoasync.carbon_session(policy, bus=bus, name=f"job-{i % 7}"):
                        await anyio.lowlevel.checkpoint()

                tg.start_soon(one)
    return time.perf_counter() - start


async def main(sessions: int = 300) -> None:
    with receiver() as hook:
        bus = ecoasync.EventBus()
        async with WebhookSink(hook.url, max_queue=100, batch=25) as sink:
            bus.subscribe(sink)
            hook.open.clear()  # the webhook stalls while the work runs
            took = await workload(bus, sessions)
            print(f"{sessions} sessions ran in {took * 1000:.0f} ms of wall time, webhook stalled")
            hook.open.set()  # it recovers; aclose() delivers what is queued
        print(
            f"emitted {bus.emitted} events, of which {sink.queued + sink.dropped} for the webhook:"
            f" delivered {sink.delivered}, dropped {sink.dropped} (queue full), lost {sink.lost}"
        )
        assert len(hook.received) == sink.delivered
        assert sink.delivered + sink.dropped + sink.lost == sink.queued + sink.dropped
        print(f"the webhook received {len(hook.received)} events; bus failures: {bus.failures}")

    # a webhook that is gone: every post fails, is logged and counted; the work goes on
    bus = ecoasync.EventBus()
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    async with WebhookSink(gone, timeout=1) as dead:
        bus.subscribe(dead)
        await workload(bus, 20)
    print(f"dead webhook: {dead.failures} failed posts, {dead.lost} events lost, work unaffected")


if __name__ == "__main__":
    anyio.run(main)
