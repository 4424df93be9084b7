"""The sync API: ``carbon_session_sync`` and ``@carbon_aware``, over the async core.

No second implementation. A session that awaits nothing (its plan made from memory, running
now, no async handler on its bus) enters and exits in the caller's thread; any other runs in
the loop behind anyio's blocking portal, crossed to only to wait, fetch or feed an async
handler. The body always runs in the caller's thread with the caller's context variables."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal, BlockingPortalProvider

from ._bus import EventBus
from ._clock import Clock, current_clock
from ._context import current, reset_current, set_current
from ._policy import Policy
from ._session import COMPLETION_TIMEOUT_S, Session, _SessionManager, carbon_session

__all__ = ["carbon_aware", "carbon_session_sync"]

P = ParamSpec("P")
R = TypeVar("R")

T = TypeVar("T")
_PORTALS = BlockingPortalProvider()
_kept: tuple[int, BlockingPortalProvider] | None = None
_kept_lock = threading.Lock()


def _shared_portals() -> BlockingPortalProvider:
    """The portal every sync session of the process shares, kept running after its first use.

    Starting an event loop thread costs about a millisecond, so the sync API holds one lease
    on it for the life of the process (stopped at exit; restarted in a forked child).
    """
    global _kept, _PORTALS
    if _kept is not None and _kept[0] == os.getpid():
        return _PORTALS
    with _kept_lock:
        if _kept is not None and _kept[0] == os.getpid():
            return _PORTALS
        if _kept is not None:  # forked: the parent's loop thread does not exist here
            _PORTALS = BlockingPortalProvider()
        provider = _PORTALS
        provider.__enter__()
        _kept = (os.getpid(), provider)
        atexit.register(_stop_at_exit, provider)
        return provider


def _stop_at_exit(provider: BlockingPortalProvider) -> None:
    """Stop the portal, cancelling what still runs on it: a forecast fetched for a session
    that has ended (bounded, but by up to ``forecast_timeout``), a wait in a daemon thread
    (which then records its session as cancelled). Exit never waits for them."""
    portal = provider.__enter__()
    with contextlib.suppress(RuntimeError):  # already stopped
        portal.call(portal.stop, True)
    provider.__exit__(None, None, None)
    provider.__exit__(None, None, None)  # the lease held for the process


def _spawn_on_portal(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start ``fn()`` on the shared portal's loop, where it may outlive the session that
    started it (a forecast fetched while the body runs)."""
    with _shared_portals() as portal:
        portal.start_task_soon(fn)


_POLL_S = 0.2


