"""The package's version (read by the build, too).

Layer: values; imports nothing.
"""

__version__ = "0.1.0.dev0"
