"""Credentials that never show themselves: not in reprs, messages, logs or traceback locals.

Layer: the bottom of the HTTP core; imports nothing of ecoasync.

- :class:`Secret` holds a credential; its repr is ``Secret('***')``.
- :class:`SecretHeader` puts one into a request at the last moment, as httpx's ``auth=`` step:
  no dict of headers with a credential in it sits in a frame that a traceback could print.
- :class:`Scrubber` replaces a provider's credentials in a text by ``***``.
- :func:`forget_locals` empties the frames of an error that came out of httpx (or a parser)
  before it is chained to the error a user sees, so that a logger printing traceback locals
  (structlog with rich does) finds nothing there.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["Scrubber", "Secret", "SecretHeader", "forget_locals", "secret_from"]


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value.isascii() or not value.isprintable():
            # it goes into an HTTP header; a bad one would fail deep in httpx, with the value
            # in the error
            raise ValueError("a credential must be printable ASCII (no spaces around it)")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with this credential replaced by ``***`` (credentials under 4 characters
        are left: they would mangle ordinary words)."""
        return text.replace(self._value, "***") if len(self._value) >= 4 else text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_from(value: str | None, env: tuple[str, ...], *, what: str, owner: str) -> Secret:
    """``value``, else the first of the environment variables ``env`` that is set."""
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{owner}: {what} must be a non-empty string")
        found = value.strip()
    else:
        found = next((v for name in env if (v := os.environ.get(name, "").strip())), "")
        if not found:
            raise ValueError(
                f"{owner} needs {what}: pass {what}=... or set the environment variable {env[0]}"
            )
    try:
        return Secret(found)
    except ValueError:
        raise ValueError(f"{owner}: {what} must be printable ASCII") from None


class SecretHeader:
    """An httpx ``auth=`` that sets header ``name`` to ``prefix`` + the secret, as the request
    is sent (httpx calls it; its frame is gone before anything can fail)."""

    __slots__ = ("_name", "_prefix", "_secret")

    def __init__(self, name: str, secret: Secret, *, prefix: str = "") -> None:
        self._name = name
        self._secret = secret
        self._prefix = prefix

    def __call__(self, request: httpx.Request) -> httpx.Request:
        request.headers[self._name] = self._prefix + self._secret.reveal()
        return request

    def __repr__(self) -> str:
        return f"SecretHeader({self._name!r}, ***)"


class Scrubber:
    """Replaces every credential ``secrets()`` gives (asked each time: tokens change)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Callable[[], Iterable[Secret]] = tuple) -> None:
        self._secrets = secrets

    def __call__(self, text: str) -> str:
        for secret in self._secrets():
            text = secret.scrub(text)
        return text


def forget_locals(error: BaseException) -> None:
    """Clear the local variables of the finished frames in ``error``'s traceback, and in those
    of the errors it was raised from or during.

    Call it on an error that has left the code that raised it (a frame still running is
    skipped). The traceback keeps its files and lines; only the values go.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        pending += (exc.__cause__, exc.__context__)
