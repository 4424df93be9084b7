"""``python -m ecoasync``: the command line.

Layer: edges; imports the command line only.
"""

from ._cli import _entry

_entry()
