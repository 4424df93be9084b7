"""Every public module declares ``__all__``, and every name in it exists (as in trio and anyio)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import ecoasync
from tests.conftest import ROOT


def public_modules() -> list[str]:
    names = ["ecoasync"]
    for info in pkgutil.walk_packages(ecoasync.__path__, "ecoasync."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", public_modules())
def test_public_module_has_a_complete_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"


def test_package_is_typed() -> None:
    assert (ROOT / "src" / "ecoasync" / "py.typed").exists()


def test_import_is_light() -> None:
    """``import ecoasync`` must not drag in the SDKs, EcoLogits, plotting or telemetry SDKs, nor
    the HTTP client and structlog (with rich behind it), which only live providers and log
    lines need."""
    heavy = "openai anthropic ecologits matplotlib opentelemetry httpx httpx2 structlog rich"
    code = f"import sys, ecoasync; print(sorted(m for m in {heavy.split()!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_log_lines_still_reach_structlog() -> None:
    """The lazy logger is structlog's own once used: ``capture_logs`` sees its lines."""
    import structlog

    from ecoasync._log import get_logger

    log = get_logger()
    with structlog.testing.capture_logs() as captured:
        log.warning("ecoasync.test_line", value=1)
        log.error("ecoasync.test_error")
        log.info("ecoasync.test_info")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("ecoasync.test_exception")
    assert [c["event"] for c in captured] == [
        "ecoasync.test_line",
        "ecoasync.test_error",
        "ecoasync.test_info",
        "ecoasync.test_exception",
    ]
    assert captured[0]["value"] == 1
    assert "ecoasync" in repr(log)


def test_every_exception_ecoasync_raises_is_an_ecoasync_error() -> None:
    """One root for the whole tree (the _exceptions docstring draws it), and the old bases kept
    (code that caught ValueError still does)."""
    from ecoasync._exceptions import (
        PlotInputError,
        SimulationError,
        TelemetryInputError,
        UnknownRegionError,
    )
    from ecoasync._report._load import TelemetryInputError as from_load
    from ecoasync._simulate import SimulationError as from_simulate
    from ecoasync.providers import UnknownRegionError as from_providers

    public = [
        value
        for name in public_modules()
        for value in vars(importlib.import_module(name)).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__.startswith("ecoasync")
    ]
    assert public
    for error in (*public, PlotInputError, SimulationError, TelemetryInputError):
        assert issubclass(error, ecoasync.EcoAsyncError), error
        assert error.__name__ in (ecoasync._exceptions.__doc__ or ""), error
    assert issubclass(UnknownRegionError, ValueError) and issubclass(SimulationError, ValueError)
    assert (from_load, from_simulate, from_providers) == (
        TelemetryInputError,
        SimulationError,
        UnknownRegionError,
    )
