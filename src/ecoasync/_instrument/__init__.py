"""Instrumentation of the OpenAI and Anthropic SDKs: ``instrument()`` / ``uninstrument()``.

Process-wide, idempotent and reversible. The wrappers live on the SDKs' resource classes, so
clients created before and after are covered. An SDK that is not imported yet is patched
the moment it is imported (a small post-import hook on ``sys.meta_path``), so instrumenting
never imports the SDKs itself. Outside a session a wrapper costs one ``ContextVar`` lookup.

Only ``_context``, ``_records``, ``events`` and ``_exceptions`` of the core are used here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import anyio

from .._checks import is_number, is_whole
from .._context import Accounting, current
from .._log import get_logger
from .._records import CallRecord
from . import _charge, _impacts, _sdk
from ._impacts import ElectricityMix, register_model, unregister_model

__all__ = [
    "ElectricityMix",
    "ensure_instrumented",
    "instrument",
    "is_instrumented",
    "record_call",
    "record_call_sync",
    "register_model",
    "uninstrument",
    "unregister_model",
]

log = get_logger()

_SDKS = ("openai", "anthropic")
_MARK = "__ecoasync_target__"


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.active = False
        self.user_off = False  # uninstrument() was called: sessions do not turn it back on
        self.patched: dict[tuple[str, str, str], tuple[type, Any]] = {}
        self.finder: _PostImportFinder | None = None


_state = _State()


def is_instrumented() -> bool:
    """Whether the SDK wrappers are on (by :func:`instrument` or a session)."""
    return _state.active


def instrument(*, attach_impacts: bool | None = None) -> None:
    """Wrap the OpenAI and Anthropic SDK calls so that sessions measure and govern them.

    Idempotent; undone by :func:`uninstrument`. SDKs imported later are wrapped when they
    are imported. ``attach_impacts=True`` also sets ``response.impacts`` (EcoLogits' impacts
    object) on responses made inside a session; ``None`` keeps the current setting.
    A session calls this on entry unless :func:`uninstrument` was called.
    """
    if attach_impacts is not None:
        _charge.settings.attach_impacts = bool(attach_impacts)
    with _state.lock:
        _state.user_off = False
        if _state.active:
            return
        _state.active = _charge.settings.active = True
        for sdk in _SDKS:
            if sdk in sys.modules:
                _patch(sdk)
        if _state.finder is None:
            _state.finder = _PostImportFinder()
            sys.meta_path.insert(0, _state.finder)


def uninstrument() -> None:
    """Restore the SDKs' original methods (idempotent). Sessions no longer instrument
    automatically until :func:`instrument` is called again."""
    with _state.lock:
        _state.user_off = True
        _state.active = _charge.settings.active = False
        if _state.finder is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_state.finder)
            _state.finder = None
        for (_, _, method), (cls, original) in list(_state.patched.items()):
            setattr(cls, method, original)
        _state.patched.clear()


def ensure_instrumented() -> None:
    """What a session calls on entry: instrument unless already on or turned off by the user."""
    if _state.active or _state.user_off:
        return
    instrument()


def _patch(sdk: str) -> None:
    """Wrap every target of ``sdk`` that exists in its installed version (under the lock)."""
    for target in _sdk.TARGETS:
        if target.sdk != sdk:
            continue
        key = (target.module, target.cls, target.method)
        if key in _state.patched:
            continue
        try:
            module = importlib.import_module(target.module)
        except ImportError:
            continue  # this SDK line has no such module (e.g. beta.chat in openai 3.x)
        cls = getattr(module, target.cls, None)
        original = cls.__dict__.get(target.method) if isinstance(cls, type) else None
        if cls is None or original is None or not callable(original):
            continue
        if getattr(original, _MARK, None) is not None:
            continue
        wrapper = _sdk.make_wrapper(original, target)
        setattr(wrapper, _MARK, target)
        setattr(cls, target.method, wrapper)
        _state.patched[key] = (cls, original)
    # The SDKs' HTTP layer reads anyio.EndOfStream when a stream's generator is closed, and
    # anyio resolves that name lazily: an abandoned stream finalized at interpreter exit, when
    # importing no longer works, then printed a traceback. Resolve it while importing works.
    _ = anyio.EndOfStream


class _LoaderProxy(importlib.abc.Loader):
    """Runs the real loader, then wraps the SDK just imported."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _state.lock:
            if _state.active:
                try:
                    _patch(self._name)
                except Exception as exc:  # never break the user's import
                    log.exception("ecoasync.instrument_failed", sdk=self._name, error=repr(exc))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of an SDK's top-level package."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _SDKS or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _LoaderProxy(spec.loader, fullname)
        return spec


async def record_call(
    *,
    provider: str,
    model: str,
    output_tokens: int,
    latency_s: float,
    input_tokens: int | None = None,
    requested_model: str | None = None,
    stream: bool = False,
    session: Accounting | None = None,
) -> CallRecord | None:
    """Charge a call made some other way (a self-hosted model, another SDK) to the session.

    Energy comes from EcoLogits for ``(provider, model)`` (or :func:`register_model`),
    emissions from the session's grid, exactly as for an instrumented call; events are
    emitted (``CallRecorded``, maybe ``BudgetTripped``/``ModelUnknown``). Returns the record,
    or None outside a session.

    It never refuses: the call was already made, so it is a fact and is recorded even past the
    budget. The record that reaches the budget trips the session like an SDK call does, and
    the session's next SDK call is refused (check ``session.budget_tripped`` or
    ``session.remaining_g`` before a call you will record by hand).
    """
    call = _manual(provider, model, output_tokens, latency_s, requested_model, stream, session)
    if call is None:
        return None
    await _impacts.load()  # the first time, EcoLogits is imported in a worker thread
    events, _ = call.finish(_charge.Usage(output_tokens, input_tokens, model), latency_s=latency_s)
    await _charge.emit(call.acct, events)
    return call.record


def record_call_sync(
    *,
    provider: str,
    model: str,
    output_tokens: int,
    latency_s: float,
    input_tokens: int | None = None,
    requested_model: str | None = None,
    stream: bool = False,
    session: Accounting | None = None,
) -> CallRecord | None:
    """:func:`record_call` for sync code (any thread of a session)."""
    call = _manual(provider, model, output_tokens, latency_s, requested_model, stream, session)
    if call is None:
        return None
    events, _ = call.finish(_charge.Usage(output_tokens, input_tokens, model), latency_s=latency_s)
    _charge.emit_sync(call.acct, events)
    return call.record


def _manual(
    provider: str,
    model: str,
    output_tokens: int,
    latency_s: float,
    requested_model: str | None,
    stream: bool,
    acct: Accounting | None,
) -> _charge.Call | None:
    if not isinstance(provider, str) or not provider:
        raise ValueError(f"provider must be a non-empty string, got {provider!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty model id, got {model!r}")
    if not is_whole(output_tokens) or output_tokens < 0:
        raise ValueError(f"output_tokens must be an int >= 0, got {output_tokens!r}")
    if not is_number(latency_s) or not 0 <= latency_s < float("inf"):
        raise ValueError(f"latency_s must be a finite number of seconds >= 0, got {latency_s!r}")
    if acct is None:
        acct = current()
    if acct is None:
        return None
    requested = requested_model or model
    return _charge.Call(
        acct, provider, requested, model, stream=stream, downgraded=requested != model
    )
