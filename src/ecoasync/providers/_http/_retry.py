"""The retry layer: whether, and when, to try a request again.

Layer: HTTP core; imports nothing of ecoasync.

An attempt that fails raises :class:`AttemptFailed`: what went wrong, whether another try may
succeed, and how long the server asked to wait. :class:`Retrying` runs attempts under a
:class:`Retry` policy (exponential backoff with jitter; ``Retry-After`` for 429) and, once a
server asks for a pause longer than ``max_retry_after``, sends nothing more until it is over
(capped at ``max_block``). Every wait goes through an injectable ``sleep``.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import anyio

__all__ = ["AttemptFailed", "Retry", "Retrying", "Sleep", "parse_retry_after"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class AttemptFailed(Exception):
    """One attempt failed; ``retry`` says whether another may succeed. Internal to the core.

    ``cause`` is short, and free of credentials (the layers that make it scrub what a server
    wrote). Raised ``from`` the underlying error, if there is one.
    """

    def __init__(
        self, cause: str, *, retry: bool, wait: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry = retry
        self.wait = wait
        self.status = status


@dataclass(frozen=True, slots=True)
class Retry:
    """How a provider retries.

    ``attempts`` is the total number of tries (``1`` never retries). Backoff before try ``n+1``
    is ``backoff * 2**(n-1)`` capped at ``max_backoff``, with "equal jitter" (a random point in
    its upper half). A 429 waits what its ``Retry-After`` asks, unless that is more than
    ``max_retry_after``: then the provider fails at once and sends no request until the time
    the server gave, or for the provider's ``ttl`` at most (a ``Retry-After`` of a year must
    not refuse every request for a year).
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry.attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be >= 1 (1 = no retry), got {self.attempts}")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"Retry.{name} must be a finite number of seconds >= 0, got {value!r}"
                )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return float(ceiling / 2 + rng.random() * ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - now).total_seconds(), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class Retrying:
    """Runs an attempt until it succeeds, the policy gives up, or the server asks for a pause.

    ``max_block``: the longest the server may stop this provider from sending requests (its
    forecast ``ttl``: past that, an answer is due anyway).
    """

    def __init__(
        self,
        policy: Retry,
        *,
        max_block: float,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.max_block = max_block
        self._sleep: Sleep = sleep or anyio.sleep
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._blocked_until = -math.inf
        self.retries = 0

    async def __call__(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[int, str, float], None] = lambda attempt, cause, delay: None,
    ) -> T:
        """``attempt()``'s value. Raises :class:`AttemptFailed` with the last cause (and how many
        attempts were made), ``from`` the last underlying error."""
        blocked = self._blocked_until - self._monotonic()
        if blocked > 0:
            raise AttemptFailed(
                f"rate limited (HTTP 429): no request for {blocked:.0f} s more, as the server asked",
                retry=False,
                status=429,
            )
        number = 1
        while True:
            try:
                return await attempt()
            except AttemptFailed as failed:
                delay = self._next(failed, number)
                on_retry(number, failed.cause, delay)
            await self._sleep(delay)  # (outside the handler: nothing raised here chains to it)
            number += 1

    def _next(self, failed: AttemptFailed, number: int) -> float:
        """The delay before attempt ``number + 1``; or the error that ends the run."""
        policy = self.policy
        wait = failed.wait
        if wait is not None and wait > policy.max_retry_after:
            block = min(wait, self.max_block)
            self._blocked_until = self._monotonic() + block
            capped = f" (capped at the provider's ttl; the server asked for {wait:.0f} s)"
            raise AttemptFailed(
                f"{failed.cause}; Retry-After {wait:.0f} s is more than max_retry_after="
                f"{policy.max_retry_after:g} s: no request for {block:.0f} s"
                + (capped if block < wait else ""),
                retry=False,
                status=failed.status,
            ) from failed.__cause__
        if number >= policy.attempts or not failed.retry:
            tries = f" after {number} attempts" if number > 1 else ""
            raise AttemptFailed(
                f"{failed.cause}{tries}", retry=False, status=failed.status
            ) from failed.__cause__
        self.retries += 1
        return wait if wait is not None else policy.delay(number, self._rng)
