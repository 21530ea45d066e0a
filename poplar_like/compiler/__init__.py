"""Compiler layer: graph + programs -> a plain-data :class:`Executable`."""

from .compile import compile_graph, largest_consumers
from .executable import Executable
from .layout import CATEGORIES

__all__ = ["compile_graph", "largest_consumers", "Executable", "CATEGORIES"]
