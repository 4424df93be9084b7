"""The layers of DESIGN.md, enforced: no module imports one from a layer it may not depend on.

Every ``import`` and ``from ... import`` in ``src/ecoasync`` is read from the source (also the
ones inside functions and under ``TYPE_CHECKING``: a dependency is a dependency), so a lazy
import does not hide an upward one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

SRC = ROOT / "src"

LAYERS: dict[str, tuple[str, ...]] = {
    # plain values (and the two seams below everything: the clock, the async backend): no I/O
    "values": (
        "ecoasync._backend",
        "ecoasync._checks",
        "ecoasync._clock",
        "ecoasync._durations",
        "ecoasync._exceptions",
        "ecoasync._forecast",
        "ecoasync._ledger",
        "ecoasync._log",
        "ecoasync._plan",
        "ecoasync._policy",
        "ecoasync._provider",
        "ecoasync._records",
        "ecoasync._route",
        "ecoasync._route_choice",
        "ecoasync._routes",
        "ecoasync._version",
        "ecoasync.events",
        "ecoasync.providers.regions",  # a table of cloud regions, no I/O
    ),
    # pure decisions over values: the planner, the calibration, routing, the simulators
    "decisions": (
        "ecoasync._calibrate",
        "ecoasync._job",  # a queued job's plan, and what a worker does on its arrival
        "ecoasync._planner",
        "ecoasync._routing",
        "ecoasync._shift",
        "ecoasync._simulate",
        "ecoasync._simulate_routes",
        "ecoasync._windows",
    ),
    "providers": ("ecoasync.providers",),
    "bus": ("ecoasync._bus",),
    "session": ("ecoasync._choose", "ecoasync._context", "ecoasync._routed", "ecoasync._session"),
    "instrumentation": ("ecoasync._instrument",),
    "sync": ("ecoasync._sync",),
    "edges": (
        "ecoasync",  # the package's __init__ (only its own name: see layer_of)
        "ecoasync.__main__",
        "ecoasync._cli",
        "ecoasync._report",
        "ecoasync.fleet",  # ledgers and a forecast cache that many processes share
        "ecoasync.queues",  # green waits held by Celery and procrastinate
        "ecoasync.sinks",
        "ecoasync.testing",
    ),
}

# each layer depends only on those above it (DESIGN.md), and tighter where the design says so:
# values on values only; the bus (and the events, which are values) never on the planner, the
# calibration or the session
_ORDER = list(LAYERS)
MAY_IMPORT: dict[str, set[str]] = {
    layer: set(_ORDER[: _ORDER.index(layer) + 1]) for layer in _ORDER
}
MAY_IMPORT["bus"] = {"values", "bus"}

ALLOWED: dict[tuple[str, str], str] = {
    ("ecoasync._session", "ecoasync._instrument"): (
        "the first session turns the SDK wrappers on (a lazy import); the instrumentation "
        "reaches sessions only through _context"
    ),
    ("ecoasync._choose", "ecoasync._sync"): (
        "choose_route_sync drives choose_route through the blocking portal (a lazy import)"
    ),
    ("ecoasync._routing", "ecoasync._instrument._impacts"): (
        "a route without a forecast is scored at its zone's annual average, from the energy "
        "model's table of electricity mixes (a lazy import)"
    ),
}


def layer_of(module: str) -> str:
    """The layer of ``module``: the one whose longest listed prefix it has."""
    best, found = "", ""
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            inside = module == prefix or (prefix != "ecoasync" and module.startswith(prefix + "."))
            if inside and len(prefix) > len(best):
                best, found = prefix, layer
    assert found, f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The ecoasync modules ``path`` imports (``from .x import y`` gives ``x.y`` when that is a
    module, else ``x``)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == "ecoasync" and m != module}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


SOURCES = sorted((SRC / "ecoasync").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    module = module_name(path)
    layer = layer_of(module)
    wrong = sorted(
        f"{target} ({layer_of(target)})"
        for target in imports(path)
        if layer_of(target) not in MAY_IMPORT[layer] and (module, target) not in ALLOWED
    )
    assert not wrong, f"{module} ({layer}) may import only {sorted(MAY_IMPORT[layer])}: {wrong}"


SUBLAYERS = {"providers": ("HTTP core",)}
"""Names a module may give its layer by: the layer's, or one of its parts'."""


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_a_module_that_names_its_layer_names_the_right_one(path: Path) -> None:
    """Module docstrings say ``Layer: <name> ...``; it names the layer the table above gives."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    said = re.search(r"^Layer: (.*)$", docstring, re.MULTILINE)
    if said is not None:
        layer = layer_of(module_name(path))
        assert any(name in said.group(1) for name in (layer, *SUBLAYERS.get(layer, ()))), (
            f"{module_name(path)} says 'Layer: {said.group(1)}', the table says {layer}"
        )


def test_the_table_knows_every_module_and_the_check_sees_imports() -> None:
    assert {layer_of(module_name(p)) for p in SOURCES} == set(LAYERS)
    # the reader finds relative, nested and lazy imports
    assert "ecoasync._plan" in imports(SRC / "ecoasync" / "events.py")
    assert "ecoasync._instrument" in imports(SRC / "ecoasync" / "_session.py")
    assert "ecoasync.providers._http" in imports(SRC / "ecoasync" / "providers" / "_live.py")
    assert layer_of("ecoasync.providers._fallback") == "providers"
    assert layer_of("ecoasync._planner") == "decisions"
