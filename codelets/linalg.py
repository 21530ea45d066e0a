"""Linear-algebra codelets: the dot product and a small matrix multiply-accumulate.

Families (index by element type):

* ``Dot[dt]``  ``a, b: Input(Vector(dt))`` -> ``out: Output(dt)``: ``out = sum(a * b)``; FLOAT and
  HALF, half multiplied and accumulated in float32 and rounded once.
* ``MatMulPartial[dt]`` / ``MatMulPartial[dt, out_dt]``, a ``MultiVertex`` (the AMP unit is
  shared by all six workers):
  ``a: Input(Vector(dt))``  an m x k block, row-major, flattened;
  ``b: Input(Vector(dt))``  a k x n block, row-major, flattened;
  ``out: Output(Vector(out_dt))``  the m x n partial sums, ``out = a @ b``;
  ``m, k, n: State(UNSIGNED_INT)``.
  Variants: float -> float, half -> half and half -> float (half inputs with float partials, the
  usual AMP mode).  Half inputs are multiplied and accumulated in float32 (products of halves are
  exact in float32); the sums are rounded to ``out_dt`` once per call.
  The AMP unit starts each sum from zero (Poplar's AMP vertices zero their accumulators
  themselves), so a product needs no separate step that zeroes its partials.

A batch of instances shares its vector lengths but each instance has its own m, k, n.  When every
length is non-zero the lengths fix the shape (m*m = |a| * |out| / |b|), but blocks with a zero
dimension can differ, so compute groups instances by distinct (m, k, n) and runs one batched
``np.matmul`` per group: the Python loop is over shapes, never over instances.  ``np.matmul`` calls
BLAS once per matrix, so an instance's result does not depend on which instances share its batch.
The float variant also runs in place (``codelets/_in_place.py``): the same BLAS product per
instance, read from and written to tile memory without the batch-wide gather.
"""

from __future__ import annotations

import functools

import numpy as np

from poplar_like.codelet import Input, MultiVertex, Output, State, Vector, Vertex
from poplar_like.dtypes import FLOAT, HALF, UNSIGNED_INT, poplar_name

from . import costs
from ._in_place import matmul_in_place
from ._registry import CodeletFamily, check_same_length, make_codelet, suffix


def _build_dot(dt: np.dtype) -> type[Vertex]:
    name = f"Dot_{suffix(dt)}"

    def compute(a, b, out):
        check_same_length(name, a=a, b=b)
        with np.errstate(over="ignore", invalid="ignore"):
            products = a.astype(np.float32) * b.astype(np.float32)
            out[:] = np.sum(products, axis=1)

    def cycles(a_length):
        return costs.dot_cycles(a_length, dt)

    fields = {"a": Input(Vector(dt)), "b": Input(Vector(dt)), "out": Output(dt)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 160,
                        f"``out = sum(a * b)`` of two equal-length {poplar_name(dt)} vectors.")


def check_shapes(name: str, m: np.ndarray, k: np.ndarray, n: np.ndarray, a_length: int,
                 b_length: int, out_length: int) -> None:
    """Raise ValueError naming the first instance whose m, k, n do not match the field lengths."""
    m, k, n = (np.asarray(x, dtype=np.int64) for x in (m, k, n))
    for field, product, what, length in (("a", m * k, "m*k", a_length),
                                         ("b", k * n, "k*n", b_length),
                                         ("out", m * n, "m*n", out_length)):
        bad = np.flatnonzero(product != length)
        if bad.size:
            i = bad[0]
            raise ValueError(f"{name}: instance {i} has m={m[i]}, k={k[i]}, n={n[i]}, so {what} = "
                             f"{product[i]}, but field {field} has length {length} "
                             f"({bad.size} instance(s) mismatch)")


def _build_matmul(dt: np.dtype, out_dt: np.dtype) -> type[Vertex]:
    name = f"MatMulPartial_{suffix(dt) if dt == out_dt else suffix(dt, out_dt)}"
    compute_dt = np.dtype(np.float32)  # float stays float; half is widened exactly

    def compute(a, b, out, m, k, n):
        check_shapes(name, m, k, n, a.shape[1], b.shape[1], out.shape[1])
        count = out.shape[0]
        if count == 0:
            return
        shapes, group = np.unique(np.stack([m, k, n], axis=1).astype(np.int64), axis=0,
                                  return_inverse=True)
        group = group.reshape(-1)
        for g, (gm, gk, gn) in enumerate(shapes):
            rows = slice(None) if len(shapes) == 1 else np.flatnonzero(group == g)
            size = count if len(shapes) == 1 else len(rows)  # explicit: -1 fails on empty blocks
            lhs = a[rows].astype(compute_dt, copy=False).reshape(size, gm, gk)
            rhs = b[rows].astype(compute_dt, copy=False).reshape(size, gk, gn)
            with np.errstate(over="ignore", invalid="ignore"):
                out[rows] = np.matmul(lhs, rhs).reshape(size, gm * gn)  # rounded to out's type once

    def cycles(m, k, n, target):
        return costs.matmul_cycles(m, k, n, dt, out_dt, target)

    fields = {"a": Input(Vector(dt)), "b": Input(Vector(dt)), "out": Output(Vector(out_dt)),
              "m": State(UNSIGNED_INT), "k": State(UNSIGNED_INT), "n": State(UNSIGNED_INT)}
    in_place = matmul_in_place(functools.partial(check_shapes, name)) if dt == out_dt == FLOAT else None
    return make_codelet(__name__, name, MultiVertex, fields, compute, cycles, 1536,
                        f"``out = a @ b`` for an m x k and a k x n {poplar_name(dt)} block, "
                        f"summed into {poplar_name(out_dt)} partials on the AMP unit.", in_place)


Dot = CodeletFamily("Dot", _build_dot, [(FLOAT,), (HALF,)])
MatMulPartial = CodeletFamily("MatMulPartial", _build_matmul,
                              [(FLOAT, FLOAT), (HALF, HALF), (HALF, FLOAT)], default_second=True)
