"""Vertex batches: blocks of one compute set merged by codelet and field shapes.

A batch is the unit the engine runs with one call of the codelet's vectorised ``compute``.  Rows
are sorted by tile, so an MPI rank owning a block of tiles owns a contiguous slice of rows.  This
module also validates vertices (mapped, connected, state set, estimable) block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codelet import VECTOR, VECTOR_LIST, Vertex, estimate_cycles
from ..errors import FieldConnectionError, MissingPerfEstimateError, TileMappingError
from ..graph import ComputeSet
from ..graph.vertices import VertexBlock
from ..arrays import stable_order


@dataclass
class Batch:
    """Instances of one codelet with one field-shape signature, in one compute set."""

    codelet: type[Vertex]
    tiles: np.ndarray  # (n,) int32, ascending
    edges: dict[str, np.ndarray]  # field -> element ids (n, *field_shape)
    state: dict[str, np.ndarray]  # field -> values (n,)
    cycles: np.ndarray  # (n,) int64 estimated cycles per instance
    numbers: np.ndarray  # (n,) vertex number within the compute set, for messages

    @property
    def n(self) -> int:
        return int(self.tiles.size)

    def describe(self, row: int, cs_name: str) -> str:
        return (f"vertex #{int(self.numbers[row])} ({self.codelet.__name__}) on tile {int(self.tiles[row])} "
                f"in compute set {cs_name!r}")


def validate_block(block: VertexBlock) -> None:
    """Raise a GraphError naming the first vertex of the block that cannot be compiled."""
    unmapped = np.flatnonzero(block.tiles < 0)
    if unmapped.size:
        raise TileMappingError(f"{block.vertex_name(int(unmapped[0]))} has no tile mapping"
                               + (f" (and {unmapped.size - 1} more vertices)" if unmapped.size > 1 else "")
                               + "; use graph.set_tile_mapping(vertex, tile)")
    for name, ids in block.edges.items():
        if ids is None or ids.shape[0] != block.n:
            raise FieldConnectionError(f"field {name!r} of {block.vertex_name(0)} is not connected; "
                                       "connect it with graph.connect(vertex[name], tensor)")
    for name, values in block.state.items():
        if values is None:
            raise FieldConnectionError(f"state field {name!r} of {block.vertex_name(0)} has no value; set it "
                                       "with graph.set_initial_value(vertex[name], value)")
    if block.codelet.cycles is None:
        missing = np.arange(block.n) if block.perf is None else np.flatnonzero(block.perf < 0)
        if missing.size:
            raise MissingPerfEstimateError(
                f"{block.vertex_name(int(missing[0]))} has no cycle estimate: codelet "
                f"{block.codelet.__name__} defines no cycles() and no graph.set_perf_estimate was given")


def _signature(block: VertexBlock) -> tuple:
    edges = tuple((name, ids.shape[1:]) for name, ids in block.edges.items())  # type: ignore[union-attr]
    return (block.codelet, edges)


def sizes_of(codelet: type[Vertex], edges: dict[str, np.ndarray], state: dict[str, np.ndarray],
             n: int) -> dict[str, np.ndarray]:
    """The arguments a codelet's ``cycles`` may ask for, as (n,) arrays."""
    sizes: dict[str, np.ndarray] = {}
    for name, fld in codelet.fields.items():
        if fld.type.kind == VECTOR:
            sizes[f"{name}_length"] = np.full(n, edges[name].shape[1], dtype=np.int64)
        elif fld.type.kind == VECTOR_LIST:
            sizes[f"{name}_count"] = np.full(n, edges[name].shape[1], dtype=np.int64)
            sizes[f"{name}_length"] = np.full(n, edges[name].shape[2], dtype=np.int64)
        elif not fld.is_edge:
            sizes[name] = state[name]
    return sizes


def build_batches(cs: ComputeSet) -> list[Batch]:
    """Validate a compute set's blocks and merge them into tile-sorted batches."""
    groups: dict[tuple, list[VertexBlock]] = {}
    for block in cs.blocks:
        validate_block(block)
        groups.setdefault(_signature(block), []).append(block)
    batches = []
    num_tiles = cs.graph.target.num_tiles
    for (codelet, _), blocks in groups.items():
        def column(get):
            parts = [get(b) for b in blocks]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        tiles = column(lambda b: b.tiles)
        order = stable_order(tiles, num_tiles)

        def ordered(get):
            values = column(get)
            return values if order is None else values[order]

        edges = {name: ordered(lambda b, name=name: b.edges[name]) for name in blocks[0].edges}
        state = {name: ordered(lambda b, name=name: b.state[name]) for name in blocks[0].state}
        numbers = ordered(lambda b: np.arange(b.first, b.first + b.n))
        n = tiles.size
        if codelet.cycles is not None:
            cycles = estimate_cycles(codelet, sizes_of(codelet, edges, state, n), n, cs.graph.target)
        else:
            cycles = np.zeros(n, dtype=np.int64)
        if any(b.perf is not None for b in blocks):
            override = ordered(lambda b: b.perf if b.perf is not None else np.full(b.n, -1, dtype=np.int64))
            cycles = np.where(override >= 0, override, cycles)
        batches.append(Batch(codelet, ordered(lambda b: b.tiles).astype(np.int32, copy=False), edges, state,
                             cycles, numbers))
    return batches
