"""Cycle estimates of the built-in codelets: one formula per family, shared with the planners.

Every codelet's ``cycles`` calls a function here, and op planners call the same functions to cost a
plan, so the two can never disagree ("one cost formula, used twice", DESIGN.md).

Units.  A result is **worker cycles** for one instance: a worker context issues one instruction
every 6 tile cycles (barrel threading), and the cost model turns the busiest worker's cycles into
tile time by multiplying by 6 (DESIGN.md "Cost model"; PopLibs does the same,
``numWorkerContexts * thisWorkerCycles`` in poplin/PerformanceEstimation.hpp).  For a
``MultiVertex`` (MatMulPartial) the result is one worker's share of the instance.  Vertex launch
overhead (``Target.vertex_launch_cycles``) is charged by the cost model, not here.

Numbers are for ipu2 (the default preset).  Sources: DESIGN.md's hardware table and
``shared/reference/hardware-notes.md``; per-op cycles per vector are rounded from PopLibs'
``popopsCycleEstimators`` tables (measured on the simulator), overheads from PopLibs
PerformanceEstimation and the Poplar tutorial 6 cost model.

All functions take scalars or arrays (broadcast together) and return int64 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poplar_like.dtypes import BOOL, FLOAT, HALF, INT, UNSIGNED_INT, as_dtype

# --- hardware facts (ipu2) --------------------------------------------------------------------
#: 64-bit load/store and vector data path: 2 floats or 4 halves per instruction; integer and bool
#: ops are scalar (one element per instruction) [Target.data_path_width_bits, PopLibs].
DATA_PATH_BYTES = 8
#: Worker contexts per tile ("CTXT_WORKERS = 6", PopLibs; DESIGN.md hardware table).
NUM_WORKERS = 6
#: Multiply-accumulates per *tile* cycle of the AMP unit on ipu2: 32 fp32 FLOP/cycle = 16 MACs;
#: 128 fp16 FLOP/cycle = 64 MACs with half partials; half inputs with float partials run the 8-unit
#: mode at half that rate (PopLibs ConvVertexType.cpp; hardware-notes.md section 1.2).
AMP_MACS_PER_TILE_CYCLE: dict[tuple[np.dtype, np.dtype], int] = {
    (FLOAT, FLOAT): 16,
    (HALF, HALF): 64,
    (HALF, FLOAT): 32,
}

# --- fixed overheads, worker cycles ------------------------------------------------------------
#: Loop set-up of a 1-D elementwise worker vertex (pointer unpacking, count split, tail handling).
ELEMENTWISE_OVERHEAD = 12
#: Loop set-up of a copy or fill (PopLibs' memcpy-style vertices).
COPY_OVERHEAD = 6
#: Loop set-up of a vector reduction to one scalar.
REDUCE_OVERHEAD = 10
#: Extra cycles per partial vector in ReduceAdd (pointer load for the next list entry).
REDUCE_ADD_PER_PARTIAL = 2
#: Dot product: Poplar tutorial 6 estimates ``5 + (n + 1) / 2`` for float.
DOT_OVERHEAD = 5
#: MatMulPartial per worker: supervisor overhead 11 (basicOpSupervisorOverhead) plus an AMP worker
#: prologue of 20-47 cycles (poplin PerformanceEstimation.hpp), rounded.
MATMUL_OVERHEAD = 50

# --- cycles per vector (one data-path word of elements) ----------------------------------------
# Keys: op -> {dtype: cycles}.  Rounded from PopLibs popopsCycleEstimators.hpp; integer ops there
# are plain C++ loops, hence slow; transcendental float ops are multi-cycle instructions.
UNARY_CYCLES_PER_VECTOR: dict[str, dict[np.dtype, int]] = {
    "neg": {FLOAT: 2, HALF: 2, INT: 2},
    "abs": {FLOAT: 1, HALF: 1, INT: 2},
    "relu": {FLOAT: 3, HALF: 3, INT: 2},
    "square": {FLOAT: 2, HALF: 2, INT: 1, UNSIGNED_INT: 1},
    "signum": {FLOAT: 5, HALF: 5, INT: 5},
    "exp": {FLOAT: 6, HALF: 4},
    "log": {FLOAT: 12, HALF: 4},
    "sqrt": {FLOAT: 10, HALF: 23},
    "sigmoid": {FLOAT: 12, HALF: 6},
    "tanh": {FLOAT: 12, HALF: 4},
    "logical_not": {BOOL: 4},
}

_INT_ARITH = {INT: 7, UNSIGNED_INT: 7}
BINARY_CYCLES_PER_VECTOR: dict[str, dict[np.dtype, int]] = {
    "add": {FLOAT: 1, HALF: 1, **_INT_ARITH},
    "sub": {FLOAT: 1, HALF: 1, **_INT_ARITH},
    "mul": {FLOAT: 1, HALF: 1, **_INT_ARITH},
    "div": {FLOAT: 10, HALF: 21, INT: 277, UNSIGNED_INT: 265},
    "max": {FLOAT: 4, HALF: 4, **_INT_ARITH},
    "min": {FLOAT: 4, HALF: 4, **_INT_ARITH},
    "pow": {FLOAT: 624, HALF: 1300},
    "equal": {FLOAT: 7, HALF: 9, INT: 6, UNSIGNED_INT: 6, BOOL: 2},
    "less": {FLOAT: 7, HALF: 9, INT: 6, UNSIGNED_INT: 6},
    "greater": {FLOAT: 7, HALF: 9, INT: 6, UNSIGNED_INT: 6},
    "logical_and": {BOOL: 2},
    "logical_or": {BOOL: 2},
}

#: Reductions of one vector to a scalar; argmax keeps an index beside the running maximum.
REDUCE_CYCLES_PER_VECTOR: dict[str, int] = {"sum": 1, "max": 1, "min": 1, "argmax": 3}


def vector_width(dtype: object) -> int:
    """Elements per vector instruction: 2 float, 4 half, 1 for int, unsigned int and bool."""
    dt = as_dtype(dtype)
    if dt.kind != "f":
        return 1
    return DATA_PATH_BYTES // dt.itemsize


def _ceil_div(a: object, b: object) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    return -(-a // np.asarray(b, dtype=np.int64))


def loop_cycles(length: object, dtype: object, cycles_per_vector: int, overhead: int) -> np.ndarray:
    """The family formula: ``overhead + ceil(length / vector_width) * cycles_per_vector``."""
    vectors = _ceil_div(length, vector_width(dtype))
    return np.int64(overhead) + vectors * np.int64(cycles_per_vector)


def _lookup(table: dict[str, dict[np.dtype, int]], op: str, dtype: object) -> int:
    try:
        return table[op][as_dtype(dtype)]
    except KeyError:
        raise KeyError(f"no cycle estimate for op {op!r} on {np.dtype(dtype)}") from None


def unary_cycles(op: str, length: object, dtype: object) -> np.ndarray:
    """Unary elementwise op (``out = f(inp)`` or in place) on ``length`` elements."""
    return loop_cycles(length, dtype, _lookup(UNARY_CYCLES_PER_VECTOR, op, dtype),
                       ELEMENTWISE_OVERHEAD)


def binary_cycles(op: str, length: object, dtype: object) -> np.ndarray:
    """Binary elementwise op on two ``length``-element operands of ``dtype``."""
    return loop_cycles(length, dtype, _lookup(BINARY_CYCLES_PER_VECTOR, op, dtype),
                       ELEMENTWISE_OVERHEAD)


def copy_cycles(length: object, dtype: object) -> np.ndarray:
    """Copy or fill of ``length`` elements: 8 bytes stored per cycle (64-bit stores)."""
    nbytes = np.asarray(length, dtype=np.int64) * as_dtype(dtype).itemsize
    return np.int64(COPY_OVERHEAD) + _ceil_div(nbytes, DATA_PATH_BYTES)


def cast_cycles(length: object, src: object, dst: object) -> np.ndarray:
    """Type conversion: paced by the wider type's vector width, 2 cycles per vector (load,
    convert and store do not pair), 1 when the types are equal (a copy)."""
    src, dst = as_dtype(src), as_dtype(dst)
    wider = src if src.itemsize >= dst.itemsize else dst
    return loop_cycles(length, wider, 1 if src == dst else 2, ELEMENTWISE_OVERHEAD)


def scaled_add_cycles(length: object, dtype: object) -> np.ndarray:
    """``data += scale * delta`` (and ``out = scale * inp``): a multiply-add per vector, with the
    two loads and a store taking 2 cycles per vector for floats; integer ones are scalar, 8 cycles.
    """
    cpv = 2 if as_dtype(dtype).kind == "f" else 8
    return loop_cycles(length, dtype, cpv, ELEMENTWISE_OVERHEAD)


def reduce_cycles(op: str, length: object, dtype: object) -> np.ndarray:
    """Reduction of a ``length``-element vector to one scalar (sum, max, min, argmax)."""
    return loop_cycles(length, dtype, REDUCE_CYCLES_PER_VECTOR[op], REDUCE_OVERHEAD)


def reduce_add_cycles(count: object, length: object, dtype: object) -> np.ndarray:
    """Sum of ``count`` partial vectors of ``length`` elements: one vector add per word."""
    count = np.asarray(count, dtype=np.int64)
    per_partial = _ceil_div(length, vector_width(dtype)) + REDUCE_ADD_PER_PARTIAL
    return np.int64(REDUCE_OVERHEAD) + count * per_partial


def dot_cycles(length: object, dtype: object) -> np.ndarray:
    """Dot product of two ``length``-element vectors: tutorial 6's ``5 + ceil(n / 2)`` for float,
    one multiply-accumulate per vector (4 halves with float accumulation)."""
    return loop_cycles(length, dtype, 1, DOT_OVERHEAD)


def matmul_macs_per_cycle(dtype: object, out_dtype: object | None = None, target: Any = None) -> int:
    """AMP multiply-accumulates per tile cycle for ``dtype`` inputs and ``out_dtype`` partials.

    From the target's FLOP rates when one is given (a MAC is two FLOPs; half inputs with float
    partials run at half the half rate), else ipu2's table above."""
    key = (as_dtype(dtype), as_dtype(dtype if out_dtype is None else out_dtype))
    if key not in AMP_MACS_PER_TILE_CYCLE:
        raise KeyError(f"no AMP rate for {key[0]} inputs with {key[1]} partials")
    if target is None:
        return AMP_MACS_PER_TILE_CYCLE[key]
    if key == (FLOAT, FLOAT):
        return max(1, target.fp32_flops_per_cycle // 2)
    return max(1, target.fp16_flops_per_cycle // (2 if key == (HALF, HALF) else 4))


def matmul_cycles(m: object, k: object, n: object, dtype: object,
                  out_dtype: object | None = None, target: Any = None) -> np.ndarray:
    """One worker's share of an (m x k) @ (k x n) multiply-accumulate (MatMulPartial).

    The tile's AMP does ``matmul_macs_per_cycle`` MACs per tile cycle.  Spread over the workers,
    each worker issues ``m*k*n / workers`` MACs at ``rate`` per issue; the cost model multiplies
    worker cycles by the worker count, giving back ``m*k*n / rate`` tile cycles at peak.
    """
    macs = (np.asarray(m, dtype=np.int64) * np.asarray(k, dtype=np.int64)
            * np.asarray(n, dtype=np.int64))
    workers = NUM_WORKERS if target is None else target.num_worker_contexts
    rate = matmul_macs_per_cycle(dtype, out_dtype, target) * workers
    return np.int64(MATMUL_OVERHEAD) + _ceil_div(macs, rate)


def matmul_tile_cycles(m: object, k: object, n: object, dtype: object,
                       out_dtype: object | None = None, target: Any = None) -> np.ndarray:
    """Tile cycles of one MatMulPartial instance: all workers busy for ``matmul_cycles``."""
    workers = NUM_WORKERS if target is None else target.num_worker_contexts
    return workers * matmul_cycles(m, k, n, dtype, out_dtype, target)
