"""Checks of user-given values, shared by every constructor that validates its options.

Each caller keeps its own error message (it names the option and the fix); these only answer
whether a value is of the kind asked for. A ``bool`` is never a number here: ``True`` is ``1``
to Python, never what a caller meant by a tolerance or a count.

Layer: values. Imports nothing from ecoasync.
"""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["is_number", "is_whole"]


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an ``int`` or a ``float`` (not a ``bool``; it may be NaN or infinite)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` (not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)