def _refuse_inside_event_loop(what: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    trio = sys.modules.get("trio")
    if not running and trio is not None:
        running = bool(trio.lowlevel.in_trio_run())
    if running:
        raise RuntimeError(
            f"{what} was called from a thread that runs an event loop, where it would block the "
            f"loop; use {instead} instead (or call this from a worker thread)"
        )


def _wait_interruptibly(future: Future[T]) -> T:
    """``future.result()``, waking up now and then so that Ctrl-C is seen promptly on every
    platform (a blocked lock wait is not always interrupted by a signal)."""
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except TimeoutError:
            continue


class _SyncSession:
    """The context manager :func:`carbon_session_sync` returns.

    Entering plans in this thread when nothing needs awaiting (the forecast, and the history
    the strategy reads, in memory; a plan that runs now; no async handler on the bus): the
    session then runs here and no thread is crossed. Otherwise it runs on the shared portal's
    loop (:class:`_OnPortal`) while this thread waits. Either way the body runs here.
    """

    __slots__ = ("_manager", "_on_portal")

    def __init__(self, manager: _SessionManager) -> None:
        self._manager = manager
        self._on_portal: _OnPortal | None = None

    def __enter__(self) -> Session:
        _refuse_inside_event_loop(
            "carbon_session_sync()", "'async with ecoasync.carbon_session(...)'"
        )
        session = self._manager._enter_nowait(_spawn_on_portal)
        if session is not None:
            return session
        on_portal = self._on_portal = _OnPortal(self._manager)
        return on_portal.enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._on_portal is not None:
            self._on_portal.exit(exc_type, exc, tb)
        elif self._manager._exit_nowait(exc):
            # async handlers wait for events (Completed among them): they need a loop
            with _shared_portals() as portal:
                portal.call(self._manager._deliver, exc)


class _OnPortal:
    """A sync session run on the shared portal's loop, for when entering awaits something
    (a forecast to fetch, a slot to wait for, an async handler)."""

    def __init__(self, manager: _SessionManager) -> None:
        self._manager = manager
        self._entered: Future[Session] = Future()
        self._finished = threading.Event()
        self._exit_event: anyio.Event | None = None
        self._exc_info: tuple[Any, Any, Any] = (None, None, None)
        self._task: Future[None] | None = None
        self._ctx_token: object | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False

    async def _run(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:  # interrupted before we even started
                    scope.cancel()
                self._exit_event = anyio.Event()
                try:
                    session = await self._manager.__aenter__()
                except BaseException as exc:
                    self._entered.set_exception(exc)
                    return
                self._entered.set_result(session)
                try:
                    await self._exit_event.wait()
                finally:
                    await self._manager.__aexit__(*self._exc_info)
        finally:
            self._finished.set()

    def _cancel(self, portal: BlockingPortal) -> None:
        """Cancel the session's wait from this thread (after Ctrl-C), whatever its stage."""
        self._cancel_requested = True  # seen by _run if it has not set its scope yet
        scope = self._scope
        if scope is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                portal.call(scope.cancel)

    def enter(self) -> Session:
        self._portals = _shared_portals()
        portal = self._portals.__enter__()
        try:
            try:
                self._task = portal.start_task_soon(self._run)
                session = _wait_interruptibly(self._entered)
            except BaseException:
                if not self._entered.done():
                    # interrupted (Ctrl-C) while planning or waiting: cancel the wait and let
                    # the session record itself as cancelled before we go on
                    self._cancel(portal)
                    self._finished.wait(COMPLETION_TIMEOUT_S + 1.0)
                raise
        except BaseException:
            self._portals.__exit__(None, None, None)
            raise
        self._portal = portal
        self._ctx_token = set_current(session._acct)
        return session

    def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ctx_token is not None:
            reset_current(self._ctx_token)
            self._ctx_token = None
        self._exc_info = (exc_type, exc, tb)
        try:
            assert self._exit_event is not None and self._task is not None
            self._portal.call(self._exit_event.set)
            self._task.result()
        finally:
            self._portals.__exit__(None, None, None)


def carbon_session_sync(
    policy: Policy | None = None,
    *,
    bus: EventBus | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    clock: Clock | None = None,
) -> _SyncSession:
    """The sync twin of :func:`carbon_session`: ``with carbon_session_sync(policy) as session:``.

    Entering blocks this thread for the forecast and the wait, if any (Ctrl-C cancels cleanly
    and the session is recorded as cancelled); a session that runs now with its forecast in
    memory is planned in this thread, and one with no delay budget never waits for its
    forecast. The body runs in this thread with its context variables; a session that waits
    runs in a shared background event loop. Raises ``RuntimeError`` when called from a thread
    that runs an event loop.
    """
    manager = _SessionManager(
        policy, bus=bus, name=name, tags=tags, clock=clock or current_clock(), parent=current()
    )
    return _SyncSession(manager)


@overload
def carbon_aware(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def carbon_aware(
    policy: Policy | None = None,
    /,
    *,
    bus: EventBus | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    clock: Clock | None = None,
    **policy_fields: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def carbon_aware(
    policy: Policy | Callable[..., Any] | None = None,
    /,
    *,
    bus: EventBus | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    clock: Clock | None = None,
    **policy_fields: Any,
) -> Any:
    """Run each call of the decorated function in its own carbon-aware session.

    ``@carbon_aware(max_delay="4h", budget_g=5)`` (policy fields, validated now) or
    ``@carbon_aware(policy)`` or bare ``@carbon_aware``. Coroutine functions get an async
    wrapper (``async with carbon_session``); plain functions a sync one
    (``carbon_session_sync``), which refuses to run inside an event loop. The signature is
    kept; the session's name defaults to the function's qualified name.
    """
    if callable(policy) and not isinstance(policy, Policy):
        return carbon_aware()(policy)
    if policy is not None and policy_fields:
        raise TypeError(
            f"pass either a Policy or policy fields to carbon_aware, not both (got a Policy and {sorted(policy_fields)})"
        )
    resolved = (
        policy if policy is not None else (Policy(**policy_fields) if policy_fields else None)
    )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        session_name = name or getattr(func, "__qualname__", None) or "carbon_aware"
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            # a call returns the generator at once: the session would end before its body ran
            raise TypeError(
                f"@carbon_aware cannot wrap the generator function {session_name}: calling it "
                "only creates the generator, so its work would run outside the session; open "
                "a session around the work inside it ('async with carbon_session(...)' or "
                "'with carbon_session_sync(...)'), or decorate the function that consumes it"
            )
        if inspect.iscoroutinefunction(func):
            async_func: Callable[P, Awaitable[Any]] = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with carbon_session(
                    resolved, bus=bus, name=session_name, tags=tags, clock=clock
                ):
                    return await async_func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with carbon_session_sync(resolved, bus=bus, name=session_name, tags=tags, clock=clock):
                return func(*args, **kwargs)

        return sync_wrapper

    return decorate
