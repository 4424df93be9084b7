"""``JsonlSink``: one JSON object per line, appended by a writer thread."""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import json
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Literal

import anyio.to_thread

from .._log import get_logger
from ..events import CallRecorded, Completed, Event
from ._base import FailureCounter

__all__ = ["DEFAULT_EVENTS", "JsonlSink"]

log = get_logger()

DEFAULT_EVENTS: Final[tuple[type[Event], ...]] = (Completed, CallRecorded)
"""What a :class:`JsonlSink` writes unless told otherwise: what ``ecoasync report`` reads."""


def event_line(event: Event) -> bytes:
    """The JSON line for ``event`` (UTF-8, ending in a newline).

    ``event.to_dict()``, plus ``saved_g`` inside a ``Completed`` event's record so readers
    need not recompute it.
    """
    data = event.to_dict()
    if isinstance(event, Completed) and isinstance(data.get("record"), dict):
        data["record"]["saved_g"] = event.record.saved_g
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


class JsonlSink:
    """Append events to a JSON Lines file, one object per line, without blocking the loop.

    ``bus.subscribe(JsonlSink("ecoasync.jsonl"))``. Calling the sink only queues the event
    (no I/O, no await); a writer thread, started on the first event, serialises events in
    the order they came and appends them as whole lines with one ``write`` per batch to a
    file opened in append mode, so lines of concurrent sessions never interleave and a crash
    leaves every earlier line readable (a line cut by the crash is terminated before the
    next write, so it spoils only itself). ``fsync=True`` also survives power loss, at a
    cost per batch.

    Every line is ``event.to_dict()``: ``schema`` (the format version), ``event`` (the kind),
    the session's id, name and tags, ``at`` (UTC, ISO 8601 with ``Z``) and the event's
    fields. By default only ``Completed`` (the session's record: everything the report
    needs) and ``CallRecorded`` (one line per LLM call) are written; ``events="all"`` writes
    every event, or pass the event classes to keep.

    Rotation: with ``max_bytes``, a file that would grow past it is renamed ``PATH.1``
    (``PATH.1`` to ``PATH.2``, ... up to ``backups``) and a new one started. Rotation
    assumes one writing process per file.

    Failures (a full disk, a deleted directory, an event that cannot be serialised) are
    logged as ``ecoasync.sink_failed`` and counted in :attr:`failures`; the events they
    concern are counted in :attr:`lost`, so that :attr:`written` is the number of whole lines
    the file received. Before each batch the sink checks that its path still names the file
    it has open: a file deleted or replaced under it (``rm``, logrotate) is reopened (logged
    as ``ecoasync.sink_reopened``), and a deleted directory is a counted failure, never lines
    written to a file nobody can read. If more than ``max_queue`` events wait for the
    writer, new ones are dropped and counted in :attr:`dropped` (and logged once).

    After ``os.fork()`` the child's sink starts its own writer (and file descriptor) on its
    first event and writes only the child's events; its counters start at zero. A child
    that ends with ``os._exit`` skips the interpreter's exit hooks, so call :meth:`close`
    first (a ``multiprocessing`` child is closed for you).

    Call :meth:`aclose` (or :meth:`close` from sync code) to write what is queued and close
    the file; :meth:`aflush`/:meth:`flush` wait until what is queued is on disk. A sink not
    closed is flushed when the interpreter exits.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        events: Iterable[type[Event]] | Literal["all"] = DEFAULT_EVENTS,
        fsync: bool = False,
        max_bytes: int | None = None,
        backups: int = 5,
        max_queue: int = 100_000,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"JsonlSink path {str(self.path)!r} is a directory; give a file path")
        if not self.path.parent.is_dir():
            raise ValueError(
                f"JsonlSink path {str(self.path)!r}: the directory {str(self.path.parent)!r} "
                "does not exist; create it first"
            )
        if events == "all":
            self.events: tuple[type[Event], ...] = ()
        else:
            if isinstance(events, str):  # type: ignore[unreachable]  # a user's typo
                raise ValueError(
                    f"events must be 'all' or an iterable of event classes, got {events!r}"
                )
            self.events = tuple(events)
            for t in self.events:
                if not (isinstance(t, type) and issubclass(t, Event)):
                    raise TypeError(
                        f"events must be classes from ecoasync.events, got {t!r}; "
                        "e.g. events=[Completed, CallRecorded] or events='all'"
                    )
            if not self.events:
                raise ValueError("events is empty: nothing would be written; use events='all'")
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024
        ):
            raise ValueError(f"max_bytes must be None or an int >= 1024, got {max_bytes!r}")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 1:
            raise ValueError(f"backups must be an int >= 1, got {backups!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        self.fsync = bool(fsync)
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_queue = max_queue
        self._failures = FailureCounter()
        self.written = 0
        """Lines written."""
        self.lost = 0
        """Events that could not be written (see :attr:`failures`)."""
        self.dropped = 0
        """Events dropped because the queue was full."""
        self._cond = threading.Condition()
        self._queue: collections.deque[Event] = collections.deque()
        self._queued = 0
        self._handled = 0
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._size = 0
        self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
        _SINKS.add(self)

    @property
    def failures(self) -> int:
        return self._failures.count

    def __repr__(self) -> str:
        return (
            f"JsonlSink({str(self.path)!r}, written={self.written}, failures={self.failures}"
            f"{', closed' if self._closed else ''})"
        )

    # --- the bus side: never blocks, never raises ---

    def __call__(self, event: Event, /) -> None:
        if self.events and not isinstance(event, self.events):
            return
        try:
            self._enqueue(event)
        except Exception as exc:
            self._failures.record(self, exc, path=str(self.path), event_kind=event.kind)

    def _enqueue(self, event: Event) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the sink is closed; events after aclose() are not written")
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                if self.dropped == 1:
                    raise RuntimeError(
                        f"more than max_queue={self.max_queue} events wait for the disk; "
                        "dropping new ones (counted in sink.dropped)"
                    )
                return
            self._queue.append(event)
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"ecoasync-jsonl:{self.path.name}", daemon=True
                )
                self._thread.start()
                atexit.register(self._at_exit)
                _close_at_multiprocessing_exit(self)
            self._cond.notify_all()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's writer thread does not exist here, its lock may
        have been held at the fork, and what is queued is the parent's to write."""
        self._cond = threading.Condition()
        self._failures = FailureCounter()
        self._queue.clear()
        self._queued = self._handled = 0
        self.written = self.lost = self.dropped = 0
        if self._thread is not None:
            self._thread = None  # the next event starts the child's own writer
            atexit.unregister(self._at_exit)
        fd, self._fd = self._fd, None  # the child opens its own (rotation sees its own size)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- flushing and closing ---

    def flush(self, timeout: float | None = None) -> bool:
        """Block until the events queued so far are written; False if ``timeout`` ran out.

        Blocking: from async code use :meth:`aflush`.
        """
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._handled >= target, timeout)

    async def aflush(self) -> None:
        """Wait (in a worker thread) until the events queued so far are written."""
        await anyio.to_thread.run_sync(self.flush)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, stop the writer and close the file. Idempotent; blocking."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return  # still writing; the atexit hook will wait for it
            atexit.unregister(self._at_exit)
        self._close_fd()
        self._closed = True

    async def aclose(self) -> None:
        """Write what is queued and close the file (the waiting happens in a worker thread)."""
        await anyio.to_thread.run_sync(self.close)

    # --- the writer thread ---

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                batch = list(self._queue)
                self._queue.clear()
                closing = self._closing
            if batch:
                self._write_batch(batch)
            with self._cond:
                self._handled += len(batch)
                self._cond.notify_all()
                if closing and not self._queue:
                    return

    def _write_batch(self, batch: list[Event]) -> None:
        lines: list[bytes] = []
        for event in batch:
            try:
                lines.append(event_line(event))
            except Exception as exc:
                self.lost += 1
                self._failures.record(
                    self, exc, path=str(self.path), event_kind=event.kind, stage="serialise"
                )
        pending: list[bytes] = []
        pending_size = 0
        before = self.written
        try:
            self._check_path()
            for line in lines:
                if (
                    self.max_bytes is not None
                    and self._current_size() + pending_size + len(line) > self.max_bytes
                    and self._current_size() + pending_size > 0
                ):
                    self._write(b"".join(pending))
                    pending, pending_size = [], 0
                    self._rotate()
                pending.append(line)
                pending_size += len(line)
            if pending:
                self._write(b"".join(pending))
        except Exception as exc:
            unwritten = len(lines) - (self.written - before)
            self.lost += unwritten
            self._failures.record(
                self, exc, path=str(self.path), lines_lost=unwritten, stage="write"
            )
            self._close_fd()  # reopen on the next batch (the file may be back by then)

    def _check_path(self) -> None:
        """Close the file if its path no longer names it (deleted, replaced, its directory
        removed), so the next write reopens it or fails and is counted."""
        if self._fd is None:
            return
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        held = os.fstat(self._fd)
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return
        self._close_fd()
        with contextlib.suppress(Exception):
            log.warning(
                "ecoasync.sink_reopened",
                sink=type(self).__name__,
                path=str(self.path),
                reason="the file was replaced" if named is not None else "the file is gone",
            )

    def _current_size(self) -> int:
        self._open()
        return self._size

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > 0 and not _ends_with_newline(self.path, size):
                # a line cut by a crash: end it, so it spoils only itself
                os.write(fd, b"\n")
                size += 1
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, size
        return fd

    def _write(self, data: bytes) -> None:
        if not data:
            return
        fd = self._open()
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])  # a full disk may take part of it first
        finally:
            self._size += done
            self.written += data.count(b"\n", 0, done)  # whole lines only: the file's count
        if self.fsync:
            os.fsync(fd)

    def _rotate(self) -> None:
        self._close_fd()
        base = str(self.path)
        for i in range(self.backups - 1, 0, -1):
            src = f"{base}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{base}.{i + 1}")
        if os.path.exists(base):
            os.replace(base, f"{base}.1")

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self._failures.record(self, exc, path=str(self.path), stage="close")


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def _close_at_exit(ref: weakref.ReferenceType[JsonlSink]) -> None:
    sink = ref()
    if sink is not None:
        sink.close(timeout=10)


_SINKS: weakref.WeakSet[JsonlSink] = weakref.WeakSet()
"""Every sink of this process, for the fork hook below."""


def _after_fork_in_child() -> None:
    for sink in list(_SINKS):
        sink._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_multiprocessing_exit(sink: JsonlSink) -> None:
    """In a ``multiprocessing`` child, close the sink when the child's work is done: such a
    child ends with ``os._exit``, which skips ``atexit`` (and the lines still queued)."""
    process = sys.modules.get("multiprocessing.process")
    if process is None or process.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(sink, sink._at_exit, exitpriority=10)
