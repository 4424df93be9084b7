"""Reading usage from responses and streams of the OpenAI and Anthropic SDKs (any version).

Objects are read by duck typing (``getattr``), so SDK lines that move classes around still
work. A stream is charged once, when it ends: exhausted, closed, or dropped (abandoned
early, it is charged for what was received).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from .._checks import is_whole
from .._log import get_logger
from ._charge import Call, Usage, emit_sync

__all__ = ["Kind", "Observer", "instrument_stream", "is_stream", "usage_of"]

log = get_logger()

Kind = Literal["chat", "responses", "anthropic"]


def _int(value: object) -> int | None:
    return value if is_whole(value) else None


def _estimate(text: str) -> int:
    """About four characters a token: used only when a response has no usage."""
    return math.ceil(len(text) / 4) if text else 0


def usage_of(kind: Kind, response: Any) -> Usage:
    """Output/input tokens and model of a complete (non-stream) response."""
    answered = getattr(response, "model", None)
    model = answered if isinstance(answered, str) else None
    usage = getattr(response, "usage", None)
    if kind == "chat":
        out = _int(getattr(usage, "completion_tokens", None))
        inp = _int(getattr(usage, "prompt_tokens", None))
        if out is None:
            text = "".join(
                getattr(getattr(c, "message", None), "content", None) or ""
                for c in getattr(response, "choices", None) or ()
            )
            out = _estimate(text)
        return Usage(out, inp, model)
    out = _int(getattr(usage, "output_tokens", None))
    inp = _int(getattr(usage, "input_tokens", None))
    if out is None:
        if kind == "responses":
            output_text = getattr(response, "output_text", None)
            out = _estimate(output_text if isinstance(output_text, str) else "")
        else:
            text = "".join(
                getattr(b, "text", None) or "" for b in getattr(response, "content", None) or ()
            )
            out = _estimate(text)
    return Usage(out, inp, model)


class Observer:
    """Watches a stream's items: the usage they report, else the content chunks counted."""

    __slots__ = ("chunks", "input_tokens", "kind", "model", "output_tokens")

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.chunks = 0
        self.output_tokens: int | None = None
        self.input_tokens: int | None = None
        self.model: str | None = None

    def observe(self, item: Any) -> None:
        try:
            if self.kind == "chat":
                self._chat(item)
            elif self.kind == "responses":
                self._responses(item)
            else:
                self._anthropic(item)
        except Exception as exc:  # an odd chunk must not break the user's stream
            log.warning("ecoasync.stream_chunk_unreadable", kind=self.kind, error=repr(exc))

    def _set_model(self, model: object) -> None:
        if isinstance(model, str) and model and self.model is None:
            self.model = model

    def _chat(self, chunk: Any) -> None:
        self._set_model(getattr(chunk, "model", None))
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            out = _int(getattr(usage, "completion_tokens", None))
            if out is not None:
                self.output_tokens = out
            inp = _int(getattr(usage, "prompt_tokens", None))
            if inp is not None:
                self.input_tokens = inp
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if (
                getattr(delta, "content", None)
                or getattr(delta, "tool_calls", None)
                or getattr(delta, "refusal", None)
            ):
                self.chunks += 1

    def _responses(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        if kind.endswith(".delta"):
            self.chunks += 1
            return
        response = getattr(event, "response", None)
        if response is None:
            return
        self._set_model(getattr(response, "model", None))
        usage = getattr(response, "usage", None)
        if usage is not None:
            out = _int(getattr(usage, "output_tokens", None))
            if out is not None:
                self.output_tokens = out
            inp = _int(getattr(usage, "input_tokens", None))
            if inp is not None:
                self.input_tokens = inp

    def _anthropic(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        if kind == "content_block_delta":
            self.chunks += 1
        elif kind == "message_start":
            message = getattr(event, "message", None)
            self._set_model(getattr(message, "model", None))
            usage = getattr(message, "usage", None)
            self.input_tokens = _int(getattr(usage, "input_tokens", None))
            start_out = _int(getattr(usage, "output_tokens", None))
            if start_out:
                self.output_tokens = start_out
        elif kind == "message_delta":
            out = _int(getattr(getattr(event, "usage", None), "output_tokens", None))
            if out is not None:
                self.output_tokens = out  # cumulative, per Anthropic's docs

    def usage(self) -> Usage:
        out = self.output_tokens if self.output_tokens is not None else self.chunks
        # a stream cut short may report fewer tokens than the chunks already received
        return Usage(max(out, self.chunks), self.input_tokens, self.model)


def is_stream(obj: object) -> bool:
    """An SDK ``Stream``/``AsyncStream`` (both lines: an ``_iterator`` over an HTTP response)."""
    return hasattr(obj, "_iterator") and hasattr(obj, "response")


def instrument_stream(stream: Any, call: Call, kind: Kind, *, is_async: bool) -> None:
    """Charge ``call`` when ``stream`` ends (exhausted, closed, garbage-collected), or when
    its session ends, whichever comes first: a stream left unfinished in the session is
    charged for what it received. Same object back to the caller: types unchanged."""
    observer = Observer(kind)
    acct = call.acct
    call.first_token()  # the stream's headers are in: its answer has begun

    def finish() -> None:
        acct.closed(finish)
        try:
            events, _ = call.finish(observer.usage())
            emit_sync(call.acct, events)
        except Exception as exc:  # it may run in a finaliser: never an "exception ignored"
            call.failed(exc)

    acct.opened(finish)

    original = stream._iterator
    response = stream.response
    if is_async:

        async def aiterate() -> AsyncIterator[Any]:
            completed = False
            try:
                async for item in original:
                    observer.observe(item)
                    yield item
                completed = True
            finally:
                finish()
            if completed:
                await acct.bus.flush()  # deliver CallRecorded to async handlers now

        stream._iterator = aiterate()
        _hook(response, "aclose", finish, is_async=True)
    else:

        def iterate() -> Iterator[Any]:
            try:
                for item in original:
                    observer.observe(item)
                    yield item
            finally:
                finish()

        stream._iterator = iterate()
        _hook(response, "close", finish, is_async=False)


def _hook(response: Any, name: str, finish: Callable[[], None], *, is_async: bool) -> None:
    """Charge when the HTTP response is closed early (``stream.close()``, ``with`` exit)."""
    original = getattr(response, name, None)
    if original is None:
        return
    if is_async:

        async def aclose() -> None:
            try:
                await original()
            finally:
                finish()

        setattr(response, name, aclose)
    else:

        def close() -> None:
            try:
                original()
            finally:
                finish()

        setattr(response, name, close)
