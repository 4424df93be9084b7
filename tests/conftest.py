from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog

import ecoasync
from ecoasync.testing import VirtualClock
from tests.servers import postgres_server as postgres_server
from tests.servers import redis_server as redis_server

ROOT = Path(__file__).resolve().parent.parent

SDKS = ("openai", "anthropic", "ecologits", "httpx", "httpx2")


def pytest_report_header() -> str:
    """The SDK versions this run tests against (the README names the ones CI ran with)."""
    versions = []
    for name in SDKS:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return "SDKs: " + ", ".join(versions)


def shared_data() -> Path:
    """Where the third-party traces live (never committed): $ECOASYNC_SHARED_DATA or ../shared/data."""
    return Path(os.environ.get("ECOASYNC_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def trace_path() -> Path:
    path = shared_data() / "benchmark_trace.csv"
    if not path.exists():
        pytest.skip(f"the shared trace {path} is not here (set ECOASYNC_SHARED_DATA)")
    return path


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def asyncio_only() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    with VirtualClock.installed() as clock:
        yield clock


@pytest.fixture
def bus() -> ecoasync.EventBus:
    return ecoasync.EventBus()


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured
