"""The ``ecoasync`` command line. Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; modules are found by name, so adding a command touches no
other file.

Layer: edges (the command line); imports the version only: each command imports what it runs.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecoasync",
        description="Carbon-aware scheduling and accounting for LLM work.",
    )
    parser.add_argument("--version", action="version", version=f"ecoasync {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 usage or input error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code


def _entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())
