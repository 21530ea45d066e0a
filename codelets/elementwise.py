"""Elementwise codelets: unary and binary operations on whole vectors.

Each operation is described once (a numpy function, the element types it supports, the type it
produces) and generated per element type at import time, in four shapes:

* ``unary(op, dt)``          ``inp: Input(Vector(dt))`` -> ``out: Output(Vector(out_dt))``;
* ``unary_inplace(op, dt)``  ``data: InOut(Vector(dt))``;
* ``binary(op, dt)``         ``a, b: Input(Vector(dt))`` -> ``out: Output(Vector(out_dt))``;
* ``binary_inplace(op, dt)`` ``a: InOut(Vector(dt))``, ``b: Input(Vector(dt))`` (ops whose
  result type is their input type).

Semantics.  Floats follow IEEE (log(-1) is NaN, 1/0 is inf; numpy's warnings are silenced because
they are the answer, not a mistake); half is computed in float32 and rounded once.  Integers wrap
modulo 2**32 like the hardware's 32-bit ALU (``neg``/``abs`` of INT_MIN give INT_MIN).  ``div`` on
INT truncates toward zero like C (``-7 / 2 == -3``), on UNSIGNED_INT it is plain unsigned division;
integer division by zero raises ZeroDivisionError (C leaves it undefined, we refuse to guess), and
INT_MIN / -1 wraps to INT_MIN.  ``max``/``min`` of floats propagate NaN.  Comparisons give BOOL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poplar_like.codelet import InOut, Input, Output, Vector, Vertex
from poplar_like.dtypes import BOOL, FLOAT, HALF, INT, UNSIGNED_INT, as_dtype, poplar_name
from poplar_like.errors import DTypeError, UnknownCodeletError

from . import costs
from ._in_place import fields_in_place
from ._registry import check_same_length, compute_view, make_codelet, suffix

_FLOATS = (FLOAT, HALF)
_SIGNED = (FLOAT, HALF, INT)
_NUMERIC = (FLOAT, HALF, INT, UNSIGNED_INT)
#: (op, type) -> the compiled kernel that runs it in place (``_in_place``): the ones a network
#: runs on every activation
IN_PLACE_KERNELS = {("relu", FLOAT): "relu", ("add", FLOAT): "add"}


@dataclass(frozen=True)
class Op:
    """One elementwise operation: numpy implementation, supported types, result type."""

    name: str
    func: Callable[..., np.ndarray]
    dtypes: tuple[np.dtype, ...]
    out_dtype: np.dtype | None = None  # None: same as the input
    code_size: int = 160  # bytes of the worker loop; transcendental ops add a library routine

    @property
    def class_stem(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    def result_dtype(self, dtype: np.dtype) -> np.dtype:
        return dtype if self.out_dtype is None else self.out_dtype


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number never overflows: the two branches are the same function.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return a / b
    zeros = np.argwhere(b == 0)
    if zeros.size:
        where = ", ".join(f"instance {i} element {j}" for i, j in zeros[:3])
        raise ZeroDivisionError(f"integer division by zero ({len(zeros)} divisors are 0: {where})")
    if a.dtype == UNSIGNED_INT:
        return a // b
    # Truncate toward zero in int64, where INT_MIN / -1 = 2**31 exists; the store wraps it.
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    quotient = np.abs(a64) // np.abs(b64)
    return np.where((a64 < 0) != (b64 < 0), -quotient, quotient)


UNARY_OPS: dict[str, Op] = {op.name: op for op in [
    Op("neg", np.negative, _SIGNED),
    Op("abs", np.abs, _SIGNED),
    Op("relu", _relu, _SIGNED),
    Op("square", np.square, _NUMERIC),
    Op("signum", np.sign, _SIGNED),
    Op("exp", np.exp, _FLOATS, code_size=320),
    Op("log", np.log, _FLOATS, code_size=320),
    Op("sqrt", np.sqrt, _FLOATS, code_size=240),
    Op("sigmoid", _sigmoid, _FLOATS, code_size=400),
    Op("tanh", np.tanh, _FLOATS, code_size=400),
    Op("logical_not", np.logical_not, (BOOL,), code_size=120),
]}

BINARY_OPS: dict[str, Op] = {op.name: op for op in [
    Op("add", np.add, _NUMERIC),
    Op("sub", np.subtract, _NUMERIC),
    Op("mul", np.multiply, _NUMERIC),
    Op("div", _div, _NUMERIC, code_size=480),
    Op("max", np.maximum, _NUMERIC),
    Op("min", np.minimum, _NUMERIC),
    Op("pow", np.power, _FLOATS, code_size=640),
    Op("equal", np.equal, _NUMERIC + (BOOL,), out_dtype=BOOL, code_size=200),
    Op("less", np.less, _NUMERIC, out_dtype=BOOL, code_size=200),
    Op("greater", np.greater, _NUMERIC, out_dtype=BOOL, code_size=200),
    Op("logical_and", np.logical_and, (BOOL,), code_size=120),
    Op("logical_or", np.logical_or, (BOOL,), code_size=120),
]}


def _apply(op: Op, name: str, *operands: np.ndarray) -> np.ndarray:
    """Run ``op`` in its compute type; errors name the codelet class."""
    with np.errstate(all="ignore"):
        try:
            return op.func(*(compute_view(x) for x in operands))
        except ZeroDivisionError as exc:
            raise ZeroDivisionError(f"{name}: {exc}") from None


def _build_unary(op: Op, dt: np.dtype) -> type[Vertex]:
    name = f"{op.class_stem}_{suffix(dt)}"

    def compute(inp, out):
        check_same_length(name, inp=inp, out=out)
        out[:] = _apply(op, name, inp)

    def cycles(inp_length):
        return costs.unary_cycles(op.name, inp_length, dt)

    check = functools.partial(check_same_length, name)
    fields = {"inp": Input(Vector(dt)), "out": Output(Vector(op.result_dtype(dt)))}
    kernel = IN_PLACE_KERNELS.get((op.name, dt))
    in_place = fields_in_place(kernel, ("inp",), "out", check) if kernel else None
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, op.code_size,
                        f"``out = {op.name}(inp)`` elementwise on {poplar_name(dt)} vectors.", in_place)


def _build_unary_inplace(op: Op, dt: np.dtype) -> type[Vertex]:
    name = f"{op.class_stem}InPlace_{suffix(dt)}"

    def compute(data):
        data[:] = _apply(op, name, data)

    def cycles(data_length):
        return costs.unary_cycles(op.name, data_length, dt)

    fields = {"data": InOut(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, op.code_size,
                        f"``data = {op.name}(data)`` in place on {poplar_name(dt)} vectors.")


def _build_binary(op: Op, dt: np.dtype) -> type[Vertex]:
    name = f"{op.class_stem}_{suffix(dt)}"

    def compute(a, b, out):
        check_same_length(name, a=a, b=b, out=out)
        out[:] = _apply(op, name, a, b)

    def cycles(a_length):
        return costs.binary_cycles(op.name, a_length, dt)

    check = functools.partial(check_same_length, name)
    fields = {"a": Input(Vector(dt)), "b": Input(Vector(dt)),
              "out": Output(Vector(op.result_dtype(dt)))}
    kernel = IN_PLACE_KERNELS.get((op.name, dt))
    in_place = fields_in_place(kernel, ("a", "b"), "out", check) if kernel else None
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, op.code_size,
                        f"``out = {op.name}(a, b)`` elementwise on equal-length "
                        f"{poplar_name(dt)} vectors.", in_place)


def _build_binary_inplace(op: Op, dt: np.dtype) -> type[Vertex]:
    name = f"{op.class_stem}InPlace_{suffix(dt)}"

    def compute(a, b):
        check_same_length(name, a=a, b=b)
        a[:] = _apply(op, name, a, b)

    def cycles(a_length):
        return costs.binary_cycles(op.name, a_length, dt)

    fields = {"a": InOut(Vector(dt)), "b": Input(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, op.code_size,
                        f"``a = {op.name}(a, b)`` in place on equal-length "
                        f"{poplar_name(dt)} vectors.")


def _generate(ops: dict[str, Op], build: Callable[[Op, np.dtype], type[Vertex]],
              inplace: bool) -> dict[tuple[str, np.dtype], type[Vertex]]:
    table: dict[tuple[str, np.dtype], type[Vertex]] = {}
    for op in ops.values():
        if inplace and op.out_dtype is not None:
            continue  # a comparison cannot write its BOOL result over its operand
        for dt in op.dtypes:
            table[op.name, dt] = build(op, dt)
    return table


_UNARY = _generate(UNARY_OPS, _build_unary, inplace=False)
_UNARY_INPLACE = _generate(UNARY_OPS, _build_unary_inplace, inplace=True)
_BINARY = _generate(BINARY_OPS, _build_binary, inplace=False)
_BINARY_INPLACE = _generate(BINARY_OPS, _build_binary_inplace, inplace=True)


def _lookup(table: dict[tuple[str, np.dtype], type[Vertex]], ops: dict[str, Op], kind: str,
            op: str, dtype: object) -> type[Vertex]:
    if op not in ops:
        raise UnknownCodeletError(f"no {kind} elementwise op {op!r}; known: {', '.join(ops)}")
    dt = as_dtype(dtype, f"{kind} op {op!r} element type")
    if (op, dt) not in table:
        supported = [poplar_name(d) for (name, d) in table if name == op]
        why = "" if supported else " (it has no in-place form)"
        raise DTypeError(f"{kind} op {op!r} has no {poplar_name(dt)} variant{why}; "
                         f"supported: {', '.join(supported) or 'none'}")
    return table[op, dt]


def unary(op: str, dtype: object) -> type[Vertex]:
    """The codelet computing ``out = op(inp)`` on ``dtype`` vectors, e.g. ``Relu_float``."""
    return _lookup(_UNARY, UNARY_OPS, "unary", op, dtype)


def unary_inplace(op: str, dtype: object) -> type[Vertex]:
    """The codelet computing ``data = op(data)``, e.g. ``ReluInPlace_float``."""
    return _lookup(_UNARY_INPLACE, UNARY_OPS, "unary in-place", op, dtype)


def binary(op: str, dtype: object) -> type[Vertex]:
    """The codelet computing ``out = op(a, b)`` on ``dtype`` vectors, e.g. ``Add_half``."""
    return _lookup(_BINARY, BINARY_OPS, "binary", op, dtype)


def binary_inplace(op: str, dtype: object) -> type[Vertex]:
    """The codelet computing ``a = op(a, b)``, e.g. ``AddInPlace_half``."""
    return _lookup(_BINARY_INPLACE, BINARY_OPS, "binary in-place", op, dtype)
