"""ecoasync's own log lines, through structlog, imported on first use.

Layer: values; imports nothing of ecoasync.

``import structlog`` also imports rich when it is installed (about 7 MB of memory and tens of
milliseconds), which a process that never has anything to log should not pay for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_logger"]


class _LazyLogger:
    """A structlog logger made on the first log line (then exactly ``structlog.get_logger``)."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def _get(self) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return self._logger

    def info(self, event: str, **fields: Any) -> None:
        self._get().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._get().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._get().error(event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._get().exception(event, **fields)

    def __repr__(self) -> str:
        return f"<ecoasync logger {self._name!r}>"


def get_logger(name: str = "ecoasync") -> _LazyLogger:
    """The logger ecoasync writes its own lines to (structlog's, bound lazily)."""
    return _LazyLogger(name)
