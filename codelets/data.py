"""Data-movement codelets: fill, copy, cast, and the two scaling updates.

Families (index by element type, e.g. ``Fill[FLOAT]``; ``Cast[src, dst]``):

* ``Fill``       ``out: Output(Vector(dt))``, ``value: State(dt)``: every element := value.
* ``Copy``       ``inp: Input(Vector(dt))`` -> ``out: Output(Vector(dt))``.
* ``Cast``       ``inp: Input(Vector(src))`` -> ``out: Output(Vector(dst))``, all 25 pairs.
* ``ScaledAdd``  ``data: InOut(Vector(dt))``, ``delta: Input(Vector(dt))``, ``scale: State(st)``:
  ``data += scale * delta`` (the weight update of SGD, Poplar's ``scaledAddTo``).
* ``Scale``      ``inp: Input(Vector(dt))`` -> ``out: Output(Vector(dt))``, ``scale: State(st)``:
  ``out = scale * inp``.

For the scaling codelets the scale is FLOAT when the data is HALF (a learning rate such as 1e-5
should not be rounded to half first) and the data type otherwise; half data is updated in float32
and rounded once.

Cast rules, chosen so that no conversion is undefined: float to integer truncates toward zero and
saturates at the integer range, NaN becomes 0; integer to integer wraps modulo 2**32 (two's
complement, as C does for unsigned targets); anything to BOOL is ``x != 0`` (NaN is true);
float to half rounds to nearest even and overflows to inf.
"""

from __future__ import annotations

import itertools

import numpy as np

from poplar_like.codelet import InOut, Input, Output, State, Vector, Vertex
from poplar_like.dtypes import BOOL, FLOAT, HALF, INT, SUPPORTED, UNSIGNED_INT, poplar_name

from . import costs
from ._registry import CodeletFamily, check_same_length, make_codelet, suffix

_NUMERIC = (FLOAT, HALF, INT, UNSIGNED_INT)


def _build_fill(dt: np.dtype) -> type[Vertex]:
    def compute(out, value):
        out[:] = value[:, None]

    def cycles(out_length):
        return costs.copy_cycles(out_length, dt)

    fields = {"out": Output(Vector(dt)), "value": State(dt)}
    return make_codelet(__name__, f"Fill_{suffix(dt)}", Vertex, fields, compute, cycles, 96,
                        f"Set every element of a {poplar_name(dt)} vector to ``value``.")


def _build_copy(dt: np.dtype) -> type[Vertex]:
    name = f"Copy_{suffix(dt)}"

    def compute(inp, out):
        check_same_length(name, inp=inp, out=out)
        out[:] = inp

    def cycles(inp_length):
        return costs.copy_cycles(inp_length, dt)

    fields = {"inp": Input(Vector(dt)), "out": Output(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 128,
                        f"Copy a {poplar_name(dt)} vector (an on-tile copy, no exchange).")


def convert(x: np.ndarray, dst: np.dtype) -> np.ndarray:
    """Convert ``x`` to ``dst`` by the module's cast rules (no undefined conversions)."""
    if dst == BOOL:
        return x != 0
    if x.dtype.kind == "f" and dst.kind in "iu":
        info = np.iinfo(dst)
        with np.errstate(invalid="ignore"):
            truncated = np.trunc(x.astype(np.float64))
        return np.clip(np.nan_to_num(truncated, nan=0.0), info.min, info.max).astype(dst)
    # Integer to integer wraps; to float rounds to nearest (overflowing half to inf).
    with np.errstate(over="ignore"):
        return x.astype(dst)


def _build_cast(src: np.dtype, dst: np.dtype) -> type[Vertex]:
    name = f"Cast_{suffix(src, dst)}"

    def compute(inp, out):
        check_same_length(name, inp=inp, out=out)
        out[:] = convert(inp, dst)

    def cycles(inp_length):
        return costs.cast_cycles(inp_length, src, dst)

    fields = {"inp": Input(Vector(src)), "out": Output(Vector(dst))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 160,
                        f"Convert a {poplar_name(src)} vector to {poplar_name(dst)} "
                        "(see the module's cast rules).")


def scale_dtype(dt: np.dtype) -> np.dtype:
    """Type of the ``scale`` state of ScaledAdd and Scale on ``dt`` data."""
    return FLOAT if dt == HALF else dt


def _scaled(scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scale * x`` per instance in the compute type (float32 for half data)."""
    x = x.astype(np.float32) if x.dtype == HALF else x
    return scale[:, None].astype(x.dtype) * x


def _build_scaled_add(dt: np.dtype) -> type[Vertex]:
    name = f"ScaledAdd_{suffix(dt)}"

    def compute(data, delta, scale):
        check_same_length(name, data=data, delta=delta)
        with np.errstate(over="ignore", invalid="ignore"):
            acc = data.astype(np.float32) if dt == HALF else data
            data[:] = acc + _scaled(scale, delta)

    def cycles(data_length):
        return costs.scaled_add_cycles(data_length, dt)

    fields = {"data": InOut(Vector(dt)), "delta": Input(Vector(dt)),
              "scale": State(scale_dtype(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 192,
                        f"``data += scale * delta`` on {poplar_name(dt)} vectors.")


def _build_scale(dt: np.dtype) -> type[Vertex]:
    name = f"Scale_{suffix(dt)}"

    def compute(inp, out, scale):
        check_same_length(name, inp=inp, out=out)
        with np.errstate(over="ignore", invalid="ignore"):
            out[:] = _scaled(scale, inp)

    def cycles(inp_length):
        return costs.scaled_add_cycles(inp_length, dt)

    fields = {"inp": Input(Vector(dt)), "out": Output(Vector(dt)),
              "scale": State(scale_dtype(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 160,
                        f"``out = scale * inp`` on {poplar_name(dt)} vectors.")


Fill = CodeletFamily("Fill", _build_fill, [(dt,) for dt in SUPPORTED])
Copy = CodeletFamily("Copy", _build_copy, [(dt,) for dt in SUPPORTED])
Cast = CodeletFamily("Cast", _build_cast, list(itertools.product(SUPPORTED, SUPPORTED)))
ScaledAdd = CodeletFamily("ScaledAdd", _build_scaled_add, [(dt,) for dt in _NUMERIC])
Scale = CodeletFamily("Scale", _build_scale, [(dt,) for dt in _NUMERIC])
