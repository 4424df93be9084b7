"""A fake LLM server for the real OpenAI and Anthropic clients, through their mock transport.

Layer: instrumentation (fakes of the SDKs it wraps); imports nothing of ecoasync.

``FakeLLM`` answers ``/chat/completions``, ``/responses`` and ``/v1/messages`` with complete,
schema-valid payloads (JSON or SSE streams), so tests, examples and benchmarks run the real
SDK code offline. The clients are built around the SDK's own HTTP module (``httpx`` or
``httpx2``, whichever the installed SDK line uses).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["FakeLLM", "FakeRequest"]


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One request the fake received: its path and JSON body."""

    path: str
    body: dict[str, Any]

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


def _http_module(default_client: type) -> Any:
    """The HTTP package an SDK's client class is built on (``httpx`` or ``httpx2``)."""
    for base in default_client.__mro__[1:]:
        root = base.__module__.split(".")[0]
        if root.startswith("httpx"):
            return importlib.import_module(root)
    raise RuntimeError(f"cannot tell which HTTP package {default_client!r} is built on")


@dataclass
class FakeLLM:
    """A fake of the OpenAI and Anthropic HTTP APIs.

    ``output_tokens`` is how many tokens each answer has (streams send one chunk a token);
    ``dated`` maps a requested model to the dated id the answer reports (as the real APIs
    do: ``{"gpt-4o": "gpt-4o-2024-08-06"}``); ``fail`` makes every request answer with that
    HTTP status. ``requests`` lists what was received.
    """

    output_tokens: int = 40
    input_tokens: int = 12
    dated: Mapping[str, str] = field(default_factory=dict)
    fail: int | None = None
    requests: list[FakeRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _seq: int = 0

    # --- clients ---

    @overload
    def openai(self, *, sync: Literal[False] = False, **kwargs: Any) -> openai.AsyncOpenAI: ...
    @overload
    def openai(self, *, sync: Literal[True], **kwargs: Any) -> openai.OpenAI: ...
    def openai(self, *, sync: bool = False, **kwargs: Any) -> openai.AsyncOpenAI | openai.OpenAI:
        """A real ``openai.AsyncOpenAI`` (or ``OpenAI`` with ``sync=True``) talking to this fake."""
        import openai

        default: Any = openai.DefaultHttpxClient if sync else openai.DefaultAsyncHttpxClient
        http = _http_module(default)
        client_cls: Any = openai.OpenAI if sync else openai.AsyncOpenAI
        client: openai.AsyncOpenAI | openai.OpenAI = client_cls(
            api_key="sk-test",
            base_url="http://fake-llm.local/v1",
            http_client=default(transport=http.MockTransport(self.handle)),
            max_retries=0,
            **kwargs,
        )
        return client

    @overload
    def anthropic(
        self, *, sync: Literal[False] = False, **kwargs: Any
    ) -> anthropic.AsyncAnthropic: ...
    @overload
    def anthropic(self, *, sync: Literal[True], **kwargs: Any) -> anthropic.Anthropic: ...
    def anthropic(
        self, *, sync: bool = False, **kwargs: Any
    ) -> anthropic.AsyncAnthropic | anthropic.Anthropic:
        """A real ``anthropic.AsyncAnthropic`` (or ``Anthropic``) talking to this fake."""
        import anthropic

        default: Any = anthropic.DefaultHttpxClient if sync else anthropic.DefaultAsyncHttpxClient
        http = _http_module(default)
        client_cls: Any = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
        client: anthropic.AsyncAnthropic | anthropic.Anthropic = client_cls(
            api_key="sk-ant-test",
            base_url="http://fake-llm.local",
            http_client=default(transport=http.MockTransport(self.handle)),
            max_retries=0,
            **kwargs,
        )
        return client

    # --- the server ---

    def handle(self, request: Any) -> Any:
        """The mock transport's handler: one request in, one response out."""
        http = importlib.import_module(type(request).__module__.split(".")[0])
        body = json.loads(request.content or b"{}")
        path = request.url.path
        with self._lock:
            self.requests.append(FakeRequest(path, body))
            self._seq += 1
            seq = self._seq
        if self.fail is not None:
            return http.Response(
                self.fail,
                json={
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "try later"},
                },
            )
        model = self.dated.get(body.get("model", ""), body.get("model", "gpt-4o-mini"))
        stream = bool(body.get("stream"))
        builders: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "/v1/chat/completions": (self._chat, self._chat_sse),
            "/v1/responses": (self._response, self._responses_sse),
            "/v1/messages": (self._message, self._messages_sse),
        }
        if path not in builders:
            return http.Response(404, json={"error": {"message": f"no route {path}"}})
        whole, sse = builders[path]
        if stream:
            return http.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=sse(model, seq, body).encode(),
            )
        return http.Response(200, json=whole(model, seq, body))

    def _words(self) -> list[str]:
        return [f"w{i} " for i in range(self.output_tokens)]

    # OpenAI chat completions

    def _chat(self, model: str, seq: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{seq}",
            "object": "chat.completion",
            "created": 1_773_800_000,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": _content(body, "".join(self._words())),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": self.input_tokens,
                "completion_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }

    def _chat_sse(self, model: str, seq: int, body: dict[str, Any]) -> str:
        base = {
            "id": f"chatcmpl-{seq}",
            "object": "chat.completion.chunk",
            "created": 1_773_800_000,
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        chunks = [
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        ]
        chunks += [
            {**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            for w in self._words()
        ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": self.input_tokens,
                        "completion_tokens": self.output_tokens,
                        "total_tokens": self.input_tokens + self.output_tokens,
                    },
                }
            )
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"

    # OpenAI responses

    def _response(
        self, model: str, seq: int, body: dict[str, Any], *, status: str = "completed"
    ) -> dict[str, Any]:
        text = "".join(self._words()) if status == "completed" else ""
        fmt = (body.get("text") or {}).get("format") or {}
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and text:
            text = json.dumps({"answer": text.strip()[:40]})
        return {
            "id": f"resp_{seq}",
            "object": "response",
            "created_at": 1_773_800_000,
            "status": status,
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{seq}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ]
            if status == "completed"
            else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "temperature": 1.0,
            "top_p": 1.0,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            }
            if status == "completed"
            else None,
        }

    def _responses_sse(self, model: str, seq: int, body: dict[str, Any]) -> str:
        item_id = f"msg_{seq}"
        events: list[dict[str, Any]] = [
            {
                "type": "response.created",
                "response": self._response(model, seq, body, status="in_progress"),
            },
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {
                    "type": "message",
                    "id": item_id,
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            },
            {
                "type": "response.content_part.added",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
        ]
        events += [
            {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": w,
                "logprobs": [],
            }
            for w in self._words()
        ]
        text = "".join(self._words())
        events += [
            {
                "type": "response.output_text.done",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            },
            {
                "type": "response.content_part.done",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []},
            },
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "type": "message",
                    "id": item_id,
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                },
            },
            {"type": "response.completed", "response": self._response(model, seq, body)},
        ]
        out = []
        for n, event in enumerate(events):
            event["sequence_number"] = n
            out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        return "".join(out)

    # Anthropic messages

    def _message(self, model: str, seq: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"msg_{seq:024d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": _content(body, "".join(self._words()))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def _messages_sse(self, model: str, seq: int, body: dict[str, Any]) -> str:
        start = self._message(model, seq, body)
        start["content"] = []
        start["stop_reason"] = None
        start["usage"] = {**start["usage"], "output_tokens": 1}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ]
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            for w in self._words()
        ]
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": self.output_tokens},
            },
            {"type": "message_stop"},
        ]
        return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def _content(body: dict[str, Any], text: str) -> str:
    """JSON when the request asked for structured output (``parse``), else ``text``."""
    fmt = body.get("response_format") or (body.get("output_config") or {}).get("format")
    fmt = fmt or (body.get("output_format") or None)
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return json.dumps({"answer": text.strip()[:40]})
    return text
