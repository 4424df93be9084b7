"""The examples in an environment with only the base install: a real virtual environment
that holds exactly ecoasync and the distributions its base requirements pull in (no extras),
as ``pip install ecoasync`` leaves a user's. Those that need an extra stop with their
one-line hint; the others run.

The environment is built from the distributions already installed here (each one's files
linked into the new venv's site-packages), so it needs no network and takes a second.
"""

from __future__ import annotations

import subprocess
import venv
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.examples_util import EXAMPLES, run_python

NEEDS = {
    "batch_job.py": ("openai extra", "openai"),
    "routing.py": ("openai extra", "openai"),
    "agent.py": ("openai and anthropic extras", "openai,anthropic"),
    "agent_demo.py": ("openai and anthropic extras", "openai,anthropic"),
    "live_dashboard.py": ("rich extra", "rich"),
    "service/demo.py": ("examples and openai extras", "examples,openai"),
    "service/app.py": ("examples and openai extras", "examples,openai"),
    "fleet/run.py": ("celery, procrastinate and examples extras", "celery,procrastinate,examples"),
}
BASE_ONLY = ["quickstart.py", "custom_sink.py", "simulated_llm.py"]


def base_closure() -> list[Distribution]:
    """ecoasync and every distribution its base requirements need, transitively."""
    seen: dict[str, Distribution] = {}
    todo = ["ecoasync"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # a requirement for another platform or Python
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def link_files(dist: Distribution, site: Path) -> None:
    """Make ``dist`` importable from ``site`` by linking each of its installed files."""
    root = Path(str(dist.locate_file(""))).resolve()
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file))).resolve()
        if not source.is_relative_to(root) or not source.is_file():
            continue  # scripts and headers outside site-packages
        target = site / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source)


@pytest.fixture(scope="module")
def base_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("base-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    python = str(home / "bin" / "python")
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for dist in base_closure():
        link_files(dist, site)
    return python


def test_the_environment_has_the_base_install_and_no_extra(base_python: str) -> None:
    probe = (
        "import importlib.util, ecoasync; "
        "print(ecoasync.__version__, *(bool(importlib.util.find_spec(m)) for m in "
        "('openai', 'anthropic', 'rich', 'starlette', 'celery', 'procrastinate', 'redis', "
        "'matplotlib', 'pytest')))"
    )
    done = subprocess.run([base_python, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    version, *found = done.stdout.split()
    assert version and found == ["False"] * 9


@pytest.mark.parametrize("example", sorted(NEEDS))
def test_an_example_that_needs_an_extra_says_so_in_one_line(base_python: str, example: str) -> None:
    needs, extras = NEEDS[example]
    done = run_python(str(EXAMPLES / example), python=base_python)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f'examples/{example} needs the {needs}: pip install "ecoasync[{extras}]"\n'
    )


@pytest.mark.parametrize("example", BASE_ONLY)
def test_an_example_with_no_extra_runs_on_the_base_install(
    base_python: str, example: str, tmp_path: Path
) -> None:
    done = run_python(str(EXAMPLES / example), python=base_python, env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr


def test_every_example_is_in_one_list() -> None:
    found = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py")}
    helpers = {"fleet/tasks.py", "fleet/web.py"}  # imported by fleet/run.py, not run alone
    assert found - helpers == set(NEEDS) | set(BASE_ONLY)
