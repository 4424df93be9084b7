"""ecoasync's layers, enforced. From the bottom: plain values, pure decisions over them,
providers (async I/O), the event bus, the session, the SDK instrumentation, the sync shim, and
the edges (public API, command line, reports, sinks, testing helpers). A module imports only
from its own layer and those below it, and its docstring says which layer it is in and what it
may import, in a ``Layer:`` line.

Every ``import`` and ``from ... import`` in ``src/ecoasync`` is read from the source (also the
ones inside functions and under ``TYPE_CHECKING``: a dependency is a dependency), so a lazy
import does not hide an upward one. Event-loop specifics have one seam: only
``ecoasync._backend`` imports asyncio or trio.
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
        "ecoasync._frontier",  # the carbon-for-delay sweep over a grid of policies
        "ecoasync._job",  # a queued job's plan, and what a worker does on its arrival
        "ecoasync._planner",
        "ecoasync._routing",
        "ecoasync._shift",
        "ecoasync._simulate",
        "ecoasync._simulate_routes",
        "ecoasync._skill",  # how much the look-back shows: the calibration's gates and weight
        "ecoasync._synth",  # a synthetic forecast from actuals (a seeded error model)
        "ecoasync._windows",
    ),
    "providers": ("ecoasync.providers",),
    "bus": ("ecoasync._bus",),
    "session": (
        "ecoasync._choose",
        "ecoasync._claims",
        "ecoasync._context",
        "ecoasync._routed",
        "ecoasync._session",
        "ecoasync._session_plan",
        "ecoasync._session_record",
        "ecoasync._session_view",
        "ecoasync._sourcing",
    ),
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

# each layer depends only on itself and those listed before it, and tighter where that matters:
# values on values only; the bus (and the events, which are values) never on the planner, the
# calibration or the session, so that a sink never drags planning in
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
    ("ecoasync._session_view", "ecoasync._instrument"): (
        "Session.record_call charges a call through the instrumentation's record_call (a lazy "
        "import, when the body calls it)"
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


def stated_layer(source: str) -> str | None:
    """The ``Layer:`` paragraph of a module's docstring (up to the next blank line), or None."""
    docstring = ast.get_docstring(ast.parse(source)) or ""
    said = re.search(r"^Layer: (.*?)(?:\n\s*\n|\Z)", docstring, re.MULTILINE | re.DOTALL)
    return None if said is None else " ".join(said.group(1).split())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_every_module_says_its_layer_and_what_it_may_import(path: Path) -> None:
    """Module docstrings say ``Layer: <layer> ...; imports ...``, naming the layer the table
    above gives (or a part of it) first."""
    module = module_name(path)
    said = stated_layer(path.read_text(encoding="utf-8"))
    assert said is not None, (
        f"{module}'s docstring has no 'Layer: ...' line: say its layer ({layer_of(module)}) "
        "and what it may import"
    )
    layer = layer_of(module)
    assert any(
        re.match(rf"{re.escape(name)}\b", said) for name in (layer, *SUBLAYERS.get(layer, ()))
    ), f"{module} says 'Layer: {said}', the table says {layer}"
    assert "import" in said.lower(), f"{module} says 'Layer: {said}' but not what it may import"


LOOPS = frozenset({"asyncio", "trio"})
SEAM = "ecoasync._backend"


def loop_imports(source: str) -> set[str]:
    """The event-loop libraries ``source`` imports: with ``import``/``from``, or by name
    (``importlib.import_module("trio.testing")``, ``sys.modules.get("trio")``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__", "get", "find_spec"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        found.update(name.partition(".")[0] for name in names if name.partition(".")[0] in LOOPS)
    return found


def test_only_the_backend_seam_knows_the_event_loops() -> None:
    """What differs between asyncio and trio lives in ``ecoasync._backend``; everything else
    waits through anyio and asks the seam the rest."""
    others = {
        module_name(path): sorted(used)
        for path in SOURCES
        if module_name(path) != SEAM and (used := loop_imports(path.read_text(encoding="utf-8")))
    }
    assert not others, f"event-loop specifics outside {SEAM} (give it a small function): {others}"
    # the check sees every way in
    assert loop_imports((SRC / "ecoasync" / "_backend.py").read_text(encoding="utf-8")) == LOOPS
    assert loop_imports("import sys\nif sys.modules.get('trio'): pass") == {"trio"}
    assert loop_imports("def f():\n    from asyncio import sleep") == {"asyncio"}
    assert loop_imports("import importlib\nimportlib.import_module('trio.lowlevel')") == {"trio"}
    assert loop_imports("import anyio\nfrom . import asyncio_helpers") == set()


def test_the_table_knows_every_module_and_the_check_sees_imports() -> None:
    assert {layer_of(module_name(p)) for p in SOURCES} == set(LAYERS)
    # the reader finds relative, nested and lazy imports
    assert "ecoasync._plan" in imports(SRC / "ecoasync" / "events.py")
    assert "ecoasync._instrument" in imports(SRC / "ecoasync" / "_session.py")
    assert "ecoasync.providers._http" in imports(SRC / "ecoasync" / "providers" / "_live.py")
    assert layer_of("ecoasync.providers._fallback") == "providers"
    assert layer_of("ecoasync._planner") == "decisions"
    # the layer line is read to its paragraph's end, wherever the docstring puts it
    said = stated_layer('"""A bus.\n\nLayer: bus; imports\nvalues only.\n\nMore."""')
    assert said == "bus; imports values only."
    assert stated_layer('"""A bus, nothing more."""') is None
