"""Wrappers around the SDK resource methods, and where they go.

Layer: instrumentation. Imports values, the bus and the session's accounting (``_context``);
never the session itself, the sync API or the edges.

Each wrapper costs one ``ContextVar`` lookup outside a session and then calls the original
method unchanged. Inside a session it admits the call (refusal, downgrade), calls the
original, and charges the result: at once for a complete response, when the stream ends for
a stream. ``with_raw_response`` goes through the same methods (the SDK wraps the bound
method), so it is covered; its parsed value is cached by the SDK, so reading it here costs
the caller nothing.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._context import current
from .._log import get_logger
from ._charge import Call, admit, admit_sync, attach, emit, emit_sync, settings
from ._streams import Kind, instrument_stream, is_stream, usage_of

__all__ = ["TARGETS", "Target", "make_wrapper"]

log = get_logger()

_RAW_HEADER = "x-stainless-raw-response"
_warned: set[str] = set()


@dataclass(frozen=True, slots=True)
class Target:
    """One method to wrap: ``module.cls.method``; ``style`` says how."""

    sdk: str
    module: str
    cls: str
    method: str
    provider: str
    kind: Kind
    style: Literal["call", "manager"]  # create/parse, or anthropic's .stream() manager
    is_async: bool


_CHAT = "openai.resources.chat.completions"
_BETA_CHAT = "openai.resources.beta.chat.completions"  # parse() lived here in openai 1.x
_RESPONSES = "openai.resources.responses"
_MESSAGES = "anthropic.resources.messages"


def _targets() -> tuple[Target, ...]:
    openai_methods: tuple[tuple[str, Kind, tuple[str, ...]], ...] = (
        (_CHAT, "chat", ("create", "parse")),
        (_BETA_CHAT, "chat", ("parse",)),
        (_RESPONSES, "responses", ("create", "parse")),
    )
    anthropic_methods: tuple[tuple[str, Literal["call", "manager"]], ...] = (
        ("create", "call"),
        ("parse", "call"),
        ("stream", "manager"),
    )
    out = [
        Target("openai", module, cls, method, "openai", kind, "call", is_async)
        for module, kind, methods in openai_methods
        for cls, is_async in (
            ("Responses" if module == _RESPONSES else "Completions", False),
            ("AsyncResponses" if module == _RESPONSES else "AsyncCompletions", True),
        )
        for method in methods
    ]
    out += [
        Target("anthropic", _MESSAGES, cls, method, "anthropic", "anthropic", style, is_async)
        for cls, is_async in (("Messages", False), ("AsyncMessages", True))
        for method, style in anthropic_methods
    ]
    return tuple(out)


TARGETS = _targets()


def _raw_mode(kwargs: dict[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    if not headers:
        return None
    for key, value in dict(headers).items():
        if isinstance(key, str) and key.lower() == _RAW_HEADER:
            return str(value)
    return None


def _not_measured(target: Target, why: str) -> None:
    key = f"{target.cls}.{target.method}:{why}"
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "ecoasync.call_not_measured",
            sdk=target.sdk,
            method=f"{target.cls}.{target.method}",
            reason=why,
        )


def _model_arg(kwargs: dict[str, Any]) -> str:
    model = kwargs.get("model")
    return model if isinstance(model, str) else ""


def _set_model(kwargs: dict[str, Any], call: Call) -> None:
    if isinstance(kwargs.get("model"), str) and call.effective != call.requested:
        kwargs["model"] = call.effective


def _is_raw(result: object) -> bool:
    return hasattr(result, "http_response") and callable(getattr(result, "parse", None))


def _charge_sync(call: Call, target: Target, result: Any) -> None:
    try:
        parsed = result.parse() if _is_raw(result) else result
        if is_stream(parsed):
            instrument_stream(parsed, call, target.kind, is_async=False)
            return
        events, impacts = call.finish(usage_of(target.kind, parsed))
    except Exception as exc:
        call.failed(exc)
        return
    emit_sync(call.acct, events)
    attach(parsed, impacts)


async def _charge_async(call: Call, target: Target, result: Any) -> None:
    try:
        parsed = result.parse() if _is_raw(result) else result
        if inspect.isawaitable(parsed):
            parsed = await parsed
        if is_stream(parsed):
            instrument_stream(parsed, call, target.kind, is_async=True)
            return
        events, impacts = call.finish(usage_of(target.kind, parsed))
    except Exception as exc:
        call.failed(exc)
        return
    await emit(call.acct, events)
    attach(parsed, impacts)


def _call_wrapper(original: Callable[..., Any], target: Target) -> Callable[..., Any]:
    if target.is_async:

        @functools.wraps(original)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            acct = current()
            if acct is None or not settings.active:
                return await original(self, *args, **kwargs)
            if _raw_mode(kwargs) == "stream":
                _not_measured(target, "with_streaming_response")
                return await original(self, *args, **kwargs)
            call = await admit(
                acct, target.provider, _model_arg(kwargs), stream=kwargs.get("stream") is True
            )
            _set_model(kwargs, call)
            result = await original(self, *args, **kwargs)
            await _charge_async(call, target, result)
            return result

        return async_wrapper

    @functools.wraps(original)
    def sync_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        acct = current()
        if acct is None or not settings.active:
            return original(self, *args, **kwargs)
        if _raw_mode(kwargs) == "stream":
            _not_measured(target, "with_streaming_response")
            return original(self, *args, **kwargs)
        call = admit_sync(
            acct, target.provider, _model_arg(kwargs), stream=kwargs.get("stream") is True
        )
        _set_model(kwargs, call)
        result = original(self, *args, **kwargs)
        _charge_sync(call, target, result)
        return result

    return sync_wrapper


def _find_request(manager: object) -> str | None:
    for name in vars(manager):
        if name.endswith("__api_request"):
            return name
    return None


def _bind_manager(original: Callable[..., Any], target: Target) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        acct = current()
        if acct is None or not settings.active:
            return original(self, *args, **kwargs)
        call = admit_sync(acct, target.provider, _model_arg(kwargs), stream=True)
        _set_model(kwargs, call)
        manager = original(self, *args, **kwargs)
        name = _find_request(manager)
        if name is None:
            _not_measured(target, "unknown stream manager layout")
            return manager
        request = getattr(manager, name)

        def instrument(stream: Any) -> None:
            try:
                if is_stream(stream):
                    instrument_stream(stream, call, target.kind, is_async=target.is_async)
                else:
                    _not_measured(target, "stream manager returned no stream")
            except Exception as exc:
                call.failed(exc)

        if target.is_async:

            async def send_async() -> Any:
                call.restart_timer()
                stream = await request
                instrument(stream)
                return stream

            setattr(manager, name, send_async())
        else:

            def send() -> Any:
                call.restart_timer()
                stream = request()
                instrument(stream)
                return stream

            setattr(manager, name, send)
        return manager

    return wrapper


def make_wrapper(original: Callable[..., Any], target: Target) -> Callable[..., Any]:
    if target.style == "manager":
        return _bind_manager(original, target)
    return _call_wrapper(original, target)
