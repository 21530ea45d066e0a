"""The layer library (PopLibs' popops / poplin / popnn analogue): ops that plan, map and add
vertices for tensor operations.  See ops/common.py for the conventions every op follows."""

from .common import Chunks, linear_variable, op_name, record, release, split_by_tile, variable_like

__all__ = ["Chunks", "linear_variable", "op_name", "record", "release", "split_by_tile", "variable_like"]
