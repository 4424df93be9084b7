"""Loading and running the examples from the tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
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


SHIMS = ROOT / "tests" / "shims"


def run_python(
    *args: str,
    cwd: Path = ROOT,
    block: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` as a user would, offline (see ``tests/shims/sitecustomize.py``),
    with the packages in ``block`` made impossible to import and ``env`` added to the
    environment (``python``: another interpreter, a venv's). Fails if the program tried to
    reach anything beyond loopback."""
    with tempfile.TemporaryDirectory() as tmp:
        attempts = Path(tmp) / "network.log"
        environ = {
            **os.environ,
            "PYTHONWARNINGS": "error::DeprecationWarning",
            "NO_COLOR": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(SHIMS), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "ECOASYNC_TEST_OFFLINE": str(attempts),
            "ECOASYNC_TEST_BLOCK": ",".join(block),
            **(env or {}),
        }
        environ.pop("FORCE_COLOR", None)
        result = subprocess.run(
            [python, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
        tried = attempts.read_text().split() if attempts.exists() else []
    assert not tried, f"python {' '.join(args)} tried the network: {sorted(set(tried))}"
    return result


def run_example(
    relative: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> str:
    """Run ``python examples/<relative> ARGS`` as a user would; its stdout (fails on exit != 0)."""
    result = run_python(str(EXAMPLES / relative), *args, env=env, timeout=timeout)
    assert result.returncode == 0, (
        f"examples/{relative} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout
