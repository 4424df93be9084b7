"""What differs between event loops, in one place (as anyio hides its backends).

Layer: beside the values, below everything that waits (providers, session, testing). It
imports anyio, and asyncio or trio for the loop that runs; nothing of ecoasync.

- :func:`current_loop` names the running event loop: HTTP clients and shared requests belong
  to one loop each, so two loops in two threads never wake each other's tasks;
  :func:`loop_token` is its anyio token, for calls into it from other threads;
- :class:`Gate` parks tasks until it opens. On asyncio each parked task awaits a bare future
  of its own (about a tenth of an ``anyio.Event``, and no coroutine frame, which matters when
  ten thousand sessions wait on one request); elsewhere the gate is one ``anyio.Event``;
- :func:`wait_all_tasks_blocked` returns once no other task of the loop can run (the virtual
  clock jumps then);
- :func:`is_cancellation` tells a cancellation from any loop, or none (the sync API ends
  sessions without one);
- :func:`spawn` starts a task that nobody awaits and that may outlive its spawner (an async
  event handler, a forecast fetched while a session's body runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel

__all__ = [
    "Gate",
    "current_loop",
    "is_cancellation",
    "loop_token",
    "spawn",
    "wait_all_tasks_blocked",
]


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio)
        return None


def current_loop() -> object:
    """The running event loop (weak-referenceable, hashable): asyncio's loop, trio's token."""
    loop = _asyncio_loop()
    return loop if loop is not None else anyio.lowlevel.current_token().native_token


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is an event loop's cancellation (asyncio's or trio's), with or without
    a loop running (``anyio.get_cancelled_exc_class()`` needs one)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


_TOKENS: weakref.WeakKeyDictionary[object, anyio.lowlevel.EventLoopToken] = (
    weakref.WeakKeyDictionary()
)
"""Each running loop's token, while the loop lives (the token is the loop's, like a RunVar)."""


def loop_token() -> anyio.lowlevel.EventLoopToken:
    """The running loop's anyio token (``anyio.from_thread.run(..., token=)``).

    One per loop: every session keeps it, and one made per session would cost 100 bytes
    each (a megabyte for ten thousand waiting sessions) and half a microsecond."""
    loop = current_loop()
    token = _TOKENS.get(loop)
    if token is None:
        token = _TOKENS[loop] = anyio.lowlevel.current_token()
    return token


class Gate:
    """Tasks parked until the gate opens; it can be used again after that.

    Park and open from the loop's own thread.
    """

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        self._parked: asyncio.Future[None] | list[asyncio.Future[None]] | anyio.Event | None = None

    @property
    def parked(self) -> bool:
        """Whether a task was parked since the gate last opened (a cancelled one counts)."""
        return self._parked is not None

    def park(self) -> Awaitable[None]:
        """What to await until :meth:`open` (cancellable; a cancelled waiter leaves alone)."""
        parked = self._parked
        if isinstance(parked, anyio.Event):
            return parked.wait()
        loop = _asyncio_loop()
        if loop is None:
            event = self._parked = anyio.Event()
            return event.wait()
        future: asyncio.Future[None] = loop.create_future()
        if parked is None:
            self._parked = future
        elif isinstance(parked, list):
            parked.append(future)
        else:
            self._parked = [parked, future]
        return future

    def open(self) -> None:
        """Wake every task parked now (none later: the next :meth:`park` waits again)."""
        parked, self._parked = self._parked, None
        if parked is None:
            return
        if isinstance(parked, anyio.Event):
            parked.set()
            return
        for future in parked if isinstance(parked, list) else (parked,):
            if not future.done():  # not cancelled
                future.set_result(None)


async def wait_all_tasks_blocked(patience: int) -> None:
    """Return once no other task of the running loop is ready to run.

    On trio this is ``trio.testing.wait_all_tasks_blocked`` (it runs tasks in shuffled
    batches, so nothing short of the scheduler's own answer is exact). asyncio has no public
    way to ask: this checkpoints until its run queue (``loop._ready``, there since Python 3.4)
    holds nothing but this task's wake-up, at most ``patience`` times; on a loop without one
    (uvloop) a single checkpoint stands for it.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        await importlib.import_module("trio.testing").wait_all_tasks_blocked()
        return
    ready = getattr(asyncio.get_running_loop(), "_ready", ())
    for _ in range(patience):
        await anyio.lowlevel.checkpoint()
        if not ready:
            return


_SPAWNED: set[asyncio.Task[None]] = set()
"""The tasks :func:`spawn` started on asyncio, while they run (the loop keeps only a weak
reference to a task)."""


def spawn(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn()`` in a task of the running loop that nobody awaits.

    The task may outlive the code that started it; it is cancelled when the loop ends (a
    system task on trio). ``fn`` handles its own exceptions: on trio one that escapes ends
    the run.
    """
    loop = _asyncio_loop()
    if loop is None:
        import trio

        trio.lowlevel.spawn_system_task(fn, context=contextvars.copy_context())
        return
    task = loop.create_task(fn())
    _SPAWNED.add(task)
    task.add_done_callback(_SPAWNED.discard)
