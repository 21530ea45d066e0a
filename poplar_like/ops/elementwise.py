"""Elementwise ops (popops' map, cast, fill, scaledAddTo): one compute set each, vertices on the
tiles where the output lives, so an op on tensors mapped alike needs no exchange.

Every op splits the elements it writes by tile into runs of at most ``vertex_length`` elements
(``plan_elementwise``: the busiest tile's elements shared by its workers, a whole number of
data-path vectors, at most :data:`MAX_VERTEX_ELEMENTS`) and adds one vertex per run in bulk.
The helpers here are shared by the other ops: ``broadcast_to``, ``elementwise_vertices``,
``release_together`` (one WriteUndef per element type) and ``per_tile_copy`` (a run-time scalar
broadcast once to every tile, so ops reading it do not each make its tile talk to every tile).
"""

from __future__ import annotations

import functools

import numpy as np

import codelets
from codelets import nn

from ..dtypes import FLOAT, HALF, as_dtype, poplar_name
from ..errors import DTypeError, GraphError, TensorError
from ..graph import ComputeSet, Copy, Execute, Graph, Sequence, Tensor, concat
from ..target import Target
from .common import gather, op_name, record, release, split_by_tile, variable_like

#: Longest vector one elementwise vertex handles (elements): long enough that the loop overhead
#: is small, short enough that a tile's work spreads over its six workers.
MAX_VERTEX_ELEMENTS = 256
#: Smallest run worth a vertex of its own (bytes): below it, a vertex's state (8 bytes a field)
#: and launch cost outweigh spreading a tile's few elements over more workers.
MIN_VERTEX_BYTES = 128

#: ``maximum``/``minimum`` are numpy's names; the codelets call them ``max``/``min``.
_ALIASES = {"maximum": "max", "minimum": "min", "subtract": "sub", "multiply": "mul", "divide": "div"}


