"""Loading and running the examples from the tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


def load_example(relative: str, name: str) -> Any:
    """Import ``examples/<relative>`` as module ``name`` (the examples are scripts, not a package)."""
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # as when run: its siblings are importable
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def run_example(relative: str, *args: str, timeout: float = 60) -> str:
    """Run ``python examples/<relative> ARGS`` as a user would; its stdout (fails on exit != 0)."""
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / relative), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"examples/{relative} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout
