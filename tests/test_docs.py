"""The documentation site builds without a warning (``mkdocs build --strict``), API reference
included, and every page is in the navigation."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


def test_docs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    reference = (site / "reference" / "session" / "index.html").read_text()
    assert "carbon_session" in reference and "max_delay" in reference  # from the docstrings
    assert ":class:" not in reference and ":func:" not in reference
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog  # CHANGELOG.md is included, not copied


def test_optional_pages_appear_in_the_nav_once_they_exist(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py"
    )
    assert spec is not None and spec.loader is not None
    mkdocs_hooks: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mkdocs_hooks)
    nav = [{"Guides": [{"A": "a.md"}, {"Providers": "providers.md"}, "benchmarks.md"]}]
    config = {"nav": nav, "docs_dir": str(tmp_path)}
    assert mkdocs_hooks.on_config(config)["nav"] == [{"Guides": [{"A": "a.md"}]}]
    (tmp_path / "providers.md").write_text("# Providers\n")
    config = {"nav": nav, "docs_dir": str(tmp_path)}
    assert mkdocs_hooks.on_config(config)["nav"] == [
        {"Guides": [{"A": "a.md"}, {"Providers": "providers.md"}]}
    ]
