"""Vertex storage: columnar blocks, never one object per vertex.

A :class:`VertexBlock` holds ``n`` instances of one codelet added together: their tiles, and for
each edge field an id array whose first axis is the instance (``(n,)`` scalar, ``(n, L)`` vector,
``(n, k, L)`` vector list).  ``add_vertex`` makes a block of one; the bulk ``add_vertices`` makes
a block of millions in one call.  The compiler merges blocks of equal field shapes into batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..codelet import SCALAR, STATE, VECTOR, VECTOR_LIST, Field, Vertex
from ..dtypes import poplar_name
from ..errors import DTypeError, FieldConnectionError, UnknownFieldError
from .tensor import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .graph import ComputeSet


class VertexBlock:
    """``n`` instances of one codelet in one compute set, stored as columns."""

    def __init__(self, compute_set: "ComputeSet", codelet: type[Vertex], n: int, first: int) -> None:
        self.compute_set = compute_set
        self.codelet = codelet
        self.n = n
        self.first = first  # number of the first instance within its compute set
        self.tiles = np.full(n, -1, dtype=np.int32)
        self.edges: dict[str, np.ndarray | None] = {f: None for f, d in codelet.fields.items() if d.is_edge}
        self.state: dict[str, np.ndarray | None] = {f: None for f, d in codelet.fields.items() if not d.is_edge}
        self.perf: np.ndarray | None = None  # per-instance set_perf_estimate, -1 where unset

    def field(self, name: str) -> Field:
        try:
            return self.codelet.fields[name]
        except KeyError:
            raise UnknownFieldError(f"codelet {self.codelet.__name__} has no field {name!r}; its fields are "
                                    f"{list(self.codelet.fields)}") from None

    def vertex_name(self, row: int) -> str:
        return f"vertex #{self.first + row} ({self.codelet.__name__}) in compute set {self.compute_set.name!r}"

    def num_edges(self) -> int:
        """Edges as Poplar counts them: one per scalar or vector field, one per vector of a list."""
        total = 0
        for name, ids in self.edges.items():
            if ids is None:
                continue
            total += self.n * (ids.shape[1] if self.field(name).type.kind == VECTOR_LIST else 1)
        return total


def field_ids(block: VertexBlock, name: str, tensor: object, rows: int | None) -> np.ndarray:
    """Check that ``tensor`` fits field ``name`` and return its ids shaped ``(n, *field_shape)``.

    ``rows`` is the instance for a single-vertex connection, or None for a bulk connection whose
    tensor's first axis is the instance.
    """
    fld = block.field(name)
    who = block.vertex_name(rows) if rows is not None else \
        f"{block.n} {block.codelet.__name__} vertices in compute set {block.compute_set.name!r}"
    if fld.direction == STATE:
        raise FieldConnectionError(f"field {name!r} of {who} is vertex state: set it with "
                                   "graph.set_initial_value, not connect")
    kind = fld.type.kind
    if kind == VECTOR_LIST and rows is not None and isinstance(tensor, (list, tuple)):
        tensor = _stack_vector_list(block, name, list(tensor), who)
    if not isinstance(tensor, Tensor):
        raise FieldConnectionError(f"field {name!r} of {who} must be connected to a tensor, got {type(tensor).__name__}")
    if tensor.graph is not block.compute_set.graph:
        raise FieldConnectionError(f"field {name!r} of {who}: tensor {tensor.name!r} belongs to another graph")
    if tensor.dtype != fld.type.dtype:
        raise DTypeError(f"field {name!r} of {who} is {fld.type} but tensor {tensor.name!r} is "
                         f"{poplar_name(tensor.dtype)}")
    shape = tensor.shape if rows is not None else tensor.shape[1:]
    lead = () if rows is not None else tensor.shape[:1]
    if rows is None and (not tensor.shape or tensor.shape[0] != block.n):
        raise FieldConnectionError(f"field {name!r} of {who}: bulk tensor {tensor.name!r} has shape {tensor.shape}; "
                                   f"its first dimension must be the {block.n} instances")
    if kind == SCALAR:
        if shape not in ((), (1,)):
            raise FieldConnectionError(f"field {name!r} of {who} is a scalar {fld.type} but tensor {tensor.name!r} "
                                       f"has shape {tensor.shape}; connect a single element")
        ids = tensor.ids.reshape(lead + ())
    elif kind == VECTOR:
        if len(shape) != 1:
            raise FieldConnectionError(f"field {name!r} of {who} is a {fld.type} and needs a 1-D tensor, but "
                                       f"{tensor.name!r} has shape {tensor.shape}; flatten or slice it first")
        if fld.type.size is not None and shape[0] != fld.type.size:
            raise FieldConnectionError(f"field {name!r} of {who} is a {fld.type} of {fld.type.size} elements, but "
                                       f"{tensor.name!r} has {shape[0]}")
        ids = tensor.ids
    else:
        if len(shape) != 2:
            raise FieldConnectionError(f"field {name!r} of {who} is a {fld.type}: connect a list of equal-length "
                                       f"1-D tensors or a 2-D tensor, not shape {tensor.shape}")
        ids = tensor.ids
    if rows is not None:
        ids = ids.reshape((1,) + ids.shape)
    return ids


def _stack_vector_list(block: VertexBlock, name: str, tensors: list, who: str) -> Tensor:
    from .tensor import concat

    if not tensors:
        raise FieldConnectionError(f"field {name!r} of {who}: a VectorList needs at least one tensor")
    lengths = {t.numel if isinstance(t, Tensor) else None for t in tensors}
    if None in lengths:
        raise FieldConnectionError(f"field {name!r} of {who}: every VectorList item must be a tensor")
    if len(lengths) != 1:
        raise FieldConnectionError(f"field {name!r} of {who}: VectorList items must have equal lengths, got "
                                   f"{sorted(lengths)}; split the work over several vertices")
    for t in tensors:
        if t.rank != 1:
            raise FieldConnectionError(f"field {name!r} of {who}: VectorList item {t.name!r} must be 1-D, "
                                       f"got shape {t.shape}")
    return concat([t.reshape(1, t.numel) for t in tensors], 0)


def state_values(block: VertexBlock, name: str, value: object, rows: int | None) -> np.ndarray:
    """Check a ``set_initial_value`` and return it as the field's dtype, shaped ``(1,)`` or ``(n,)``."""
    fld = block.field(name)
    who = block.vertex_name(rows) if rows is not None else f"{block.n} {block.codelet.__name__} vertices"
    if fld.direction != STATE:
        raise FieldConnectionError(f"field {name!r} of {who} is an edge ({fld!r}): connect a tensor to it; "
                                   "set_initial_value is for vertex state fields")
    array = np.asarray(value)
    expected = (1,) if rows is not None else (block.n,)
    if array.ndim == 0:
        array = np.full(expected, array)
    if array.shape != expected:
        raise FieldConnectionError(f"state field {name!r} of {who}: got values of shape {array.shape}, "
                                   f"expected a scalar or {expected}")
    cast = array.astype(fld.type.dtype)
    if np.issubdtype(fld.type.dtype, np.integer) and not np.array_equal(cast, array):
        raise FieldConnectionError(f"state field {name!r} of {who} is {fld.type}: value {value!r} does not fit")
    return cast
