"""``python -m ecoasync._cli``: the command line.

Layer: edges; imports the command line only.
"""

from . import _entry

_entry()
