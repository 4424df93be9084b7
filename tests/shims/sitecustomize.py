"""Run at start-up by every Python process a test starts with this folder on ``PYTHONPATH``
(see ``tests/examples_util.py``), as the environment says:

- ``ECOASYNC_TEST_OFFLINE=PATH``: no name lookup or connection beyond loopback; each attempt
  fails at once and is appended to PATH (one host a line), so a test can tell that a program
  did not even try the network.
- ``ECOASYNC_TEST_BLOCK=openai,rich``: importing these packages (and their submodules)
  raises ``ModuleNotFoundError``, as in an install without the extra that brings them.
"""

from __future__ import annotations

import errno
import importlib.abc
import importlib.machinery
import os
import socket
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _note(log: str, host: object) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{host}\n")


def _go_offline(log: str) -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK:
            _note(log, name)
            raise socket.gaierror(socket.EAI_NONAME, f"offline test: no lookup of {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def refused(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        if address[0] in _LOOPBACK:
            return False
        _note(log, address[0])
        return True

    def connect(self: socket.socket, address: Any) -> None:
        if refused(self, address):
            raise OSError(errno.ENETUNREACH, f"offline test: no connection to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        return errno.ENETUNREACH if refused(self, address) else real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    setattr(socket.socket, "connect", connect)  # noqa: B010 (the methods are typed narrower)
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010


class _Blocked(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if log := os.environ.get("ECOASYNC_TEST_OFFLINE"):
    _go_offline(log)
if blocked := {n for n in os.environ.get("ECOASYNC_TEST_BLOCK", "").split(",") if n}:
    sys.meta_path.insert(0, _Blocked(blocked))
