"""mkdocs hooks for the ecoasync docs site.

Pages that other work streams add (the provider reference, the benchmark figures, the
instrumentation guide) are listed
in ``mkdocs.yml`` already; until their file exists the nav leaves them out, so
``mkdocs build --strict`` passes at every commit. Only the pages named here are optional: a
typo anywhere else in the nav still fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

OPTIONAL_PAGES = frozenset({"providers.md", "benchmarks.md", "instrumentation.md"})


def _prune(items: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            (title, value), *_ = item.items()
            if isinstance(value, list):
                kept.append({title: _prune(value, docs)})
            elif value in OPTIONAL_PAGES and not (docs / value).exists():
                continue
            else:
                kept.append(item)
        elif isinstance(item, str) and item in OPTIONAL_PAGES and not (docs / item).exists():
            continue
        else:
            kept.append(item)
    return kept


def on_config(config: Any, **kwargs: Any) -> Any:
    nav = config.get("nav")
    if nav:
        config["nav"] = _prune(nav, Path(config["docs_dir"]))
    return config


_ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):(<code>)~?(?:[\w.]+\.)?")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Docstrings use Sphinx roles (``:class:`Foo```); show them as plain code."""
    return _ROLE.sub(r"\1", html)
