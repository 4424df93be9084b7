"""``StoreGuard``: every call to a shared store is bounded, and a store that is down is skipped.

A session must never wait past its bound for Redis or Postgres. The guard runs each call
under ``timeout``; a call that fails, or times out while the store answers nobody, marks the
store down (one warning, one count), and for ``retry_after`` seconds every caller goes
straight to the process's own state. Then a single caller probes the store again; when it
answers, one line says the store is back.

A call that times out while the store keeps answering other calls of this process was kept
waiting by the process itself (a herd of sessions planning at once keeps its event loop
busy): it is made again, at most :data:`RETRIES_WHILE_ANSWERING` times (store calls are
idempotent). So a session waits at most ``timeout`` for a store that has stopped answering,
and at most four times that for one that answers its neighbours.

Layer: edges; imports values (``_checks``, ``_log``) and the backend seam (its own thread
work).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
import anyio.lowlevel

from .._backend import run_sync
from .._checks import is_number
from .._log import get_logger

__all__ = ["DOWN", "StoreGuard", "check_seconds", "import_off_loop", "needs"]

log = get_logger()

T = TypeVar("T")


class _Down:
    """The store did not answer (see :data:`DOWN`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DOWN"


RETRIES_WHILE_ANSWERING: Final = 3
"""How often a call that timed out is made again while the store is answering other calls."""

DOWN: Final = _Down()
"""What :meth:`StoreGuard.call` returns when the caller should use its fallback."""


def check_seconds(name: str, value: object, *, owner: str) -> float:
    """A positive, finite number of seconds (or a clear error naming the option)."""
    from datetime import timedelta

    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not is_number(value):
        raise TypeError(f"{owner}: {name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def needs(module: str, extra: str, owner: str) -> None:
    """Refuse to build ``owner`` without ``module``, naming the extra that brings it."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{owner} needs {module}: pip install 'ecoasync[{extra}]'")


async def import_off_loop(module: str) -> None:
    """Import ``module`` in a worker thread the first time (redis-py or psycopg take about
    200 ms to import: never on the event loop, and never inside a store call's bound)."""
    if module not in sys.modules:
        await run_sync(importlib.import_module, module)


class StoreGuard:
    """Bounds the calls to one store and remembers when it is down.

    Args:
        store: the store's name in log lines (``"redis"``, ``"postgres"``).
        timeout: seconds one call may take before the caller falls back.
        retry_after: seconds to skip the store after a failure, before probing it again.
    """

    def __init__(
        self,
        store: str,
        *,
        timeout: float,
        retry_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.retry_after = retry_after
        self._monotonic = monotonic
        self._retry_at = -math.inf
        self._down_since: float | None = None
        self._probing = False
        self._last_answer = -math.inf
        self.outages = 0
        """How many times the store went down (each logged once)."""
        self.fallbacks = 0
        """Calls answered by the fallback because the store was down, slow or failing."""

    @property
    def down(self) -> bool:
        """Whether the store is currently taken to be down."""
        return self._down_since is not None

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str) -> T | _Down:
        """``await fn()`` within ``timeout``; :data:`DOWN` if the store is (or just went) down."""
        probe = False
        if self._down_since is not None:
            if self._probing or self._monotonic() < self._retry_at:
                self.fallbacks += 1
                await anyio.lowlevel.checkpoint()
                return DOWN
            self._probing = probe = True
        try:
            for attempt in range(RETRIES_WHILE_ANSWERING + 1):
                try:
                    with anyio.fail_after(self.timeout):
                        result = await fn()
                    break
                except TimeoutError:
                    # the store answered another call meanwhile: the wait was this process's
                    # own (a herd of sessions keeps the event loop busy), so ask again (the
                    # calls are idempotent); a store that answers nobody is down
                    if attempt == RETRIES_WHILE_ANSWERING or not self._answering():
                        raise
        except Exception as exc:  # the store failed: whatever it was, the caller falls back
            self.failed(exc, what=what)
            return DOWN
        finally:
            if probe:
                self._probing = False
        self._last_answer = self._monotonic()
        if self._down_since is not None:
            log.info(
                "ecoasync.store_recovered",
                store=self.store,
                down_s=round(self._monotonic() - self._down_since, 3),
                fallbacks=self.fallbacks,
            )
            self._down_since = None
        return result

    def _answering(self) -> bool:
        return self._monotonic() - self._last_answer < self.timeout

    def failed(self, exc: Exception, *, what: str) -> None:
        """Take the store to be down after ``exc`` (said once per outage; counted)."""
        self.fallbacks += 1
        now = self._monotonic()
        self._retry_at = now + self.retry_after
        if self._down_since is not None:
            return  # said already, when it went down
        self._down_since = now
        self.outages += 1
        error = (
            f"no answer within {self.timeout:g}s"
            if isinstance(exc, TimeoutError)
            else f"{type(exc).__name__}: {exc}"[:300]
        )
        log.warning(
            "ecoasync.store_unavailable",
            store=self.store,
            during=what,
            error=error,
            action="using this process's own state",
            retry_after_s=self.retry_after,
        )

    def __repr__(self) -> str:
        state = "down" if self.down else "up"
        return f"StoreGuard({self.store!r}, {state}, outages={self.outages}, fallbacks={self.fallbacks})"