# ==================================================================== planning (pure)
@functools.lru_cache(maxsize=1024)
def plan_elementwise(target: Target, max_tile_elements: int, dtype: object) -> dict:
    """Vertex length for ``max_tile_elements`` on the busiest tile: a worker's share, rounded up to
    whole vectors, between ``MIN_VERTEX_BYTES`` and ``MAX_VERTEX_ELEMENTS``."""
    dt = as_dtype(dtype)
    vw = target.vector_width(dt)
    per_worker = -(-int(max_tile_elements) // target.num_worker_contexts)
    shortest = max(vw, MIN_VERTEX_BYTES // dt.itemsize)
    length = -(-max(per_worker, shortest) // vw) * vw
    return {"vertex_length": int(min(length, max(MAX_VERTEX_ELEMENTS, vw)))}


def max_tile_elements(graph: Graph, tensor: Tensor) -> int:
    """Elements of ``tensor`` on its busiest tile (0 for an empty tensor)."""
    tiles = graph.tile_of_elements(tensor).reshape(-1)
    if tiles.size == 0:
        return 0
    if (tiles < 0).any():
        raise GraphError(f"tensor {tensor.name!r} is not fully mapped to tiles; map it before using it in an op")
    return int(np.bincount(tiles.astype(np.int64)).max())


# ==================================================================== shared helpers
def broadcast_to(t: Tensor, shape: tuple[int, ...], who: str) -> Tensor:
    """A view of ``t`` broadcast to ``shape`` by numpy's rules (elements repeat; no data moves)."""
    shape = tuple(shape)
    if t.shape == shape:
        return t
    if t.rank > len(shape):
        raise TensorError(f"{who}: cannot broadcast {t.name!r} of shape {t.shape} to {shape}")
    view = t.reshape((1,) * (len(shape) - t.rank) + t.shape)
    for d, (have, want) in enumerate(zip(view.shape, shape, strict=True)):
        if have == want:
            continue
        if have != 1:
            raise TensorError(f"{who}: cannot broadcast {t.name!r} of shape {t.shape} to {shape} "
                              f"(dimension {d}: {have} vs {want})")
        if want == 0:
            raise TensorError(f"{who}: cannot broadcast {t.name!r} to the empty shape {shape}")
        view = view.broadcast(want, d)
    return view


def check_dtype(t: Tensor, allowed: tuple, who: str) -> None:
    if t.dtype not in allowed:
        raise DTypeError(f"{who}: tensor {t.name!r} is {poplar_name(t.dtype)}; expected "
                         f"{' or '.join(poplar_name(d) for d in allowed)}")


def elementwise_vertices(graph: Graph, cs: ComputeSet, codelet: type, where: Tensor,
                         fields: dict[str, Tensor], state: dict | None = None,
                         length: int | None = None) -> int:
    """Add ``codelet`` vertices over the elements of ``where`` (on the tiles that hold them).

    ``fields`` maps each Vector field to a tensor of ``where``'s shape; each vertex gets the same
    positions of every field.  Returns the vertex length used.
    """
    if length is None:
        length = plan_elementwise(graph.target, max_tile_elements(graph, where), where.dtype)["vertex_length"]
    chunks = split_by_tile(graph, where, length)
    for positions, tiles in chunks.groups():
        graph.add_vertices(cs, codelet, {f: gather(t, positions) for f, t in fields.items()}, tiles,
                           state=state)
    return length


def release_together(prog: Sequence, temporaries: list[Tensor]) -> None:
    """``release`` with one WriteUndef per element type: every program step costs control code on
    every tile, so an op frees all its temporaries in one step after its last use."""
    by_dtype: dict[np.dtype, list[Tensor]] = {}
    for t in temporaries:
        by_dtype.setdefault(t.dtype, []).append(t.flatten())
    release(prog, [parts[0] if len(parts) == 1 else concat(parts) for parts in by_dtype.values()])


def per_tile_copy(graph: Graph, scalar: Tensor, prog: Sequence, name: str) -> tuple[Tensor, bool]:
    """A (num_tiles,) variable holding ``scalar``'s value on every tile, refreshed in ``prog``.

    A run-time scalar (a learning rate) read by vertices on every tile would make its tile send
    to every tile in every op that reads it; instead the first op that needs it in ``prog``
    appends one Copy (one broadcast per run of ``prog``) and later ops in the same sequence
    read their tile's copy.  Returns the copies and whether this call created them.
    """
    element = int(scalar.flat_ids()[0])
    known = graph.op_cache.setdefault("elementwise.per_tile_copy", [])  # (sequence, scalar id, copies)
    for seq, elem, copies in known:
        if seq is prog and elem == element:
            return copies, False
    tiles = graph.target.num_tiles
    copies = graph.add_variable(scalar.dtype, (tiles,), name)
    graph.set_tile_mapping(copies, np.arange(tiles, dtype=np.int32))
    prog.add(Copy(scalar.flatten()[np.zeros(tiles, dtype=np.int64)], copies))
    known.append((prog, element, copies))
    return copies, True


def _start(graph: Graph, kind: str, name: str) -> tuple[str, ComputeSet]:
    opname = op_name(graph, kind, name)
    return opname, graph.add_compute_set(f"{opname}/compute")


def _own(graph: Graph, t: object, who: str) -> Tensor:
    if not isinstance(t, Tensor) or t.graph is not graph:
        raise TensorError(f"{who}: expected a tensor of this graph, got {t!r}")
    return t


# ==================================================================== ops
def unary(graph: Graph, op: str, x: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``y = op(x)`` elementwise (relu, neg, exp, log, sqrt, square, sigmoid, tanh, abs, ...);
    ``y`` is mapped like ``x``."""
    x = _own(graph, x, f"unary {op!r}")
    codelet = codelets.unary(op, x.dtype)
    opname, cs = _start(graph, op, name)
    out = variable_like(graph, x, f"{opname}/out", codelet.fields["out"].type.dtype)
    length = elementwise_vertices(graph, cs, codelet, out, {"inp": x, "out": out})
    prog.add(Execute(cs))
    record(graph, opname, "unary", {"op": op, "vertex_length": length}, [cs])
    return out


def unary_inplace(graph: Graph, op: str, x: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``x = op(x)`` in place; returns ``x``."""
    x = _own(graph, x, f"unary_inplace {op!r}")
    codelet = codelets.unary_inplace(op, x.dtype)
    opname, cs = _start(graph, op, name)
    length = elementwise_vertices(graph, cs, codelet, x, {"data": x})
    prog.add(Execute(cs))
    record(graph, opname, "unary_inplace", {"op": op, "vertex_length": length}, [cs])
    return x


def binary(graph: Graph, op: str, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``out = op(a, b)`` with ``b`` broadcast against ``a`` by numpy's rules; ``out`` has ``a``'s
    shape and mapping (comparisons give BOOL)."""
    op = _ALIASES.get(op, op)
    a, b = _own(graph, a, f"binary {op!r}"), _own(graph, b, f"binary {op!r}")
    if a.dtype != b.dtype:
        raise DTypeError(f"binary {op!r}: {a.name!r} is {poplar_name(a.dtype)} but {b.name!r} is "
                         f"{poplar_name(b.dtype)}; cast one first")
    codelet = codelets.binary(op, a.dtype)
    b_view = broadcast_to(b, a.shape, f"binary {op!r}") if a.numel else b
    opname, cs = _start(graph, op, name)
    out = variable_like(graph, a, f"{opname}/out", codelet.fields["out"].type.dtype)
    length = elementwise_vertices(graph, cs, codelet, out, {"a": a, "b": b_view, "out": out}) if a.numel else 0
    prog.add(Execute(cs))
    record(graph, opname, "binary", {"op": op, "vertex_length": length, "broadcast": b.shape != a.shape}, [cs])
    return out


def binary_inplace(graph: Graph, op: str, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``a = op(a, b)`` in place, ``b`` broadcast against ``a``; returns ``a``."""
    op = _ALIASES.get(op, op)
    a, b = _own(graph, a, f"binary_inplace {op!r}"), _own(graph, b, f"binary_inplace {op!r}")
    if a.dtype != b.dtype:
        raise DTypeError(f"binary_inplace {op!r}: {a.name!r} is {poplar_name(a.dtype)} but {b.name!r} is "
                         f"{poplar_name(b.dtype)}")
    codelet = codelets.binary_inplace(op, a.dtype)
    b_view = broadcast_to(b, a.shape, f"binary_inplace {op!r}") if a.numel else b
    opname, cs = _start(graph, op, name)
    length = elementwise_vertices(graph, cs, codelet, a, {"a": a, "b": b_view}) if a.numel else 0
    prog.add(Execute(cs))
    record(graph, opname, "binary_inplace", {"op": op, "vertex_length": length,
                                             "broadcast": b.shape != a.shape}, [cs])
    return a


def add(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``a + b`` (``b`` broadcast)."""
    return binary(graph, "add", a, b, prog, name)


def sub(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``a - b`` (``b`` broadcast)."""
    return binary(graph, "sub", a, b, prog, name)


def mul(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``a * b`` (``b`` broadcast)."""
    return binary(graph, "mul", a, b, prog, name)


def div(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``a / b`` (``b`` broadcast; integer division truncates like C)."""
    return binary(graph, "div", a, b, prog, name)


def maximum(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """Elementwise maximum (``b`` broadcast; NaN propagates)."""
    return binary(graph, "max", a, b, prog, name)


def minimum(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """Elementwise minimum (``b`` broadcast; NaN propagates)."""
    return binary(graph, "min", a, b, prog, name)


def scaled_add(graph: Graph, a: Tensor, b: Tensor, scale: float | Tensor, prog: Sequence,
               name: str = "") -> Tensor:
    """``a += scale * b`` in place (Poplar's ``scaledAddTo``); ``b`` has ``a``'s shape.

    ``scale`` is a Python number (vertex state, fixed at build time) or a 1-element tensor read at
    run time (FLOAT, or HALF for half data; see :func:`per_tile_copy`).  Half data is updated in
    float32.  Returns ``a``."""
    a, b = _own(graph, a, "scaled_add"), _own(graph, b, "scaled_add")
    if b.shape != a.shape:
        raise TensorError(f"scaled_add: {b.name!r} has shape {b.shape} but {a.name!r} has {a.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"scaled_add: {a.name!r} is {poplar_name(a.dtype)} but {b.name!r} is "
                         f"{poplar_name(b.dtype)}")
    opname, cs = _start(graph, "scaled_add", name)
    if isinstance(scale, Tensor):
        scale = _own(graph, scale, "scaled_add scale")
        if scale.numel != 1:
            raise TensorError(f"scaled_add: the scale tensor {scale.name!r} must have one element, "
                              f"has shape {scale.shape}")
        codelet = nn.ScaledAddTensor[a.dtype, scale.dtype]
        copies, _ = per_tile_copy(graph, scale, prog, f"{opname}/scale_copies")
        length = plan_elementwise(graph.target, max_tile_elements(graph, a), a.dtype)["vertex_length"]
        for positions, tiles in split_by_tile(graph, a, length).groups():
            graph.add_vertices(cs, codelet, {"data": gather(a, positions), "delta": gather(b, positions),
                                             "scale": copies[tiles]}, tiles)
        kind = "tensor"
    else:
        codelet = codelets.ScaledAdd[a.dtype]
        length = elementwise_vertices(graph, cs, codelet, a, {"data": a, "delta": b}, state={"scale": scale})
        kind = "constant"
    prog.add(Execute(cs))
    record(graph, opname, "scaled_add", {"vertex_length": length, "scale": kind}, [cs])
    return a


def cast(graph: Graph, x: Tensor, dtype: object, prog: Sequence, name: str = "") -> Tensor:
    """A new tensor of ``dtype`` mapped like ``x`` (codelets.data's cast rules)."""
    x = _own(graph, x, "cast")
    dst = as_dtype(dtype, "cast")
    opname, cs = _start(graph, "cast", name)
    out = variable_like(graph, x, f"{opname}/out", dst)
    length = elementwise_vertices(graph, cs, codelets.Cast[x.dtype, dst], out, {"inp": x, "out": out})
    prog.add(Execute(cs))
    record(graph, opname, "cast", {"from": poplar_name(x.dtype), "to": poplar_name(dst),
                                   "vertex_length": length}, [cs])
    return out


def copy(graph: Graph, x: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """A new tensor equal to ``x``, mapped like it (on-tile copies, no exchange)."""
    x = _own(graph, x, "copy")
    opname, cs = _start(graph, "copy", name)
    out = variable_like(graph, x, f"{opname}/out")
    length = elementwise_vertices(graph, cs, codelets.Copy[x.dtype], out, {"inp": x, "out": out})
    prog.add(Execute(cs))
    record(graph, opname, "copy", {"vertex_length": length}, [cs])
    return out


def fill(graph: Graph, x: Tensor, value: float, prog: Sequence, name: str = "") -> Tensor:
    """Set every element of ``x`` (a view without repeats) to ``value``; returns ``x``."""
    x = _own(graph, x, "fill")
    opname, cs = _start(graph, "fill", name)
    length = elementwise_vertices(graph, cs, codelets.Fill[x.dtype], x, {"out": x}, state={"value": value})
    prog.add(Execute(cs))
    record(graph, opname, "fill", {"value": float(value), "vertex_length": length}, [cs])
    return x


def relu_grad(graph: Graph, y: Tensor, dy: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """``dx = dy * (y > 0)`` from relu's output ``y`` (torch's ``threshold_backward``); ``dx`` is
    mapped like ``y``."""
    y, dy = _own(graph, y, "relu_grad"), _own(graph, dy, "relu_grad")
    if y.shape != dy.shape or y.dtype != dy.dtype:
        raise TensorError(f"relu_grad: y {y.shape} {poplar_name(y.dtype)} and dy {dy.shape} "
                          f"{poplar_name(dy.dtype)} must have one shape and type")
    check_dtype(y, (FLOAT, HALF), "relu_grad")
    opname, cs = _start(graph, "relu_grad", name)
    out = variable_like(graph, y, f"{opname}/dx")
    length = elementwise_vertices(graph, cs, nn.ReluGrad[y.dtype], out, {"y": y, "dy": dy, "out": out})
    prog.add(Execute(cs))
    record(graph, opname, "relu_grad", {"vertex_length": length}, [cs])
    return out
