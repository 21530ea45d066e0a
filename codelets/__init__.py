"""The built-in codelet library of poplar_like.

Codelets are type-specialised: each (operation, element type) pair is its own class, generated
at import time and importable by path, e.g. ``codelets.elementwise:Relu_float``.  Look them up:

* the elementwise factories ``unary(op, dtype)``, ``unary_inplace``, ``binary``, ``binary_inplace``;
* the families, indexed by element type: ``Fill[FLOAT]``, ``Cast[HALF, FLOAT]``,
  ``ReduceSum[HALF]``, ``ReduceAdd[FLOAT, HALF]``, ``MatMulPartial[HALF, FLOAT]``...

Cycle estimates live in :mod:`codelets.costs`, the same functions op planners call.
"""

from __future__ import annotations

from . import costs
from ._registry import CodeletFamily, all_codelets
from .data import Cast, Copy, Fill, Scale, ScaledAdd
from .elementwise import BINARY_OPS, UNARY_OPS, binary, binary_inplace, unary, unary_inplace
from .linalg import Dot, MatMulPartial
from .reduce import ArgMax, ReduceAdd, ReduceMax, ReduceMin, ReduceSum
from . import nn  # noqa: F401 - layer-library codelets (codelets.nn.ReluGrad[FLOAT], ...)

FAMILIES: dict[str, CodeletFamily] = {family.name: family for family in (
    Fill, Copy, Cast, ScaledAdd, Scale, ReduceSum, ReduceMax, ReduceMin, ArgMax, ReduceAdd, Dot,
    MatMulPartial)}

__all__ = [
    "ArgMax", "BINARY_OPS", "Cast", "CodeletFamily", "Copy", "Dot", "FAMILIES", "Fill",
    "MatMulPartial", "ReduceAdd", "ReduceMax", "ReduceMin", "ReduceSum", "Scale", "ScaledAdd",
    "UNARY_OPS", "all_codelets", "binary", "binary_inplace", "costs", "unary", "unary_inplace",
]
