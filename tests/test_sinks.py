from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from ecoasync import EventBus, Policy, carbon_session
from ecoasync.events import CallRecorded, Completed, Event, Planned, Started
from ecoasync.sinks import (
    CompositeSink,
    JsonlSink,
    NullSink,
    OpenTelemetrySink,
    Sink,
    StructlogSink,
    _jsonl,
)
from ecoasync.sinks._jsonl import event_line
from ecoasync.testing import FakeProvider, VirtualClock
from tests.telemetry_gen import DAY, charge, workload


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


# --- JsonlSink ---


async def test_jsonl_writes_completed_and_calls_by_default(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "t.jsonl"
    sink = JsonlSink(path)
    bus = EventBus()
    bus.subscribe(sink)
    records = await workload(bus, sessions=5, days=1)
    await sink.aclose()
    lines = read_lines(path)
    kinds = [line["event"] for line in lines]
    assert kinds.count("completed") == 5
    assert kinds.count("call_recorded") == sum(r.calls for r in records)
    assert set(kinds) == {"completed", "call_recorded"}
    assert sink.written == len(lines) and sink.failures == 0
    for line in lines:
        assert line["schema"] == 1
        assert line["at"].endswith("Z")
        datetime.fromisoformat(line["at"])
    completed = [line for line in lines if line["event"] == "completed"]
    by_id = {r.session_id: r for r in records}
    for line in completed:
        record = by_id[line["session_id"]]
        assert line["record"]["emitted_g"] == pytest.approx(record.emitted_g)
        assert line["record"]["saved_g"] == pytest.approx(record.saved_g)
        assert line["record"]["submitted_at"].endswith("Z")


async def test_jsonl_all_events_and_a_chosen_set(tmp_path: Path, clock: VirtualClock) -> None:
    every, chosen = (
        JsonlSink(tmp_path / "all.jsonl", events="all"),
        JsonlSink(tmp_path / "p.jsonl", events=[Planned]),
    )
    bus = EventBus()
    bus.subscribe(every)
    bus.subscribe(chosen)
    await workload(bus, sessions=2, days=1)
    await every.aclose()
    await chosen.aclose()
    kinds = [line["event"] for line in read_lines(tmp_path / "all.jsonl")]
    assert {"planned", "started", "call_recorded", "completed"} <= set(kinds)
    assert [line["event"] for line in read_lines(tmp_path / "p.jsonl")] == ["planned", "planned"]


async def test_jsonl_1000_concurrent_sessions_give_whole_lines(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "c.jsonl"
    sink = JsonlSink(path)
    bus = EventBus()
    bus.subscribe(sink)
    provider = FakeProvider.day(DAY)
    long_tag = "x" * 6000  # lines well over PIPE_BUF, so a torn write would show

    async def one(i: int) -> None:
        async with carbon_session(
            Policy(max_delay=f"{i % 3}h", provider=provider), bus=bus, name=f"s{i}"
        ):
            await charge("gpt-4o-mini", 0.001, tags=(long_tag, f"n{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(1000):
            tg.start_soon(one, i)
    await sink.aclose()
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = read_lines(path)
    assert len(lines) == 2000
    completed = [line for line in lines if line["event"] == "completed"]
    assert len(completed) == 1000
    assert len({line["session_id"] for line in completed}) == 1000
    assert {line["session_name"] for line in completed} == {f"s{i}" for i in range(1000)}
    assert sink.written == 2000 and sink.failures == 0 and sink.dropped == 0


async def test_jsonl_rotation(tmp_path: Path, clock: VirtualClock) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path, max_bytes=4096, backups=2, events="all")
    bus = EventBus()
    bus.subscribe(sink)
    await workload(bus, sessions=20, days=1)
    await sink.aclose()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 4096
        read_lines(tmp_path / name)  # every rotated file holds whole lines


async def test_jsonl_flush_and_sync_close(tmp_path: Path, clock: VirtualClock) -> None:
    sink = JsonlSink(tmp_path / "f.jsonl", fsync=True)
    bus = EventBus()
    bus.subscribe(sink)
    await workload(bus, sessions=3, days=1)
    await sink.aflush()
    assert len(read_lines(tmp_path / "f.jsonl")) == sink.written > 0
    sink.close()
    sink.close()  # idempotent
    assert "closed" in repr(sink)


def test_jsonl_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist; create it first"):
        JsonlSink(tmp_path / "nope" / "t.jsonl")
    with pytest.raises(ValueError, match="is a directory"):
        JsonlSink(tmp_path)
    with pytest.raises(ValueError, match="max_bytes"):
        JsonlSink(tmp_path / "t.jsonl", max_bytes=10)
    with pytest.raises(ValueError, match="backups"):
        JsonlSink(tmp_path / "t.jsonl", backups=0)
    with pytest.raises(TypeError, match=r"ecoasync\.events"):
        JsonlSink(tmp_path / "t.jsonl", events=[dict])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'all'"):
        JsonlSink(tmp_path / "t.jsonl", events="everything")  # type: ignore[arg-type]


async def test_jsonl_write_failure_is_logged_counted_and_not_raised(
    tmp_path: Path, clock: VirtualClock, logs: list[dict[str, object]]
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    sink = JsonlSink(folder / "t.jsonl")
    folder.rmdir()  # the directory disappears under the sink
    bus = EventBus()
    bus.subscribe(sink)
    async with carbon_session(Policy(provider=FakeProvider.day(DAY)), bus=bus) as session:
        await charge("gpt-4o", 0.001)
    assert session.record is not None and session.record.status == "completed"
    await sink.aclose()
    assert sink.failures >= 1
    assert sink.lost == 2 and sink.written == 0
    failed = [e for e in logs if e["event"] == "ecoasync.sink_failed"]
    assert failed and failed[0]["sink"] == "JsonlSink" and failed[0]["stage"] == "write"
    assert bus.failures == 0  # the sink guarded itself


async def test_jsonl_after_close_counts_a_failure(
    tmp_path: Path, logs: list[dict[str, object]]
) -> None:
    sink = JsonlSink(tmp_path / "t.jsonl", events="all")
    await sink.aclose()
    sink(_started())
    assert sink.failures == 1
    assert "closed" in str(logs[-1]["error"])


async def test_jsonl_queue_overflow_drops_and_says_so(
    tmp_path: Path, logs: list[dict[str, object]]
) -> None:
    sink = JsonlSink(tmp_path / "t.jsonl", max_queue=1, events="all")
    with sink._cond:  # hold the writer so the queue fills
        sink._queue.append(_started())
        sink._queued += 1
        sink._thread = _Dummy()  # type: ignore[assignment]
    sink(_started())
    sink(_started())
    assert sink.dropped == 2
    assert sink.failures == 1  # logged once, counted in dropped
    assert any("max_queue" in str(e.get("error")) for e in logs)


class _Dummy:
    def join(self, timeout: float | None = None) -> None:
        return None

    def is_alive(self) -> bool:
        return False


def _started(name: str = "s") -> Started:
    return Started(
        session_id="id-" + name,
        session_name=name,
        at=datetime(2026, 3, 18, tzinfo=UTC),
        delay=DAY - DAY,
        intensity=100.0,
        intensity_source="forecast",
    )


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from ecoasync.events import Started
    from ecoasync.sinks import JsonlSink

    sink = JsonlSink(sys.argv[1], events="all")
    filler = "y" * 3000
    i = 0
    while True:
        sink(Started(session_id=str(i), session_name=filler, at=datetime(2026, 3, 18, tzinfo=UTC),
                     delay=timedelta(0), intensity=float(i), intensity_source="actual"))
        i += 1
        if i == 500:
            sink.flush()
            print("ready", flush=True)
    """
)


def test_jsonl_a_crash_mid_write_leaves_earlier_lines_readable(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    with subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    raw = path.read_bytes()
    complete, _, tail = raw.rpartition(b"\n")
    lines = complete.split(b"\n")
    assert len(lines) >= 500
    for n, line in enumerate(lines):
        assert json.loads(line)["session_id"] == str(n)  # in order, none torn
    # a new writer ends a cut line first, so the cut spoils only itself
    sink = JsonlSink(path, events="all")
    sink(_started("after"))
    sink.close()
    after = path.read_bytes().split(b"\n")
    assert json.loads(after[-2])["session_name"] == "after"
    if tail:
        assert after[-3] == tail


FORKED = textwrap.dedent(
    """
    import json, multiprocessing, os, sys
    from datetime import UTC, datetime, timedelta
    from ecoasync.events import Started
    from ecoasync.sinks import JsonlSink

    def started(name):
        return Started(session_id=name, session_name=name, at=datetime(2026, 3, 18, tzinfo=UTC),
                       delay=timedelta(0), intensity=1.0, intensity_source="actual")

    sink = JsonlSink(sys.argv[1], events="all")
    sink(started("parent-1"))
    assert sink.flush(timeout=10)
    pid = os.fork()
    if pid == 0:  # a bare fork: the child writes its own lines, then closes
        for i in range(3):
            sink(started(f"child-{i}"))
        ok = sink.flush(timeout=10)
        sink.close()
        os._exit(0 if ok and sink.written == 3 and sink.failures == 0 else 1)
    assert os.waitpid(pid, 0)[1] == 0

    def work():  # multiprocessing ends its children with os._exit: nothing flushed by hand
        sink(started("mp-child"))

    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(30)
    assert child.exitcode == 0
    sink(started("parent-2"))
    sink.close()
    print(sink.written)
    """
)


def test_jsonl_after_fork_the_child_writes_its_own_lines(tmp_path: Path) -> None:
    # issue 17.3: the child's writer thread did not exist; its lines were dropped silently
    path = tmp_path / "fork.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]  # the parent counts its own lines
    names = [line["session_name"] for line in read_lines(path)]
    assert names == ["parent-1", "child-0", "child-1", "child-2", "mp-child", "parent-2"]


async def test_jsonl_a_deleted_directory_is_counted_not_written_to_an_unlinked_file(
    tmp_path: Path, logs: list[dict[str, object]]
) -> None:
    # issue 17.4: writes went to the unlinked file: written 4, lost 0, failures 0, no file
    folder = tmp_path / "logs"
    folder.mkdir()
    sink = JsonlSink(folder / "t.jsonl", events="all")
    sink(_started("before"))
    await sink.aflush()
    shutil.rmtree(folder)
    for i in range(4):
        sink(_started(f"after-{i}"))
    await sink.aflush()
    assert (sink.written, sink.lost) == (1, 4)
    assert sink.failures >= 1
    assert any(e["event"] == "ecoasync.sink_reopened" for e in logs)
    failed = [e for e in logs if e["event"] == "ecoasync.sink_failed"]
    assert failed and failed[-1]["stage"] == "write"
    folder.mkdir()  # back again: the sink writes there
    sink(_started("back"))
    await sink.aclose()
    assert [line["session_name"] for line in read_lines(folder / "t.jsonl")] == ["back"]


async def test_jsonl_a_file_deleted_or_replaced_under_the_sink_is_reopened(
    tmp_path: Path, logs: list[dict[str, object]]
) -> None:
    path = tmp_path / "t.jsonl"
    sink = JsonlSink(path, events="all")
    sink(_started("first"))
    await sink.aflush()
    path.unlink()
    sink(_started("second"))
    await sink.aflush()
    path.rename(tmp_path / "t.jsonl.1")  # as logrotate does
    sink(_started("third"))
    await sink.aclose()
    assert [line["session_name"] for line in read_lines(tmp_path / "t.jsonl.1")] == ["second"]
    assert [line["session_name"] for line in read_lines(path)] == ["third"]
    assert (sink.written, sink.lost, sink.failures) == (3, 0, 0)
    reasons = [e["reason"] for e in logs if e["event"] == "ecoasync.sink_reopened"]
    assert reasons == ["the file is gone", "the file is gone"]


class _FullDisk:
    """``os`` as the sink sees it, on a disk with ``room`` bytes left (writes past it are cut
    short, then refused with ENOSPC, as a real file system does)."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), self.room)
        self.room -= n
        return os.write(fd, bytes(data[:n]))

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


async def test_jsonl_counters_match_the_file_when_the_disk_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17: on a full disk the sink said written=1 lost=599 with 57 lines on disk
    path = tmp_path / "t.jsonl"
    line_size = len(event_line(_started("x" * 200)))
    monkeypatch.setattr(_jsonl, "os", _FullDisk(room=int(line_size * 57.5)))
    sink = JsonlSink(path, events="all")
    for _ in range(600):
        sink(_started("x" * 200))
    await sink.aclose()
    whole = path.read_bytes().count(b"\n")
    assert whole == 57
    assert (sink.written, sink.lost) == (57, 543)
    assert sink.failures >= 1


FULL_TMPFS = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from ecoasync.events import Started
    from ecoasync.sinks import JsonlSink

    path = sys.argv[1]
    sink = JsonlSink(path, events="all")
    for i in range(600):
        sink(Started(session_id=str(i), session_name="x" * 200, at=datetime(2026, 3, 18, tzinfo=UTC),
                     delay=timedelta(0), intensity=1.0, intensity_source="actual"))
    sink.close()
    with open(path, "rb") as handle:
        whole = handle.read().count(b"\\n")
    print(sink.written, sink.lost, whole)
    """
)


def test_jsonl_counters_match_a_real_full_file_system(tmp_path: Path) -> None:
    """The same on a 64 KiB tmpfs, mounted in a private mount namespace (root only)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {mount} || exit 77; "
        f'exec "{sys.executable}" -c "$0" {mount}/t.jsonl'
    )
    done = subprocess.run(
        [unshare, "--mount", "sh", "-c", script, FULL_TMPFS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    written, lost, whole = map(int, done.stdout.split()[-3:])
    assert 0 < written == whole < 600
    assert written + lost == 600


# --- StructlogSink ---


@pytest.fixture
def structlog_output() -> Iterator[io.StringIO]:
    """A real structlog configuration rendering JSON, restored afterwards."""
    saved = structlog.get_config()
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        yield out
    finally:
        structlog.configure(**saved)


async def test_structlog_sink_logs_dotted_names_and_flat_fields(
    clock: VirtualClock, structlog_output: io.StringIO
) -> None:
    sink = StructlogSink()
    bus = EventBus()
    bus.subscribe(sink)
    records = await workload(bus, sessions=2, days=1)
    entries = [json.loads(line) for line in structlog_output.getvalue().splitlines()]
    names = [e["event"] for e in entries]
    assert names.count("ecoasync.planned") == 2
    assert names.count("ecoasync.completed") == 2
    assert "ecoasync.call_recorded" in names
    completed = [e for e in entries if e["event"] == "ecoasync.completed"]
    by_id = {r.session_id: r for r in records}
    for entry in completed:
        record = by_id[entry["session_id"]]
        assert entry["level"] == "info"
        assert entry["emitted_g"] == pytest.approx(record.emitted_g)
        assert entry["saved_g"] == pytest.approx(record.saved_g)
        assert entry["status"] == record.status
        assert entry["schema"] == 1
    call = next(e for e in entries if e["event"] == "ecoasync.call_recorded")
    assert {"effective_model", "energy_kwh", "emitted_g", "call_at", "session_total_g"} <= set(call)
    assert sink.failures == 0


async def test_structlog_sink_never_configures_structlog(clock: VirtualClock) -> None:
    before = structlog.get_config()
    StructlogSink()(_started())
    assert structlog.get_config() == before


async def test_structlog_sink_failure_is_counted(logs: list[dict[str, object]]) -> None:
    class Broken:
        def info(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("pipeline down")

    sink = StructlogSink(Broken())
    sink(_started())
    assert sink.failures == 1
    assert logs[-1]["event"] == "ecoasync.sink_failed"
    assert "pipeline down" in str(logs[-1]["error"])
    with pytest.raises(ValueError, match="level"):
        StructlogSink(level="loud")  # type: ignore[arg-type]


# --- OpenTelemetrySink ---


async def test_otel_sink_spans_and_metrics(clock: VirtualClock) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    sink = OpenTelemetrySink(tracer_provider=tracer_provider, meter_provider=meter_provider)
    bus = EventBus()
    bus.subscribe(sink)
    records = await workload(bus, sessions=6, days=1)
    await sink.aclose()

    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    by_id = {r.session_id: r for r in records}
    for span in spans:
        attrs = dict(span.attributes or {})
        record = by_id[str(attrs["ecoasync.session_id"])]
        assert span.name == f"ecoasync.session {record.name}"
        assert attrs["ecoasync.emitted_g"] == pytest.approx(record.emitted_g)
        assert attrs["ecoasync.zone"] == "GB"
        assert span.start_time == int(record.submitted_at.timestamp() * 1e9)
        assert span.end_time == int(record.ended_at.timestamp() * 1e9)
        kinds = [e.name for e in span.events]
        assert kinds[0] == "ecoasync.planned" and kinds[-1] == "ecoasync.completed"
        assert kinds.count("ecoasync.call_recorded") == record.calls

    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = list(metric.data.data_points)
    emitted = sum(p.value for p in points["ecoasync.llm.emissions"])
    assert emitted == pytest.approx(sum(r.emitted_g for r in records))
    energy = sum(p.value for p in points["ecoasync.llm.energy"])
    assert energy == pytest.approx(sum(r.energy_kwh for r in records))
    calls = sum(p.value for p in points["ecoasync.llm.calls"])
    assert calls == sum(r.calls for r in records)
    assert {p.attributes["ecoasync.model"] for p in points["ecoasync.llm.emissions"]} <= {
        "gpt-4o-mini",
        "gpt-4o",
        "claude-3-5-haiku-latest",
    }
    assert all(
        p.attributes["ecoasync.signal"] == "average/direct"
        for p in points["ecoasync.llm.emissions"]
    )
    avoided = sum(p.value for p in points["ecoasync.session.avoided"])
    assert avoided == pytest.approx(sum(r.saved_g for r in records))
    assert sum(p.count for p in points["ecoasync.session.delay"]) == 6
    assert sum(p.value for p in points["ecoasync.session.count"]) == 6
    trips = sum(p.value for p in points.get("ecoasync.budget.trips", []))
    assert trips == sum(r.budget_tripped for r in records)


async def test_otel_sink_failure_is_counted(logs: list[dict[str, object]]) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    sink = OpenTelemetrySink(tracer_provider=TracerProvider())
    sink._calls = None  # type: ignore[assignment]  # break it
    call = await _a_call_event()
    sink(call)
    assert sink.failures == 1
    assert logs[-1]["event"] == "ecoasync.sink_failed"
    await sink.aclose()


async def _a_call_event() -> CallRecorded:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, CallRecorded)
    with VirtualClock.installed(DAY):
        async with carbon_session(Policy(provider=FakeProvider.day(DAY)), bus=bus):
            await charge("gpt-4o", 0.001)
    event = got[0]
    assert isinstance(event, CallRecorded)
    return event


# --- Composite, Null, the protocol ---


async def test_composite_isolates_members_and_awaits_async_ones(
    logs: list[dict[str, object]],
) -> None:
    seen: list[str] = []

    def record(event: Event) -> None:
        seen.append(event.kind)

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    async def slow(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append("async:" + event.kind)

    null = NullSink()
    composite = CompositeSink(broken, record, slow, null)
    bus = EventBus()
    bus.subscribe(composite)
    await bus.emit(_started())
    assert seen[1] == "async:started" and null.events == 1
    assert composite.failures == 1 and bus.failures == 0
    assert (
        logs[-1]["member"]
        == "test_composite_isolates_members_and_awaits_async_ones.<locals>.broken"
    )
    await composite.aclose()
    with pytest.raises(TypeError):
        CompositeSink(42)  # type: ignore[arg-type]


def test_every_sink_is_a_sink(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    sinks: list[object] = [
        JsonlSink(tmp_path / "t.jsonl"),
        StructlogSink(),
        OpenTelemetrySink(tracer_provider=TracerProvider()),
        CompositeSink(),
        NullSink(),
    ]
    for sink in sinks:
        assert isinstance(sink, Sink), sink
        assert sink.failures == 0


def test_importing_sinks_does_not_import_opentelemetry() -> None:
    code = "import sys, ecoasync.sinks; print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_completed_events_carry_records(tmp_path: Path) -> None:
    assert Completed.kind == "completed"


def test_the_sinks_namespace_is_public_and_complete() -> None:
    import ecoasync.sinks as sinks

    assert sorted(sinks.__all__) == sorted(
        name for name in vars(sinks) if not name.startswith("_") and name not in {"annotations"}
    )
    for name in sinks.__all__:
        assert getattr(sinks, name) is not None
