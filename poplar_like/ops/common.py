"""What every op of the layer library shares (PopLibs' poputil): names, records, mappings, and
splitting work "where the data lives".

Conventions of ``poplar_like.ops`` (PopLibs style):

* an op is a function ``op(graph, inputs..., prog, name="", **options)`` that creates its output
  tensors with a planned tile mapping, adds vertices on the tiles where the data lives, appends
  its steps to ``prog`` (a :class:`pl.Sequence`) and returns the outputs;
* compute sets are named ``"{name}/{phase}"`` so the profile and the graph pictures can group
  them by op; every op call is recorded with :func:`record` (kind, plan, compute sets,
  temporaries) and shows in the profile's ``ops`` table;
* variables an op creates for its own use are *temporaries*: the op appends ``WriteUndef`` after
  their last use so their memory is shared with other temporaries;
* no Python loop per element or per vertex: vertices are added in bulk (``graph.add_vertices``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import as_dtype
from ..graph import ComputeSet, Graph, Sequence, Tensor, WriteUndef, map_tensor_linearly


def op_name(graph: Graph, kind: str, name: str = "") -> str:
    """A name for an op call, unique in the graph (``name`` if free, else ``name#2``...)."""
    base = name or kind
    taken = {r["name"] for r in graph.op_records}
    if base not in taken and name:
        return base
    n = 1 if name else len(graph.op_records)
    while f"{base}#{n}" in taken or (not name and f"{base}{n}" in taken):
        n += 1
    return f"{base}#{n}" if name else f"{base}{n}"


def record(graph: Graph, name: str, kind: str, plan: dict | None = None, compute_sets: list[ComputeSet] | None = None,
           temporaries: list[Tensor] | None = None, **facts: object) -> None:
    """Remember an op call for the profile (plain JSON-able data)."""
    graph.op_records.append({
        "name": name, "kind": kind, "plan": dict(plan or {}),
        "compute_sets": [cs.name for cs in (compute_sets or [])],
        "temporaries": sorted({graph.variables[v].name for t in (temporaries or []) for v in t.variables()}),
        **facts,
    })


def release(prog: Sequence, temporaries: list[Tensor]) -> None:
    """Declare temporaries dead after their last use (so their memory can be reused)."""
    for t in temporaries:
        prog.add(WriteUndef(t))


def linear_variable(graph: Graph, dtype: object, shape: tuple[int, ...], name: str) -> Tensor:
    """A new variable spread evenly over the tiles (PopLibs' mapTensorLinearly).

    Each one starts on the tile after the last tile of the previous one, round the tiles: small
    tensors (biases, batch-norm parameters and statistics, their gradients and momenta) would
    otherwise all pile onto the first tiles, with the vertices that work on them and the
    exchange code that fetches from them.
    """
    t = graph.add_variable(as_dtype(dtype), shape, name)
    start = graph.op_cache.get("linear_variable.next_start", 0)
    used = map_tensor_linearly(graph, t, offset=start)
    graph.op_cache["linear_variable.next_start"] = (start + used) % graph.target.num_tiles
    return t


def variable_like(graph: Graph, like: Tensor, name: str, dtype: object | None = None) -> Tensor:
    """A new variable of ``like``'s shape whose every element lives on the same tile as ``like``'s."""
    t = graph.add_variable(as_dtype(dtype) if dtype is not None else like.dtype, like.shape, name)
    tiles = graph.tile_of_elements(like)
    if (tiles < 0).any():
        raise ValueError(f"variable_like({like.name!r}): the tensor is not fully mapped")
    graph.set_tile_mapping(t, tiles)
    return t


@dataclass
class Chunks:
    """A split of some elements into vertex-sized runs on the tiles that hold them.

    ``full`` is an index array ``(n, length)`` of positions (into the flattened tensor the split was
    made for) of whole chunks, ``full_tiles`` their tiles; ``tails`` maps a shorter length to its
    ``(positions, tiles)``.  Use the positions to index any flattened view of the same shape.
    """

    length: int
    full: np.ndarray
    full_tiles: np.ndarray
    tails: dict[int, tuple[np.ndarray, np.ndarray]]

    def groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(positions (n, length), tiles (n,)) for the full chunks and each tail length."""
        out = [(self.full, self.full_tiles)] if self.full.size else []
        out.extend(self.tails.values())
        return out


def split_by_tile(graph: Graph, tensor: Tensor, max_length: int) -> Chunks:
    """Split a tensor's elements by the tile that holds them, into runs of at most ``max_length``.

    Elements keep their flattened order within a tile.  Vectorised: one stable sort by tile.
    """
    tiles = graph.tile_of_elements(tensor).reshape(-1).astype(np.int64)
    n = tiles.size
    order = np.argsort(tiles, kind="stable")
    sorted_tiles = tiles[order]
    counts = np.bincount(sorted_tiles, minlength=graph.target.num_tiles)
    first = np.cumsum(counts) - counts
    rank = np.arange(n) - first[sorted_tiles]  # position within its tile
    chunk_of = rank // max_length  # chunk number within the tile
    full_chunks = counts // max_length
    in_full = chunk_of < full_chunks[sorted_tiles]
    full = order[in_full].reshape(-1, max_length)
    full_tiles = sorted_tiles[in_full][::max_length] if full.size else np.zeros(0, dtype=np.int64)
    tails: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    tail_len = counts % max_length
    rest = ~in_full
    if rest.any():
        rest_tiles = sorted_tiles[rest]
        rest_pos = order[rest]
        lengths = tail_len[rest_tiles]
        for length in np.unique(lengths).tolist():
            sel = lengths == length
            tails[int(length)] = (rest_pos[sel].reshape(-1, length), rest_tiles[sel][::length])
    return Chunks(max_length, full, full_tiles.astype(np.int32), {k: (p, t.astype(np.int32)) for k, (p, t) in tails.items()})


def gather(tensor: Tensor, positions: np.ndarray) -> Tensor:
    """The view of ``tensor``'s flattened elements at ``positions`` (any shape): no data moves."""
    flat = tensor.flatten()
    return flat[positions]
