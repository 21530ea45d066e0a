"""Reduction codelets: a vector to a scalar, and a list of partial vectors to one vector.

Families (index by element type, e.g. ``ReduceSum[FLOAT]``):

* ``ReduceSum``, ``ReduceMax``, ``ReduceMin``  ``inp: Input(Vector(dt))`` -> ``out: Output(dt)``.
  An empty vector reduces to the identity: 0, the lowest value (-inf for floats) or the highest.
* ``ArgMax``  ``inp: Input(Vector(dt))`` -> ``out: Output(UNSIGNED_INT)``: the first index of the
  maximum (a NaN counts as the maximum, as in numpy); an empty vector is an error.
* ``ReduceAdd``  ``partials: Input(VectorList(src))`` -> ``out: Output(Vector(dst))``: the sum over
  the list axis, elementwise.  This is how matmul and convolution partial sums computed on
  several tiles are combined.  ``ReduceAdd[FLOAT]`` keeps the type; ``ReduceAdd[FLOAT, HALF]``
  adds float partials and rounds the result to half once, as PopLibs does with float partials.

Half inputs are accumulated in float32 and the result is rounded once.  Float sums add the
partials in list order (a fixed order, so every backend gives the same bits); integer sums wrap.
``ReduceAdd[FLOAT]`` also runs in place (``codelets/_in_place.py``), adding in the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from poplar_like.codelet import Input, Output, Vector, VectorList, Vertex
from poplar_like.dtypes import FLOAT, HALF, INT, UNSIGNED_INT, poplar_name

from . import costs
from ._in_place import fields_in_place
from ._registry import CodeletFamily, check_same_length, make_codelet, suffix

_NUMERIC = (FLOAT, HALF, INT, UNSIGNED_INT)


def accumulator_dtype(dt: np.dtype) -> np.dtype:
    """Type sums are accumulated in: float32 for half, the type itself otherwise."""
    return np.dtype(np.float32) if dt == HALF else dt


def lowest(dt: np.dtype) -> object:
    """Identity of max: -inf for floats, the minimum integer otherwise."""
    return dt.type(-np.inf) if dt.kind == "f" else np.iinfo(dt).min


def highest(dt: np.dtype) -> object:
    """Identity of min: +inf for floats, the maximum integer otherwise."""
    return dt.type(np.inf) if dt.kind == "f" else np.iinfo(dt).max


def _sum(x: np.ndarray) -> np.ndarray:
    # Convert before summing: a casting sum is buffered, and buffer boundaries would make the
    # (pairwise) summation order depend on how many instances share the batch.
    return np.sum(x.astype(accumulator_dtype(x.dtype), copy=False), axis=1)


def _max(x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=1, initial=lowest(x.dtype))


def _min(x: np.ndarray) -> np.ndarray:
    return np.min(x, axis=1, initial=highest(x.dtype))


def _build_reduce(family: str, op: str, func: Callable[[np.ndarray], np.ndarray],
                  dt: np.dtype) -> type[Vertex]:
    def compute(inp, out):
        out[:] = func(inp)

    def cycles(inp_length):
        return costs.reduce_cycles(op, inp_length, dt)

    fields = {"inp": Input(Vector(dt)), "out": Output(dt)}
    return make_codelet(__name__, f"{family}_{suffix(dt)}", Vertex, fields, compute, cycles, 192,
                        f"``out = {op}(inp)`` over a {poplar_name(dt)} vector.")


def _build_argmax(dt: np.dtype) -> type[Vertex]:
    name = f"ArgMax_{suffix(dt)}"

    def compute(inp, out):
        if inp.shape[1] == 0:
            raise ValueError(f"{name}: the argmax of an empty vector does not exist")
        out[:] = np.argmax(inp, axis=1)

    def cycles(inp_length):
        return costs.reduce_cycles("argmax", inp_length, dt)

    fields = {"inp": Input(Vector(dt)), "out": Output(UNSIGNED_INT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 224,
                        f"First index of the maximum of a {poplar_name(dt)} vector.")


def _build_reduce_add(src: np.dtype, dst: np.dtype) -> type[Vertex]:
    name = f"ReduceAdd_{suffix(src) if src == dst else suffix(src, dst)}"

    def compute(partials, out):
        check_same_length(name, partials=partials, out=out)
        # An explicit loop over the list (never over instances) fixes the order of the additions,
        # which numpy's reduce would make pairwise for some shapes.
        count = partials.shape[1]
        if count == 0:
            out[:] = 0
            return
        acc = partials[:, 0].astype(accumulator_dtype(src))  # a copy: partials are read-only
        with np.errstate(over="ignore", invalid="ignore"):
            for j in range(1, count):
                acc += partials[:, j]
            out[:] = acc

    def cycles(partials_count, partials_length):
        return costs.reduce_add_cycles(partials_count, partials_length, src)

    check = functools.partial(check_same_length, name)
    fields = {"partials": Input(VectorList(src)), "out": Output(Vector(dst))}
    in_place = fields_in_place("reduce_add", ("partials",), "out", check) if src == dst == FLOAT else None
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        f"``out = sum(partials)`` over a list of {poplar_name(src)} vectors, "
                        f"written as {poplar_name(dst)}.", in_place)


def _family(family: str, op: str, func: Callable[[np.ndarray], np.ndarray]) -> CodeletFamily:
    return CodeletFamily(family, lambda dt: _build_reduce(family, op, func, dt),
                         [(dt,) for dt in _NUMERIC])


ReduceSum = _family("ReduceSum", "sum", _sum)
ReduceMax = _family("ReduceMax", "max", _max)
ReduceMin = _family("ReduceMin", "min", _min)
ArgMax = CodeletFamily("ArgMax", _build_argmax, [(dt,) for dt in _NUMERIC])
ReduceAdd = CodeletFamily(
    "ReduceAdd", _build_reduce_add,
    [(FLOAT, FLOAT), (HALF, HALF), (FLOAT, HALF), (HALF, FLOAT), (INT, INT),
     (UNSIGNED_INT, UNSIGNED_INT)],
    default_second=True)
