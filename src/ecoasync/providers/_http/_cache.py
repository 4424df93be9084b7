"""The cache layer: answers (and failures) kept for a while, shared by the whole process.

Layer: HTTP core; imports nothing of ecoasync.

A :class:`TtlCache` maps a key to a value until the value's time is up. Reading is a dict
lookup and a clock read (no I/O, no await), so sessions read it on their hot path; it is safe
to use from several threads (several event loops share one provider). The HTTP core keeps two:
the answers, for the provider's ``ttl``, and the failures, for a few seconds, so callers that
arrive just after a failure fail fast instead of hammering a struggling server.

Its interface (``get``, ``put``, ``forget``, ``clear``) is all the core asks of a cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Values by key, each until its ``ttl`` (seconds of ``monotonic``) is up.

    Stale entries are dropped when read, and all at once when the cache holds more than
    ``size`` entries.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, *, size: int = 256) -> None:
        self._monotonic = monotonic
        self._size = size
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        """Held to change the entries: a sweep iterates them, and a garbage collection during
        it can switch threads (``list(d.items())`` is not atomic)."""

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` if it is still fresh, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: Hashable, value: V, ttl: float) -> None:
        now = self._monotonic()
        entries = self._entries
        with self._lock:
            if len(entries) >= self._size:
                for stale in [k for k, (expires, _) in entries.items() if expires <= now]:
                    del entries[stale]
            entries[key] = (now + ttl, value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
