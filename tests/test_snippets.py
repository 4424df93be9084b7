"""Every ```python block of the README, the home page and the tutorial is a complete program
that runs as written, offline (no name lookup beyond loopback) and in seconds; an output
block right after one shows what it prints (numbers may differ: jitter); the tutorial's
``ecoasync`` commands run on what its programs wrote; the errors the README shows are the
ones raised."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import ecoasync
from tests.conftest import ROOT
from tests.examples_util import run_python

PAGES = ("README.md", "docs/index.md", "docs/tutorial.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


def fences(page: str) -> list[tuple[str, str, int, bool]]:
    """(language, code, line, right after the previous block) of each fenced block."""
    text = (ROOT / page).read_text("utf-8")
    out = []
    end = None
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        adjacent = end is not None and not text[end : match.start()].strip()
        out.append((match[1], match[2], line, adjacent))
        end = match.end()
    return out


# a human duration as the plans print it ("3 h 59 min", "4 h", "12 min", "0 min")
DURATION = re.compile(r"\d+ h \d+ min|\d+ h|\d+ min")
ANY_DURATION = f"(?:{DURATION.pattern})"


def loosely(expected: str) -> re.Pattern[str]:
    """``expected`` with every number free, and every duration free to take another form: the
    start of a jittered plan varies (``3 h 59 min``, or ``4 h`` when the draw lands on the
    hour)."""

    def free(text: str) -> str:
        return r"\d+".join(map(re.escape, re.split(r"\d+", text)))

    lines = []
    for line in expected.splitlines():
        parts = DURATION.split(line)
        lines.append(ANY_DURATION.join(free(part) for part in parts))
    return re.compile("\n".join(lines) + "\n")


def test_a_jittered_duration_may_land_on_the_hour() -> None:
    shown = "waiting 3 h 59 min for 197 gCO2eq/kWh (best of 9 starts before 21:00Z)\n"
    pattern = loosely(shown)
    for printed in ("3 h 58 min", "4 h", "4 h 1 min"):
        assert pattern.fullmatch(shown.replace("3 h 59 min", printed))
    assert not pattern.fullmatch(shown.replace("3 h 59 min", "soon"))


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_runs_as_written(page: str, tmp_path: Path) -> None:
    blocks = fences(page)
    assert any(lang == "python" for lang, *_ in blocks)
    printed: str | None = None
    for lang, code, line, adjacent in blocks:
        where = f"{page}:{line}"
        if lang == "python":
            script = tmp_path / f"block_{line}.py"
            script.write_text(code, "utf-8")
            done = run_python(str(script), cwd=tmp_path, timeout=60)
            assert done.returncode == 0, f"{where} does not run:\n{done.stderr}"
            printed = done.stdout
            continue
        if lang == "text" and adjacent and printed is not None:
            assert loosely(code).fullmatch(printed), (
                f"{where} shows:\n{code}\nit printed:\n{printed}"
            )
        if lang == "bash":  # the report commands run on what the blocks above wrote
            for command in code.splitlines():
                if command.startswith("ecoasync "):
                    args = shlex.split(command)[1:]
                    done = run_python("-m", "ecoasync", *args, cwd=tmp_path)
                    assert done.returncode == 0, f"{where}: {command}\n{done.stderr}"
        printed = None


def test_the_home_page_opens_with_the_readme_example() -> None:
    readme = [code for lang, code, *_ in fences("README.md") if lang == "python"]
    home = [code for lang, code, *_ in fences("docs/index.md") if lang == "python"]
    assert readme[0] == home[0]


def test_the_errors_the_readme_shows_are_raised() -> None:
    session = [code for lang, code, *_ in fences("README.md") if code.startswith(">>> ")]
    assert session
    pairs = re.findall(r"^>>> (.+)\n(\w+): (.+)$", session[0], re.M)
    assert len(pairs) == 2
    for expression, kind, message in pairs:
        with pytest.raises(Exception) as caught:  # the README names the type: checked below
            eval(expression, {"ecoasync": ecoasync})
        assert type(caught.value).__name__ == kind
        shown = message.removesuffix("...")
        assert (
            str(caught.value).startswith(shown)
            if shown != message
            else str(caught.value) == message
        )
