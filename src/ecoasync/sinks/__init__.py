"""Telemetry sinks: handlers that take a session's events somewhere.

Layer: edges (sinks consume the bus's events); imports values only (the events, the logger, the
checks) and the other sinks: never the session, the planner or a provider.

``bus.subscribe(JsonlSink("ecoasync.jsonl"))`` is all it takes. Every sink counts its own
failures (``sink.failures``) and logs them as ``ecoasync.sink_failed``; none ever raises into
the workload. :class:`OpenTelemetrySink` needs the ``otel`` extra and imports OpenTelemetry
only when constructed.
"""

from ._base import NullSink as NullSink
from ._base import Sink as Sink
from ._composite import CompositeSink as CompositeSink
from ._jsonl import DEFAULT_EVENTS as DEFAULT_EVENTS
from ._jsonl import JsonlSink as JsonlSink
from ._otel import OpenTelemetrySink as OpenTelemetrySink
from ._structlog import StructlogSink as StructlogSink
from ._structlog import event_fields as event_fields

__all__ = [
    "DEFAULT_EVENTS",
    "CompositeSink",
    "JsonlSink",
    "NullSink",
    "OpenTelemetrySink",
    "Sink",
    "StructlogSink",
    "event_fields",
]
