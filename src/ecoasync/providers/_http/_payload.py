"""The payload layer: which answers are data, and reading them.

Layer: HTTP core; imports the retry layer's :class:`AttemptFailed` and nothing else of
ecoasync but the trace-time parser.

Only a 2xx answer's body is data: a 429 asks to wait, a 5xx may pass, a 3xx is a redirect the
client does not follow, anything else is refused. Bodies are read up to
:data:`MAX_BODY_BYTES`. The field helpers read a JSON payload and name the path of whatever
is wrong with it, in a :class:`PayloadError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from ._retry import AttemptFailed, parse_retry_after

__all__ = [
    "MAX_BODY_BYTES",
    "PayloadError",
    "Response",
    "as_list",
    "as_number",
    "as_time",
    "decode",
    "field",
    "kind_of",
]

MAX_BODY_BYTES: Final = 16 * 1024 * 1024


class PayloadError(ValueError):
    """A response that parsed as JSON but is not what the API documents."""


class Response:
    """What one attempt got back: status, the headers the core reads, and the body.

    Its repr shows no body (an error body may repeat a credential)."""

    __slots__ = ("body", "location", "reason", "retry_after", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        reason: str = "",
        retry_after: str | None = None,
        location: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.reason = reason
        self.retry_after = retry_after
        self.location = location

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}] {len(self.body)} bytes>"


def decode(response: Response, *, now: datetime, scrub: Callable[[str], str] = str) -> Any:
    """The JSON of a 2xx ``response``; else :class:`AttemptFailed` saying whether to retry.

    ``scrub`` cleans what the server wrote (an error body may repeat the token it was sent).
    """
    status = response.status
    head = f"HTTP {status} {response.reason}".rstrip()
    if status == 429:
        wait = parse_retry_after(response.retry_after, now=now)
        raise AttemptFailed("rate limited (HTTP 429)", retry=True, wait=wait, status=429)
    if status >= 500:
        raise AttemptFailed(head, retry=True, status=status)
    if status in (401, 403):
        raise AttemptFailed(
            f"{head}: the credentials were refused; check the token (or username and password)",
            retry=False,
            status=status,
        )
    if 300 <= status < 400:
        where = f" to {scrub(response.location)[:200]}" if response.location else ""
        raise AttemptFailed(
            f"{head}: a redirect{where}, not followed (set base_url to where it leads)",
            retry=False,
            status=status,
        )
    if not 200 <= status < 300:
        raise AttemptFailed(f"{head}{scrub(_detail(response.body))}", retry=False, status=status)
    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AttemptFailed(
            f"malformed JSON ({type(exc).__name__}: {str(exc)[:120]}; {len(response.body)} bytes)",
            retry=False,
        ) from exc


def _detail(body: bytes) -> str:
    """A short detail from an error body (``message``, ``error`` or ``detail`` of an object)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return f": {value[:200]}"
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return f": {value['message'][:200]}"
    return ""


# --- reading a payload ---------------------------------------------------------------------


def field(obj: object, key: str, path: str) -> object:
    """``obj[key]``, or a :class:`PayloadError` naming the path."""
    if not isinstance(obj, dict):
        raise PayloadError(f"{path or 'the response'} is {kind_of(obj)}, expected an object")
    if key not in obj:
        raise PayloadError(f"{path + '.' if path else ''}{key} is missing")
    return obj[key]


def as_list(obj: object, path: str) -> list[Any]:
    if not isinstance(obj, list):
        raise PayloadError(f"{path} is {kind_of(obj)}, expected a list")
    return obj


def as_number(obj: object, path: str) -> float:
    """A finite number >= 0 (an integer too large for a float is not one)."""
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        raise PayloadError(f"{path} is {kind_of(obj)}, expected a number")
    if not 0 <= obj < math.inf:
        raise PayloadError(f"{path} is {kind_of(obj)}, expected a finite number >= 0")
    try:
        return float(obj)
    except OverflowError:
        raise PayloadError(f"{path} is {kind_of(obj)}, too large for a number") from None


def as_time(obj: object, path: str) -> datetime:
    """An ISO 8601 time with an offset (``Z``, ``+01:00``), converted to UTC."""
    from .._csv import parse_trace_time

    if not isinstance(obj, str):
        raise PayloadError(f"{path} is {kind_of(obj)}, expected an ISO 8601 time")
    try:
        return parse_trace_time(obj)
    except ValueError as exc:
        raise PayloadError(f"{path} is {obj!r}, expected an ISO 8601 time with an offset") from exc


def kind_of(obj: object) -> str:
    """A short description of a JSON value for an error message (``int -1``, ``null``)."""
    if obj is None:
        return "null"
    if isinstance(obj, int) and obj.bit_length() > 64:
        return f"an integer of {obj.bit_length()} bits"
    return f"{type(obj).__name__} {repr(obj)[:40]}"
