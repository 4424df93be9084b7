"""The client layer: one ``httpx.AsyncClient`` per event loop, and one attempt at a GET.

Layer: HTTP core; imports the backend seam, the retry layer's :class:`AttemptFailed` and the
payload layer's :class:`Response`.

httpx and httpcore are imported, and the TLS context built, in a worker thread the first time
(about 400 ms together), so the event loop never waits for them; once that is done, clients
are made without the thread. A client belongs to the loop it was made in (its connections
do): each loop that uses a provider gets its own, and a client is dropped with its loop.
Whatever goes wrong, from importing httpx to reading the last byte, comes out as
:class:`AttemptFailed`, with the frames of httpx's error emptied of their values (see
:func:`~._secrets.forget_locals`).
"""

from __future__ import annotations

import ssl
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Final, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..._backend import current_loop
from ..._version import __version__
from ._payload import MAX_BODY_BYTES, Response
from ._retry import AttemptFailed
from ._secrets import SecretHeader, forget_locals

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "Client"]

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds one HTTP attempt may take, from connecting to the last byte of the body."""
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
"""Seconds to establish a connection."""

_MODULES: Final = ("httpx", "httpcore", "httpcore._backends.anyio", "httpcore._backends.auto")
_LOAD_LOCK = threading.Lock()
_SSL_CONTEXT: ssl.SSLContext | None = None
_PLAIN_CONTEXT: ssl.SSLContext | None = None
"""What clients of ``http://`` URLs are given: httpx builds a context even for ``verify=False``
(about 1 ms of the event loop per client), so they share one."""
_LOADED = False


def _loaded(tls: bool) -> bool:
    """Whether :func:`_load` would do no I/O: everything imported (by it, or by the application:
    the OpenAI and Anthropic SDKs use httpx) and, for TLS, the context built."""
    if not _LOADED:
        modules = sys.modules
        if not all(name in modules for name in _MODULES):
            return False
        trio = getattr(modules.get("httpcore._synchronization"), "trio", None)
        if trio is not None and "httpcore._backends.trio" not in modules:
            return False
    return not tls or _SSL_CONTEXT is not None


def _load(tls: bool) -> ssl.SSLContext:
    """Import httpx and httpcore (httpcore imports trio when it is installed) and build the TLS
    context: in a worker thread the first time (see :meth:`Client._make`)."""
    global _SSL_CONTEXT, _PLAIN_CONTEXT, _LOADED
    import httpcore
    import httpcore._backends.anyio
    import httpcore._backends.auto
    import httpx

    if httpcore._synchronization.trio is not None:  # type: ignore[attr-defined]
        import httpcore._backends.trio

    _LOADED = True
    with _LOAD_LOCK:
        if not tls:
            if _PLAIN_CONTEXT is None:
                _PLAIN_CONTEXT = httpx.create_ssl_context(verify=False)
            return _PLAIN_CONTEXT
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = httpx.create_ssl_context()
        return _SSL_CONTEXT


class Client:
    """GETs against ``base_url``, one client per event loop (see the module)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[object, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self.requests = 0
        """Requests sent (every attempt counts)."""

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        auth: SecretHeader | None = None,
    ) -> Response:
        """One GET of ``path``: the whole body, within ``timeout``; or :class:`AttemptFailed`."""
        client = self._clients.get(current_loop()) or await self._make()
        import httpx

        self.requests += 1
        try:
            with anyio.fail_after(self.timeout):
                async with (
                    client.stream("GET", path, params=params, auth=auth) as answer,
                    aclosing(cast("AsyncGenerator[bytes]", answer.aiter_bytes())) as chunks,
                ):
                    body = bytearray()
                    async for chunk in chunks:
                        body += chunk
                        if len(body) > MAX_BODY_BYTES:
                            raise AttemptFailed(
                                f"response larger than {MAX_BODY_BYTES} bytes", retry=False
                            )
        except AttemptFailed:
            raise
        except TimeoutError as exc:
            forget_locals(exc)
            raise AttemptFailed(
                f"no complete answer within timeout={self.timeout:g} s", retry=True
            ) from exc
        except httpx.TimeoutException as exc:
            forget_locals(exc)
            raise AttemptFailed(f"{_phase(exc)} timed out", retry=True) from exc
        except httpx.TransportError as exc:
            forget_locals(exc)
            raise AttemptFailed(f"{type(exc).__name__}: {_short(exc)}", retry=True) from exc
        except Exception as exc:  # another httpx error (a bad URL, a decoding error), or worse
            forget_locals(exc)
            raise AttemptFailed(f"{type(exc).__name__}: {_short(exc)}", retry=False) from exc
        headers = answer.headers
        return Response(
            answer.status_code,
            bytes(body),
            reason=answer.reason_phrase,
            retry_after=headers.get("retry-after"),
            location=headers.get("location"),
        )

    async def _make(self) -> httpx.AsyncClient:
        """The client of the running loop, made now (httpx loaded first, off the loop)."""
        tls = self._transport is None and self.base_url.startswith("https://")
        try:
            if _loaded(tls):
                await anyio.lowlevel.checkpoint()
                context = _load(tls)  # nothing left to import or build: no thread to start
            else:
                context = await anyio.to_thread.run_sync(_load, tls)
            loop = current_loop()
            client = self._clients.get(loop)
            if client is not None:
                return client  # another task made it while this one waited
            import httpx

            client = self._clients[loop] = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                verify=context,
                transport=self._transport,
                headers={"user-agent": f"ecoasync/{__version__}", "accept": "application/json"},
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=0),
                trust_env=self._transport is None,
            )
        except Exception as exc:  # httpx missing or broken, a bad proxy setting, ...
            forget_locals(exc)
            raise AttemptFailed(
                f"could not make the HTTP client: {type(exc).__name__}: {_short(exc)}",
                retry=False,
            ) from exc
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (a client of another loop is that loop's to close,
        and goes with it)."""
        client = self._clients.pop(current_loop(), None)
        if client is not None:
            await client.aclose()


def _phase(exc: Exception) -> str:
    return {
        "ConnectTimeout": "connecting",
        "ReadTimeout": "reading the response",
        "WriteTimeout": "sending the request",
        "PoolTimeout": "waiting for a free connection",
    }.get(type(exc).__name__, "the request")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
